"""ProjectSaver: what of the open project is on disk, what is not, and why — in one place.

It owns the stroke autosaver and the deferred project.json write, turns their failures into one
persistent state (a red word in the status bar, "NOT SAVED" in the title) instead of a box per
stroke, and answers Save truthfully. The window and the controllers talk to it, not to each
other's private members.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import QLabel

from segstudio.io.autosave import Autosaver, SaveState
from segstudio.io.project import Project, ProjectError

log = logging.getLogger(__name__)

MANIFEST_DELAY_MS = 1500


class _SaverSignals(QObject):
    """Carries the autosave thread's reports to the GUI thread."""

    saved = Signal(str, int)
    failed = Signal(str)
    state_changed = Signal(object)      # SaveState


class ProjectSaver(QObject):
    changed = Signal()                  # the save state (or read-only state) changed
    saved = Signal(str, int)            # image id, strokes just confirmed on disk

    def __init__(self, report_error: Callable[[str, str], None], *,
                 autosave_delay: float = 0.05) -> None:
        super().__init__()
        self._report_error = report_error
        self._delay = autosave_delay
        self.project: Project | None = None
        self.autosaver: Autosaver | None = None
        self._signals = _SaverSignals()
        self._signals.saved.connect(self.saved)
        self._signals.failed.connect(self._on_saver_failed)
        self._signals.state_changed.connect(self._on_saver_state_changed)
        self.manifest_dirty = False     # cached label status not yet in project.json
        self.manifest_error: str | None = None
        # leaving an image writes its status a moment later, once: rewriting project.json
        # (tens of ms for a few hundred slices) at each slice change would stall browsing
        self._manifest_timer = QTimer(self)
        self._manifest_timer.setSingleShot(True)
        self._manifest_timer.setInterval(MANIFEST_DELAY_MS)
        self._manifest_timer.timeout.connect(self.flush_manifest)
        self.label = QLabel("")         # the window puts it in its status bar
        self.label.setStyleSheet("color: #b00020; font-weight: bold;")
        self.label.hide()

    # -- project ---------------------------------------------------------------------------
    def attach(self, project: Project) -> None:
        """Take the project's writer lock; a project that cannot be written opens read-only."""
        self.project = project
        project.lock_for_writing("SegStudio window")
        if project.read_only:
            log.warning("opened read-only: %s", project.read_only)
        else:
            self.autosaver = Autosaver(
                project.masks, delay=self._delay, on_saved=self._signals.saved.emit,
                on_error=self._signals.failed.emit, on_state=self._signals.state_changed.emit)
        self.manifest_error = None
        self.manifest_dirty = False
        self._refresh()

    def detach(self) -> None:
        if self.project is None:
            return
        self.flush_manifest()
        if self.autosaver is not None:
            if not self.autosaver.close():
                log.error("closed %s with %d stroke(s) not saved: %s", self.project.root,
                          self.autosaver.state.unsaved, self.autosaver.state.error)
            self.autosaver = None
        self.project.release_lock()
        self.project = None
        self._refresh()

    @property
    def autosave_delay(self) -> float:
        """Seconds the autosaver waits after a stroke to gather a burst into one fsync."""
        return self._delay

    @property
    def read_only(self) -> str | None:
        return self.project.read_only if self.project is not None else None

    # -- strokes ---------------------------------------------------------------------------
    def submit(self, image_id: str, shape, tiles) -> None:
        if self.autosaver is not None:
            self.autosaver.submit(image_id, shape, tiles)

    def pending(self, image_id: str) -> list:
        return self.autosaver.pending(image_id) if self.autosaver is not None else []

    def has_unsaved(self, image_id: str | None = None) -> bool:
        return self.autosaver is not None and self.autosaver.has_unsaved(image_id)

    def compact(self, image_id: str, shape) -> None:
        """Fold the image's journal into its PNG (queued behind its strokes)."""
        if self.autosaver is None or self.project is None:
            return
        if self.project.masks.journal_bytes(image_id) or self.autosaver.has_unsaved(image_id):
            self.autosaver.compact(image_id, shape)

    def flush(self, timeout: float = 30.0) -> bool:
        return self.autosaver is None or self.autosaver.flush(timeout)

    def flushed(self, fn: Callable):
        """`fn` that first waits, on its own (worker) thread, until every stroke is on disk:
        jobs that read masks from disk start at once instead of blocking the window."""
        autosaver = self.autosaver

        def run(*args, **kwargs):
            if autosaver is not None and not autosaver.flush():
                log.warning("starting %s with strokes not yet on disk: %s",
                            getattr(fn, "__name__", "a job"), autosaver.state.error)
            return fn(*args, **kwargs)
        run.__name__ = getattr(fn, "__name__", "job")
        return run

    @property
    def state(self) -> SaveState:
        return self.autosaver.state if self.autosaver is not None else SaveState(0, None)

    # -- project.json ----------------------------------------------------------------------
    def mark_manifest_dirty(self) -> None:
        self.manifest_dirty = True

    def flush_manifest_soon(self) -> None:
        """project.json once the user pauses (a save, a job or closing writes it at once)."""
        if self.manifest_dirty and self.project is not None:
            self._manifest_timer.start()

    def flush_manifest(self) -> None:
        self._manifest_timer.stop()
        if self.manifest_dirty and self.project is not None:
            self.save_manifest()

    def save_manifest(self) -> bool:
        """Write project.json; a failure joins the one 'not saved' state, never a box per edit."""
        self._manifest_timer.stop()
        if self.project is None or self.project.read_only:
            return False
        try:
            self.project.save()
        except (OSError, ProjectError) as e:
            first = self.manifest_error is None
            self.manifest_error = f"could not save {self.project.root / 'project.json'}: {e}"
            self.manifest_dirty = True
            if first:
                self._report_error("Could not save the project file", self.manifest_error)
            self._refresh()
            return False
        self.manifest_dirty = False
        if self.manifest_error is not None:
            self.manifest_error = None
            self._refresh()
        return True

    # -- the whole truth -------------------------------------------------------------------
    def save_now(self) -> bool:
        """Everything on disk now (retrying what failed)? Read-only projects have nothing to save."""
        if self.project is None:
            return True
        if self.project.read_only:
            return False
        manifest_ok = self.save_manifest() if (self.manifest_dirty or self.manifest_error) else True
        strokes_ok = self.flush()
        self._refresh()
        return strokes_ok and manifest_ok

    def unsaved_summary(self) -> str | None:
        """What closing now would lose, in words, or None."""
        parts = []
        if not self.state.ok:
            parts.append(f"{self.state.unsaved} stroke(s) are not on disk: {self.state.error}")
        if self.manifest_error:
            parts.append(self.manifest_error)
        return "; ".join(parts) or None

    def describe(self) -> str:
        """The persistent status-bar text ('' when everything is on disk)."""
        parts = []
        if not self.state.ok:
            parts.append(f"Not saved: {self.state.unsaved} stroke(s) — {self.state.error}")
        if self.manifest_error:
            parts.append(f"Not saved: {self.manifest_error}")
        if self.read_only:     # why, in short (the tooltip has it all)
            why = self.read_only if len(self.read_only) <= 90 else self.read_only[:89] + "…"
            parts.append(f"Read-only: {why}")
        return "  |  ".join(parts)

    def _refresh(self) -> None:
        text = self.describe()
        self.label.setText(text)
        self.label.setToolTip(self.read_only or "Free some space; File ▸ Save retries now")
        self.label.setVisible(bool(text))
        self.changed.emit()

    def _on_saver_failed(self, message: str) -> None:
        """Once when saving starts failing: one box; the label then keeps the state."""
        if self.state.disk_full and self.project is not None:
            from segstudio.io.prediction_cache import PredictionCache

            PredictionCache.for_project(self.project).forget()   # masks before cached overlays
        self._report_error("Not saved", f"{message}. Your strokes are kept in memory and saved "
                           f"as soon as the disk allows (SegStudio retries; File ▸ Save retries now).")

    def _on_saver_state_changed(self, state: SaveState) -> None:
        if state.ok and self.manifest_dirty:
            self.save_manifest()
        self._refresh()
