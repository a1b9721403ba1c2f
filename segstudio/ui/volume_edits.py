"""Edits across the slices of a volume: fill the slices between labelled key slices
(`segstudio.edit.interpolate`), copy a slice's mask to the next one, and undo / redo such a
step on every slice it touched at once.

A step across slices is one `MaskEdit` per slice, all with the same `group` id, pushed into
each slice's own history: the slice open on the canvas through its document, the others as
whole-mask edits of the masks on disk (written on a worker, atomically, as an import writes).
Undo on any slice whose newest step belongs to a group undoes the group on all its slices,
unless one of them was edited since (then it says which, and changes nothing).

Filling never paints over what the user painted: only unlabeled pixels take the interpolated
classes. An interpolation is a proposal first: the filled pixels show in yellow on each slice the
user browses to, Return (or Volume ▸ Apply Interpolation) writes them all as one step, Esc
drops them, and an edit of any slice of the volume meanwhile drops them too (they were
computed from the slices as they were).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
from PySide6.QtCore import QObject

from segstudio.core.classes import UNLABELED
from segstudio.core.geometry import Rect
from segstudio.edit.regions import Proposal
from segstudio.core.history import History, MaskEdit, whole_mask_edit
from segstudio.io.masks import labelled_fraction
from segstudio.workers.job import Job

log = logging.getLogger(__name__)

INTERPOLATE = "Interpolate slices"
COPY_NEXT = "Copy mask to next slice"


def _fill_plan(project, slices: list, current_id: str | None, current_mask: np.ndarray | None,
               cancel=None, on_progress=None) -> tuple[dict, list[str]]:
    """On a worker: ({slice id: (mask before, mask after)} for the slices an interpolation
    between the labelled slices changes, the ids of the key slices it read)."""
    from segstudio.edit.interpolate import interpolate_between

    def mask_of(e) -> np.ndarray:
        if e.id == current_id and current_mask is not None:
            return current_mask
        info = project.probe(e)
        return project.load_mask(e, (info.height, info.width))

    keys = {}
    for e in slices:
        if e.id == current_id and current_mask is not None:
            if (current_mask != UNLABELED).any():
                keys[e.slice] = current_mask
        elif e.labelled > 0 and project.masks.has_mask(e.id):
            keys[e.slice] = mask_of(e)
    if len(keys) < 2:
        return {}, []
    filled = interpolate_between(keys, unlabeled=UNLABELED, cancel=cancel, progress=on_progress)
    by_slice = {e.slice: e for e in slices}
    out = {}
    for k, new in filled.items():
        e = by_slice.get(k)
        if e is None:
            continue
        before = mask_of(e)
        after = np.where(before == UNLABELED, new, before).astype(np.uint8)
        if not np.array_equal(before, after):
            out[e.id] = (before, after)
    return out, [by_slice[k].id for k in sorted(keys)]


def _write_masks(project, changes: dict[str, tuple[np.ndarray, np.ndarray]], skip: str | None,
                 cancel=None, on_progress=None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """On a worker: the masks after the step, on disk (all but the slice open on the canvas,
    which its document saves)."""
    from segstudio.core.jobs import Progress

    for n, (image_id, (_before, after)) in enumerate(changes.items()):
        if cancel is not None:
            cancel.raise_if_cancelled()
        if image_id != skip:
            project.masks.write(image_id, after)
        if on_progress is not None:
            on_progress(Progress(n + 1, len(changes), "writing slices"))
    return changes


class VolumeEdits(QObject):
    """The Interpolate / Copy-to-next actions and group undo, for the window."""

    def __init__(self, *, project: Callable[[], Any], current: Callable[[], tuple[Any, Any]],
                 canvas: Any,
                 history_for: Callable[[str], History], start_job: Callable[[Job], Job],
                 flushed: Callable, show_message: Callable[[str, int], None],
                 report_error: Callable[[str, str], None],
                 entry_changed: Callable[[Any], None], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._project = project
        self._current = current
        self._history_for = history_for
        self._start_job = start_job
        self._flushed = flushed
        self._show_message = show_message
        self._report_error = report_error
        self._entry_changed = entry_changed
        self._canvas = canvas
        self.busy: Job | None = None
        # an interpolation shown, not yet written:
        # (label, series id, {slice id: (before, after)}, key slice ids)
        self.pending: tuple[str, str, dict[str, tuple[np.ndarray, np.ndarray]], list[str]] | None = None

    @classmethod
    def for_window(cls, window) -> VolumeEdits:
        """The Volume menu of a MainWindow, bound to its actions."""
        edits = cls(project=lambda: window.project,
                    current=lambda: (window.current, window.canvas.document),
                    canvas=window.canvas,
                    history_for=window.editing.history_for, start_job=window.runner.start,
                    flushed=window.saver.flushed, show_message=window.statusBar().showMessage,
                    report_error=window.report_error,
                    entry_changed=window.volume_entry_changed, parent=window)
        window.action_registry.bind("volume.interpolate", edits.interpolate)
        window.action_registry.bind("volume.copy_next", edits.copy_to_next)
        window.action_registry.bind("volume.apply_interpolation", edits.accept_proposal)
        window.action_registry.bind("volume.drop_interpolation", edits.drop_proposal)
        window.image_shown.connect(edits.on_image_shown)
        window.opener.edited.connect(edits.on_edited)
        return edits

    # -- what is open ------------------------------------------------------------------------
    def _volume(self) -> tuple[Any, Any, Any, list] | None:
        project = self._project()
        entry, doc = self._current()
        if project is None or entry is None or doc is None or entry.series is None:
            self._show_message("Interpolation and copying to the next slice work on the slices "
                               "of a volume (a DICOM series or a NIfTI volume)", 5000)
            return None
        if self.busy is not None:
            self._show_message("A step across slices is still being written; a moment", 3000)
            return None
        return project, entry, doc, project.slices_of(entry.series)

    # -- actions -----------------------------------------------------------------------------
    def interpolate(self) -> Job | None:
        """Fill the slices between labelled slices (the one open included, as painted now)."""
        got = self._volume()
        if got is None:
            return None
        project, entry, doc, slices = got
        doc.end_stroke()
        job = Job(self._flushed(_fill_plan), project, slices, entry.id, doc.mask.copy(),
                  name=INTERPOLATE)
        job.signals.succeeded.connect(partial(self._propose, INTERPOLATE, entry.series))
        return self._start_job(job)

    # -- the proposal ------------------------------------------------------------------------
    def _propose(self, label: str, series: str, plan) -> None:
        changes, keys = plan
        if not changes:
            self._show_message("Nothing to fill: label at least two slices of this volume, "
                               "with unlabeled slices between them", 5000)
            return
        self.pending = (label, series, changes, keys)
        entry, _doc = self._current()
        if entry is not None:
            self.on_image_shown(entry.id)
        self._say_pending()

    def _say_pending(self) -> None:
        label, _series, changes, _keys = self.pending
        self._show_message(f"{label}: {len(changes)} slice(s) proposed in yellow; Up/Down to "
                           f"check them, Return applies (one undo step), Esc drops", 0)

    def on_image_shown(self, image_id: str) -> None:
        """A slice of the proposed volume: its part of the proposal, and Return / Esc for it."""
        entry, doc = self._current()
        if self.pending is None or entry is None or doc is None or entry.id != image_id:
            return
        _label, series, changes, _keys = self.pending
        if entry.series != series:
            return
        region = None
        if image_id in changes:
            before, after = changes[image_id]
            region = Proposal(Rect(0, 0, *before.shape[:2]), before != after)
        self._canvas.set_proposal(region, owner=self)
        self._say_pending()          # the slice change's own message replaced it

    def accept_proposal(self) -> Job | None:
        if self.pending is None:
            self._show_message("No interpolation is proposed: press I on a slice of a volume "
                               "first", 4000)
            return None
        label, _series, changes, keys = self.pending
        self._clear_proposal()
        return self._apply(label, changes, keys)

    def drop_proposal(self) -> None:
        if self.pending is not None:
            label = self.pending[0]
            self._clear_proposal()
            self._show_message(f"{label}: dropped; nothing was changed", 4000)

    def on_edited(self, image_id: str) -> None:
        """An edit on a slice of the proposed volume: the proposal is out of date."""
        project = self._project()
        if self.pending is None or project is None:
            return
        label, series = self.pending[:2]
        try:
            edited_series = project.entry(image_id).series
        except (KeyError, ValueError):
            edited_series = None
        if edited_series == series:
            self._clear_proposal()
            self._show_message(f"{label}: dropped, a slice was edited since; press I again", 5000)

    def _clear_proposal(self) -> None:
        self.pending = None
        if self._canvas.proposal_owner is self:
            self._canvas.set_proposal(None)

    def copy_to_next(self) -> Job | None:
        """The open slice's labels on the next slice, where that slice is unlabeled."""
        got = self._volume()
        if got is None:
            return None
        project, entry, doc, slices = got
        ids = [e.id for e in slices]
        k = ids.index(entry.id)
        if k + 1 >= len(slices):
            self._show_message("This is the last slice", 3000)
            return None
        nxt = slices[k + 1]
        info = project.probe(nxt)
        before = project.load_mask(nxt, (info.height, info.width))
        if before.shape != doc.mask.shape:
            self._show_message("The next slice has another size; nothing was copied", 5000)
            return None
        after = np.where(before == UNLABELED, doc.mask, before).astype(np.uint8)
        if np.array_equal(before, after):
            self._show_message("Nothing to copy: the next slice already has these labels", 3000)
            return None
        return self._apply(COPY_NEXT, {nxt.id: (before, after)})

    def _apply(self, label: str, changes: dict[str, tuple[np.ndarray, np.ndarray]],
               keys: list[str] = ()) -> Job | None:
        """Write `changes` as one step of every slice it touched: the changed slices and the
        key slices it was computed from (so Undo on any of them undoes it on all)."""
        project = self._project()
        entry, doc = self._current()
        if project is None:
            return None
        if not changes:
            self._show_message("Nothing to fill: label at least two slices of this volume, "
                               "with unlabeled slices between them", 5000)
            return None
        group = uuid.uuid4().hex
        current_id = entry.id if entry is not None else None
        marked = {current_id} if doc is not None else set()   # the slice open, key or not
        for image_id in marked | set(keys):
            if image_id in changes:
                continue
            marker = MaskEdit(label, (), group)      # no pixels: the step's place in history
            (doc.history if image_id == current_id else self._history_for(image_id)).push(marker)
        for image_id, (before, after) in changes.items():
            if image_id == current_id and doc is not None:
                doc.apply(after, label, group=group)
                continue
            edit = whole_mask_edit(before, after, label, group)
            if edit is not None:
                self._history_for(image_id).push(edit)
        return self._write(label, changes, current_id,
                           f"{label}: {len(changes)} slice(s) filled (one undo step)")

    def _write(self, label: str, changes, skip: str | None, done: str) -> Job:
        project = self._project()
        job = Job(_write_masks, project, changes, skip, name=label)
        self.busy = job

        def finished(result) -> None:
            self.busy = None
            for image_id, (_before, after) in result.items():
                e = project.update_entry(image_id, labelled=labelled_fraction(after))
                self._entry_changed(e)
            self._show_message(done, 5000)

        def failed(_message: str) -> None:     # the job runner says why
            self.busy = None

        job.signals.succeeded.connect(finished)
        job.signals.failed.connect(failed)
        return self._start_job(job)

    # -- undo / redo of a group ---------------------------------------------------------------
    def step(self, redo: bool) -> bool:
        """Undo (redo) the group the open slice's next step belongs to, on all its slices.
        False when that step is no group step (the caller undoes it as usual)."""
        project = self._project()
        entry, doc = self._current()
        if project is None or entry is None or doc is None or entry.series is None:
            return False
        nxt = doc.history.peek(redo)
        if nxt is None or nxt.group is None:
            return False
        if self.busy is not None:
            self._show_message("A step across slices is still being written; a moment", 3000)
            return True
        members = []
        for e in project.slices_of(entry.series):
            if e.id == entry.id:
                continue
            history = self._history_for(e.id)
            top = history.peek(redo)
            if top is not None and top.group == nxt.group:
                members.append((e, history))
            elif not redo and history.holds(nxt.group):
                self._show_message(f"Slice {e.slice + 1} was edited after '{nxt.label}'; undo "
                                   f"that first (nothing was changed)", 6000)
                return True
        changes = {}
        for e, history in members:
            info = project.probe(e)
            mask = project.load_mask(e, (info.height, info.width))
            before = mask.copy()
            (history.redo if redo else history.undo)(mask)
            changes[e.id] = (before, mask)
        (doc.redo if redo else doc.undo)()
        what = "Redone" if redo else "Undone"
        self._write(nxt.label, changes, None,
                    f"{what}: {nxt.label} on {len(changes) + 1} slice(s)")
        return True
