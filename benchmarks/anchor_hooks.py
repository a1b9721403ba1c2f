"""SegStudio's own code behind the hooks of the anchor benchmarks (`../shared/anchors/`).

Each anchor times an established tool on a fixed workload and takes a hook, so the same
workload runs through SegStudio in the same process and the same interleaved rounds:

    train_throughput.py --impls bare,monai_basicunet,hook --hook anchor_hooks:train_step
    train_throughput.py --impls bare,hook --hook anchor_hooks:train_step_preset
    sliding_window.py   --methods monai_sw,tiles_plain,hook --hook anchor_hooks:predictor
    napari_paint.py     --paint-hook anchor_hooks:PaintCanvas --skip-startup
    gui_stall.py        --conditions idle,t2_premade,hook --hook anchor_hooks:trainer

(`benchmarks/side_by_side.sh` runs them all with `benchmarks/` on PYTHONPATH.) Each hook is
the product's path, not a copy of it:

- `train_step`: the trainer's `TrainStep` (channels_last, the trainer's AdamW, the app's
  allocator setting) around the anchor's own U-Net, with SegStudio's loss;
- `train_step_preset`: the same step around SegStudio's preset network (`--preset`, "fast");
- `predictor`: the product's tiled predictor (Gaussian blending, BatchNorm folded,
  channels_last, band-wise accumulation) on the anchor's model, returning probabilities;
- `PaintCanvas`: a real `MainWindow` on a project holding the anchor's image; each dab is a
  mouse event on the window's canvas with the brush (press for the first, moves after), so
  the stroke, the tile diffs, the overlay and the status bar all run, at the zoom the anchor
  was given (`--zoom fit`: the window's own fit on opening; `--zoom 1`: one image pixel per
  screen pixel, centred on the stroke);
- `trainer`: the window's training job (`ui.model_jobs.train_job` on the thread pool through
  the one `Job` shape) on a generated project, stopped through its cancel token.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PRESET = os.environ.get("SEGSTUDIO_ANCHOR_PRESET", "fast")


class _Stepper:
    """The anchor's `.train_step(x, y)` / `.model` protocol around SegStudio's TrainStep."""

    def __init__(self, model, num_classes: int, preset: str = PRESET) -> None:
        from segstudio.ml.allocator import tune_allocator

        tune_allocator()                  # what the app's training job does first
        from segstudio.ml.config import TrainConfig
        from segstudio.ml.device import pick_device
        from segstudio.ml.train import SegLoss, TrainStep

        # SEGSTUDIO_ANCHOR_CPU_BF16=1: the step under bf16 autocast on a CPU with AMX
        cfg = TrainConfig(preset=preset,
                          cpu_bf16=os.environ.get("SEGSTUDIO_ANCHOR_CPU_BF16") == "1")
        self.step = TrainStep(model, SegLoss(num_classes), cfg, pick_device("cpu"))
        self.model = self.step.model

    def train_step(self, x, y) -> float:
        xd, yd = self.step.to_device(x, y)
        return self.step(xd, yd)


def train_step(in_channels: int, num_classes: int) -> _Stepper:
    """Our TrainStep on the anchor's network (anchors/_common.py's U-Net 32-256)."""
    import _common  # the anchor's folder is on sys.path when an anchor loads this hook

    return _Stepper(_common.build_bare_unet(in_channels, num_classes), num_classes)


def train_step_preset(in_channels: int, num_classes: int) -> _Stepper:
    """Our TrainStep on our own preset network (SEGSTUDIO_ANCHOR_PRESET, default "fast")."""
    from segstudio.ml.config import TrainConfig
    from segstudio.ml.models import build_model

    spec = TrainConfig(preset=PRESET).model_spec()
    return _Stepper(build_model(spec.pop("name"), in_channels, num_classes, **spec), num_classes)


def predictor(model, roi: int, overlap: float, sw_batch: int):
    """predict(x (1, C, H, W)) -> (1, K, H, W) probabilities through the product's predictor."""
    import torch

    from segstudio.ml.normalise import Normalisation
    from segstudio.ml.predict import TileOptions, predict_probabilities

    options = TileOptions(tile=int(roi), overlap=float(overlap), batch_size=int(sw_batch))
    norm = None

    def predict(x):
        nonlocal norm
        image = x[0].permute(1, 2, 0).contiguous().numpy()     # (H, W, C) float32
        if norm is None:  # the anchor's input is already normalised: identity, every channel
            c = image.shape[-1]
            norm = Normalisation(mode="fixed", mean=(0.0,) * c, std=(1.0,) * c, scale=1.0,
                                 in_channels=c)
        probs = predict_probabilities(model, image, norm, options)
        return torch.from_numpy(np.ascontiguousarray(probs))[None]

    return predict


def _anchor_zoom(argv: list[str]) -> float | None:
    """napari_paint.py hands its child `--zoom fit|Z`: None for fit, else the zoom."""
    if "--zoom" in argv[:-1]:
        value = argv[argv.index("--zoom") + 1]
        if value != "fit":
            return float(value)
    return None


class PaintCanvas:
    """napari_paint.py's `--paint-hook` protocol on SegStudio's main window."""

    def __init__(self, image: np.ndarray, labels: np.ndarray, view=(602, 752)) -> None:
        import cv2
        from PySide6.QtCore import QEvent, QObject
        from PySide6.QtWidgets import QApplication

        from segstudio.core.classes import LabelClass, default_color
        from segstudio.io.project import Project
        from segstudio.ui.app import build_main_window

        self.app = QApplication.instance() or QApplication([])
        self.zoom = _anchor_zoom(sys.argv)
        self.labels = labels
        self.tmp = Path(tempfile.mkdtemp(prefix="segstudio-anchor-paint-"))
        src = self.tmp / "anchor.png"
        cv2.imwrite(str(src), np.ascontiguousarray(image))
        project = Project.create(self.tmp / "project", name="anchor paint", classes=[
            LabelClass(0, "background", default_color(0)),
            LabelClass(1, "label 1", default_color(1))])
        project.add_images([src])
        project.save()
        self.window = build_main_window(Project.open(self.tmp / "project"))
        # a window whose canvas is about napari's canvas size (view = canvas height, width)
        self.window.resize(view[1] + 560, view[0] + 200)
        self.draws = 0
        self.pressed = False
        outer = self

        class Counter(QObject):
            def eventFilter(self, obj, event):   # noqa: N802 - Qt's name
                if event.type() == QEvent.Type.Paint:
                    outer.draws += 1
                return False

        self._counter = Counter()
        self.window.canvas.installEventFilter(self._counter)

    def show(self) -> None:
        self.window.show()
        t_end = time.perf_counter() + 120
        while self.window.canvas.document is None and time.perf_counter() < t_end:
            self.app.processEvents()
            time.sleep(0.005)
        if self.window.canvas.document is None:
            raise RuntimeError("the anchor image did not open in the window")
        # the anchor's child ends with os._exit (no clean-up): drop the big source file now
        # that the window holds the pixels; the mask files stay small
        (self.tmp / "anchor.png").unlink(missing_ok=True)
        canvas = self.window.canvas
        if self.zoom is not None:
            canvas.zoom_to(self.zoom)
            h, w = canvas.document.shape
            canvas.center_on(h / 2, w / 2)
        self.window.class_panel.select_id(1)
        self.app.processEvents()

    def dab(self, y: float, x: float, radius: float, label: int) -> None:
        from PySide6.QtCore import QEvent, QPointF, Qt
        from PySide6.QtGui import QMouseEvent

        canvas = self.window.canvas
        if canvas.class_value != int(label):
            self.window.class_panel.select_id(int(label))
        # the anchor's radius is in image pixels, as the brush's is
        if canvas.brush_radius != radius:
            self.window.set_brush_radius(radius)
        pos = canvas.image_to_widget(y, x)
        kind = QEvent.Type.MouseMove if self.pressed else QEvent.Type.MouseButtonPress
        button = Qt.MouseButton.NoButton if self.pressed else Qt.MouseButton.LeftButton
        event = QMouseEvent(kind, QPointF(pos), canvas.mapToGlobal(QPointF(pos)), button,
                            Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
        self.app.sendEvent(canvas, event)
        self.pressed = True
        self.last = pos

    def draw_count(self) -> int:
        return self.draws

    def close(self) -> None:
        from PySide6.QtCore import QEvent, QPointF, Qt
        from PySide6.QtGui import QMouseEvent

        canvas = self.window.canvas
        if self.pressed:        # the stroke ends: history compression, autosave hand-off
            event = QMouseEvent(QEvent.Type.MouseButtonRelease, QPointF(self.last),
                                canvas.mapToGlobal(QPointF(self.last)), Qt.MouseButton.LeftButton,
                                Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier)
            self.app.sendEvent(canvas, event)
            self.pressed = False
        doc = canvas.document
        if doc is not None:     # what the anchor passed in shows what was painted
            np.copyto(self.labels, np.where(doc.mask == 255, 0, doc.mask).astype(self.labels.dtype))
        self.window.saver.flush()
        self.window.close()
        self.app.processEvents()
        shutil.rmtree(self.tmp, ignore_errors=True)


class _Trainer:
    """gui_stall.py's hook protocol: the window's training job in the background."""

    def __init__(self, batch: int, size: int, in_channels: int, num_classes: int) -> None:
        import cv2

        from segstudio.core.classes import LabelClass, default_color
        from segstudio.io.project import Project
        from segstudio.ml.config import TrainConfig

        self.tmp = Path(tempfile.mkdtemp(prefix="segstudio-anchor-trainer-"))
        rng = np.random.default_rng(0)
        files = []
        for i in range(max(2 * batch, 8)):
            img = rng.integers(0, 256, (size, size, 3) if in_channels == 3 else (size, size),
                               dtype=np.uint8)
            files.append(self.tmp / f"img_{i:02d}.png")
            cv2.imwrite(str(files[-1]), img)
        classes = [LabelClass(k, "background" if k == 0 else f"class {k}", default_color(k))
                   for k in range(num_classes)]
        project = Project.create(self.tmp / "project", name="anchor trainer", classes=classes)
        entries = project.add_images(files)
        for k, entry in enumerate(entries):
            mask = np.zeros((size, size), np.uint8)
            for c in range(1, num_classes):   # a few blobs of every class
                cy, cx = rng.integers(20, size - 20, 2)
                cv2.circle(mask, (int(cx), int(cy)), int(size // 8), c, -1)
            project.update_entry(entry.id, split="val" if k == 0 else "train")
            project.masks.write(entry.id, mask)
        project.save()
        self.root = project.root
        self.cfg = TrainConfig(preset=PRESET, batch_size=int(batch), patch_size=int(size),
                               epochs=100000, minutes=60.0, working_scale=1.0)
        self.steps = 0
        self.job = None

    def _on_progress(self, event) -> None:
        from segstudio.ml.events import StepDone

        if isinstance(event, StepDone):
            self.steps += 1

    def start(self) -> None:
        from segstudio.ui.model_jobs import train_job
        from segstudio.workers.job import Job

        self.job = Job(train_job, self.root, self.cfg, None, name="anchor training")
        self.job.signals.progress.connect(self._on_progress)
        self.job.start()

    def stop(self) -> None:
        from PySide6.QtCore import QThreadPool
        from PySide6.QtWidgets import QApplication

        if self.job is not None:
            self.job.token.cancel()
            QThreadPool.globalInstance().waitForDone()
            QApplication.processEvents()        # the queued step events are counted
        shutil.rmtree(self.tmp, ignore_errors=True)


def trainer(batch: int, size: int, in_channels: int, num_classes: int) -> _Trainer:
    return _Trainer(batch, size, in_channels, num_classes)
