"""The Click tool (K): left click = this is the object, right click = not, drag = a box.

Every click or box makes a new prompt; its proposal is computed on a worker (one Job per
prompt, a newer prompt cancels and supersedes an older pending one: results carry a
generation and stale ones are dropped) and shown as the smart tools' yellow proposal. Enter
commits it to the current class as one undo step (the canvas's replace path), Esc drops it.
The backend is the model chosen in the window's "Click model" list (ui/click_models.py):
ours (the newest click-model run of the project, else the bundled starter, loaded on the
first click on a worker) or a SAM-style ONNX pair. Its name, licence and embedding estimate
are in `status` (the canvas tooltip and the Click model tool bar show them). A click that
comes while the SAM embedding of the image runs waits for that job, not the window.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QPen
from PySide6.QtWidgets import QComboBox, QLabel, QToolBar, QWidget

from segstudio.core.clicks import Click, ClickPrompt
from segstudio.core.geometry import Rect
from segstudio.edit.regions import Proposal
from segstudio.ui.tools import SmartTool
from segstudio.workers.job import Job

log = logging.getLogger(__name__)

DRAG_PX = 4.0       # widget-independent: image px moved before a press counts as a box


def _propose(backend, project_root: Path | None, image_id: str, image: np.ndarray,
             prompt: ClickPrompt, *, on_progress=None, cancel=None):
    """Worker side: (backend, full-size bool proposal); the first call loads the backend here,
    so torch is imported on the worker, never on the GUI thread."""
    if backend is None:
        from segstudio.workers.preload import load_torch

        load_torch("segstudio.ml.click_backend")
        from segstudio.ml.click_backend import OursBackend, click_runs

        runs = click_runs(project_root)
        if not runs:
            raise ValueError("no click model: train one on your labels first")
        backend = OursBackend(runs[0])
    return backend, backend.propose(image_id, image, prompt, cancel)


def _proposal_of(mask: np.ndarray) -> Proposal | None:
    rows = np.flatnonzero(mask.any(axis=1))
    if not len(rows):
        return None
    cols = np.flatnonzero(mask[rows[0]:rows[-1] + 1].any(axis=0))
    rect = Rect(int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1)
    return Proposal(rect, mask[rect.slices].copy())


class ClickTool(SmartTool):
    name, label = "click", "Click to segment"
    text, shortcut = "Click to Segment", "K"
    hint = ("Left-click the object, right-click what is not, drag a box; Enter keeps, "
            "Esc drops")

    @classmethod
    def entry(cls) -> tuple[str, str, str, str]:
        """(name, menu text, key, hint), as ui/tools.tool_entries gives the other tools."""
        return cls.name, cls.text, cls.shortcut, cls.hint

    def __init__(self, canvas) -> None:
        super().__init__(canvas)
        self.prompt = ClickPrompt()
        self.backend = None
        self.models = None            # ClickModels, once the canvas is in a MainWindow
        self._project_root: Path | None = None
        self.status = ""
        self.generation = 0
        self.job: Job | None = None
        self._press: tuple[float, float] | None = None
        self._drag: tuple[float, float] | None = None
        self._mask: np.ndarray | None = None
        self._answered = 0             # generation of the proposal shown

    # -- backend ---------------------------------------------------------------------------
    @property
    def project_root(self) -> Path | None:
        """The open project (its click runs answer first); set by the window at project open."""
        return self._project_root

    @project_root.setter
    def project_root(self, root: Path | None) -> None:
        self._project_root = root
        # at project open: the remembered SAM choice is opened again (the window attaches
        # the click-model choice, ui/click_models.attach_to_window, when it builds its actions)
        if self.models is not None and root is not None:
            self.models.restore()

    def canvas_region(self) -> tuple[float, float, float, float] | None:
        """(y0, x0, y1, x1): the part of the image in view (a large image's tiles to embed)."""
        shape = self.canvas.image_shape
        if shape is None:
            return None
        from PySide6.QtCore import QPointF

        y0, x0 = self.canvas.widget_to_image(QPointF(0, 0))
        y1, x1 = self.canvas.widget_to_image(QPointF(self.canvas.width(), self.canvas.height()))
        y0, x0 = max(0.0, y0), max(0.0, x0)
        y1, x1 = min(float(shape[0]), y1), min(float(shape[1]), x1)
        return (y0, x0, y1, x1) if y1 > y0 and x1 > x0 else None

    def _on_backend(self, backend) -> None:
        self.backend = backend
        if self.models is not None:
            self.models.changed.emit()         # the list names the loaded run now
        else:
            self.refresh_status()

    def refresh_status(self) -> None:
        """The tooltip (and the Click model tool bar) say which model answers, and its cost."""
        if self.models is not None:           # ClickModels.changed calls this too
            self.status = self.models.status_text()
        elif self.backend is not None:
            self.status = describe(self.backend, self.canvas.image_shape)
        self.canvas.setToolTip(f"Click to segment: {self.status}" if self.status else "")

    # -- input -----------------------------------------------------------------------------
    def reset(self) -> None:
        self.generation += 1          # a pending answer for the old prompt is dropped
        if self.job is not None:
            self.job.token.cancel()
        self.prompt = ClickPrompt()
        self._mask = None
        self._press = self._drag = None

    def press(self, pt, button, modifiers) -> None:
        if self.image is None:
            return
        if button == Qt.MouseButton.RightButton:
            self._add(Click(float(pt[0]), float(pt[1]), False))
        elif button == Qt.MouseButton.LeftButton:
            self._press, self._drag = (float(pt[0]), float(pt[1])), None

    def move(self, pt, buttons) -> None:
        if self._press is not None and buttons & Qt.MouseButton.LeftButton:
            self._drag = (float(pt[0]), float(pt[1]))
            self.canvas.update()

    def release(self, pt, button) -> None:
        if button != Qt.MouseButton.LeftButton or self._press is None:
            return
        p0, p1 = self._press, (float(pt[0]), float(pt[1]))
        self._press = self._drag = None
        if max(abs(p1[0] - p0[0]), abs(p1[1] - p0[1])) >= DRAG_PX:
            box = (min(p0[0], p1[0]), min(p0[1], p1[1]), max(p0[0], p1[0]), max(p0[1], p1[1]))
            self._ask(self.prompt.clicks, box)
        else:
            self._add(Click(p1[0], p1[1], True))

    def _add(self, click: Click) -> None:
        self._ask(self.prompt.clicks + (click,), self.prompt.box)

    def _ask(self, clicks: tuple[Click, ...], box) -> None:
        """A new prompt over the current proposal, for the selected class (a class-aware
        model reads it), and its proposal requested."""
        self.prompt = ClickPrompt(clicks, box, self._mask, self.canvas.class_value)
        self._request()

    def _request(self) -> None:
        self.generation += 1
        if self.job is not None:
            self.job.token.cancel()          # superseded: its answer is dropped anyway
        models = self.models
        if models is not None and models.choice != "ours" and models.backend is None:
            models.show_message("The SAM model is not open yet; the click was not sent", 5000)
            self.prompt, self._mask = ClickPrompt(), None
            self.canvas.update()
            return
        if models is not None and models.embedding_running():
            models.wait_for_embedding()      # sent when the image's embedding is done
            self.canvas.update()
            return
        self.send_request()

    def send_request(self) -> None:
        """Start the proposal job for the current prompt (a worker; the window goes on)."""
        if self.image is None or self.prompt.is_empty:
            return
        gen = self.generation
        image_id = f"doc-{id(self.canvas._doc)}"
        if self.models is not None and self.models.backend is not None:
            # the id the embedding and the pre-compute jobs used: their work is found again
            image_id = self.models.current_image_id() or image_id
        job = Job(_propose, self.backend, self.project_root, image_id, self.image, self.prompt,
                  name="click proposal")
        job.signals.succeeded.connect(lambda out, g=gen: self._on_job_succeeded(g, out))
        job.signals.failed.connect(self._on_job_failed)
        self.job = job.start()

    def _on_job_failed(self, text: str) -> None:
        from segstudio.workers.job import plain_error

        self.status = plain_error(text)
        log.warning("click proposal failed: %s", text)
        self.canvas.setToolTip(f"Click to segment: {self.status}")

    def _on_job_succeeded(self, generation: int, out) -> None:
        backend, mask = out
        if generation != self.generation:
            return      # a newer prompt (or another model, another image) is on its way
        if backend is not self.backend or not self.status:
            self._on_backend(backend)
        self._mask = mask
        self._answered = generation
        self.show(_proposal_of(mask))

    def key(self, event) -> bool:
        return SmartTool.key(self, event)

    def paint(self, p) -> None:
        if self._press is not None and self._drag is not None:
            a = self.canvas.image_to_widget(*self._press)
            b = self.canvas.image_to_widget(*self._drag)
            p.setPen(QPen(QColor(255, 220, 0), 1.5, Qt.PenStyle.DashLine))
            p.setBrush(Qt.BrushStyle.NoBrush)
            p.drawRect(QRectF(a, b).normalized())
        for c in self.prompt.clicks:
            pt = self.canvas.image_to_widget(c.y, c.x)
            p.setPen(QPen(QColor(0, 200, 0) if c.positive else QColor(220, 0, 0), 2))
            p.drawEllipse(pt, 4.0, 4.0)


# -- what the tool bar and the tooltip say about the model that answers ----------------------
NO_LICENCE = "licence: not stated in file"


def is_sam(backend) -> bool:
    return backend is not None and hasattr(backend, "encoder_path")


def _seconds(s: float) -> str:
    return "<0.1 s" if s < 0.1 else f"{s:.1f} s"


def describe(backend, shape, embedding_for: float | None = None, embedded: bool = False,
             name: bool = True) -> str:
    """Which model answers, its licence, and what the embedding costs on this image."""
    parts = [backend.name] if name else []
    est = backend.embedding_seconds(*(shape or (0, 0)))
    if is_sam(backend):
        if not name:
            parts.append(f"{backend.encoder_path.name} + {backend.decoder_path.name}")
        parts.append(f"licence: {backend.licence}" if backend.licence else NO_LICENCE)
        if embedding_for is not None:
            parts.append(f"embedding this image… {embedding_for:.0f} s"
                         + (f" (the last one took {_seconds(est)})" if est is not None else ""))
        elif embedded:
            parts.append("image embedded" + (f" (embedding ~{_seconds(est)} per image)"
                                             if est is not None else ""))
        else:
            parts.append(f"embedding ~{_seconds(est)} per image" if est is not None
                         else "embedding time not measured yet")
    else:
        if backend.licence:
            parts.append(f"licence: {backend.licence}")
        parts.append("no embedding step" if est is None else f"embedding ~{_seconds(est)}")
    return " · ".join(parts)


class ClickModelBar(QToolBar):
    """'Click model: [ours ▾]  SAM file: x · licence: … · embedding ~1 s' in the tool bar area."""

    def __init__(self, models: Any, parent: QWidget | None = None) -> None:   # ClickModels
        super().__init__("Click model", parent)
        self.setObjectName("toolbarClickModel")
        self.models = models
        self.addWidget(QLabel(" Click model: "))
        self.combo = QComboBox()
        self.combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.combo.setToolTip("Which model answers the Click tool (K)")
        self.combo.activated.connect(self._on_combo_activated)
        self.addWidget(self.combo)
        self.status = QLabel("")
        self.status.setContentsMargins(8, 0, 8, 0)
        self.addWidget(self.status)
        self._entries: list[tuple[str, str, str]] = []
        models.changed.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        entries = self.models.entries()
        if entries != self._entries:     # the list only when it changed: an open popup stays
            self._entries = entries
            self.combo.blockSignals(True)
            self.combo.clear()
            for key, text, tip in entries:
                self.combo.addItem(text, key)
                self.combo.setItemData(self.combo.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
            self.combo.blockSignals(False)
        index = self.combo.findData(self.models.choice)
        if index != self.combo.currentIndex():
            self.combo.blockSignals(True)
            self.combo.setCurrentIndex(max(0, index))
            self.combo.blockSignals(False)
        self.status.setText(self.models.status_text(name=False))

    def _on_combo_activated(self, index: int) -> None:
        key = self.combo.itemData(index)
        if key and key != self.models.choice:
            self.models.choose(str(key))
