"""Which model answers the Click tool: ours, or a SAM-style ONNX pair the user added (issue 14).

`ClickModels` keeps the list (ours first, then each SAM file pair added with Model > Add SAM
Model File…) and the choice. Both are remembered in the app settings (QSettings), not in the
project: the files live outside any project, one model serves every project, and the
embedding cache they fill is per user too.

Everything slow is a Job: opening the pair (onnxruntime sessions, the encoder file's hash),
embedding the image on the canvas, and pre-computing the next images of the list
(`sam_onnx.precompute`). A click that comes while the current image is being embedded waits
for that job (its request starts when the embedding is done), so the encoder never runs twice
for one image and the window never waits. Switching model, image or closing cancels them.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, QSettings, QTimer, Signal
from PySide6.QtWidgets import QFileDialog, QWidget

from segstudio.ml.sam_graph import model_stem   # numpy only: names, no onnxruntime
from segstudio.core.jobs import Progress
from segstudio.ui import click_training
from segstudio.ui.actions import CLICK_MODEL_ACTIONS
from segstudio.ui.click_tool import ClickModelBar, describe, is_sam
from segstudio.workers.job import Job, plain_error

log = logging.getLogger(__name__)

OURS = "ours"
MODELS_KEY = "click/sam_models"   # JSON list of [encoder, decoder] paths
CHOICE_KEY = "click/model"        # "ours" or the chosen pair's encoder path
AHEAD = 2                         # next images of the list embedded in the background
VIEW_TILES = 4                    # a large image's tiles in view embedded up front, at most
ONNX_FILTER = "SAM-style model (*.onnx *.json *.yaml *.yml);;All files (*)"

ImageSource = Callable[[], np.ndarray]


# -- what the user picked -> the files open_sam_files takes ------------------------------------
def sam_paths(picked: list[Path]) -> list[Path]:
    """The pair (or description) in what the user picked: files as they are, a folder by its
    contents (the .onnx files named encoder/decoder, else its only two .onnx files, else a
    description naming both). Raises SamModelError with a sentence when a folder holds none."""
    from segstudio.ml.sam_graph import SamModelError

    picked = [Path(p) for p in picked]
    if len(picked) != 1 or not picked[0].is_dir():
        return picked
    folder = picked[0]
    onnx = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".onnx" and p.is_file())
    enc = [p for p in onnx if "encoder" in p.name.lower()]
    dec = [p for p in onnx if "decoder" in p.name.lower()]
    if len(enc) == 1 and len(dec) == 1:
        return [enc[0], dec[0]]
    if len(onnx) == 2:
        return _by_size(onnx)
    for desc in sorted(folder.glob("*")):
        if desc.suffix.lower() in (".json", ".yaml", ".yml"):
            head = desc.read_text(encoding="utf-8", errors="replace")[:20000]
            if "encoder" in head and "decoder" in head:
                return [desc]
    raise SamModelError(f"the folder {folder.name} holds {len(onnx)} .onnx file(s); a SAM-style "
                        f"model is an encoder and a decoder .onnx (pick the two files)")


def _by_size(paths: list[Path]) -> list[Path]:
    """Unnamed pairs (osam keeps blobs named by hash): the larger file is the encoder's guess."""
    return sorted(paths, key=lambda p: p.stat().st_size, reverse=True)


def _unnamed(paths: list[Path]) -> bool:
    return len(paths) == 2 and not any(w in p.name.lower() for p in paths
                                       for w in ("encoder", "decoder"))


def open_model(paths: list[Path], *, on_progress=None, cancel=None):
    """Job body: a SamOnnxBackend from the picked paths (a wrong guess of which unnamed file is
    the encoder is retried the other way round)."""
    from segstudio.ml.sam_onnx import SamModelError, open_sam_files

    paths = sam_paths(paths)
    if on_progress:
        on_progress(Progress(0, 1, f"opening {', '.join(p.name for p in paths)}"))
    if not _unnamed(paths):
        backend = open_sam_files(*paths)
    else:
        paths = _by_size(paths)
        try:
            backend = open_sam_files(*paths)
        except SamModelError as first:
            try:
                backend = open_sam_files(*reversed(paths))
            except SamModelError:
                raise first from None
    if cancel is not None:
        cancel.raise_if_cancelled()
    if on_progress:
        on_progress(Progress(1, 1, backend.model_name))
    return backend


def embed_image(backend, image_id: str, image: np.ndarray, region=None, *, on_progress=None,
                cancel=None):
    """Job body: the current image's embedding (cached on disk by the backend); on a tiled
    (large) image the tiles meeting `region`, the part of it in view."""
    name = image_id.rsplit("::", 1)[-1]
    if on_progress:
        on_progress(Progress(0, 1, name))
    if region is None:
        backend.prepare(image_id, image, cancel)
    else:
        backend.prepare(image_id, image, cancel, region=region)
    if on_progress:
        on_progress(Progress(1, 1, name))
    return image_id


def precompute_next(backend, items: list[tuple[str, ImageSource]], *, on_progress=None,
                    cancel=None) -> list[str]:
    """Job body: the next images' embeddings (sam_onnx.precompute, images loaded lazily)."""
    from segstudio.ml.sam_onnx import precompute

    return precompute(backend, items, cancel=cancel, on_progress=on_progress)


# -- the choice ---------------------------------------------------------------------------------
class ClickModels(QObject):
    """The list of click models, the chosen one, and the SAM jobs (open, embed, pre-compute)."""

    changed = Signal()            # the list, the choice or the status text moved

    def __init__(self, tool, *, start_job: Callable[..., Job],
                 report_error: Callable[..., None],
                 show_message: Callable[..., None] = lambda text, ms=0: None,
                 image_id: Callable[[], str | None] = lambda: None,
                 next_images: Callable[[], list[tuple[str, ImageSource]]] = lambda: [],
                 settings: QSettings | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        from segstudio.ui.settings import app_settings

        self.tool = tool
        self.parent_widget = parent
        self._start = start_job
        self._report_error = report_error
        self.show_message = show_message
        self._image_id = image_id
        self._next_images = next_images
        self.settings = settings if settings is not None else app_settings()
        self.pairs: dict[str, tuple[Path, Path]] = self._read_pairs()
        self.choice = str(self.settings.value(CHOICE_KEY, OURS) or OURS)
        if self.choice != OURS and self.choice not in self.pairs:
            self.choice = OURS
        self.loaded: dict[str, object] = {}       # encoder path -> SamOnnxBackend, this session
        self.opening: Job | None = None
        self.embedding: Job | None = None
        self.precomputing: Job | None = None
        self._deferred: Job | None = None        # a cancelled pre-compute still finishing
        self.embedded: set[str] = set()          # image ids embedded with the chosen model
        self._embed_since = 0.0
        self._waiting_click = False
        self._tick = QTimer(self)
        self._tick.setInterval(500)
        self._tick.timeout.connect(self.changed)
        self.changed.connect(tool.refresh_status)

    # -- remembered list -----------------------------------------------------------------
    def _read_pairs(self) -> dict[str, tuple[Path, Path]]:
        try:
            raw = json.loads(str(self.settings.value(MODELS_KEY, "[]") or "[]"))
        except ValueError:
            raw = []
        pairs = {}
        for item in raw if isinstance(raw, list) else []:
            if isinstance(item, list) and len(item) == 2:
                pairs[str(item[0])] = (Path(item[0]), Path(item[1]))
        return pairs

    def _save(self) -> None:
        self.settings.setValue(MODELS_KEY, json.dumps([[str(e), str(d)]
                                                       for e, d in self.pairs.values()]))
        self.settings.setValue(CHOICE_KEY, self.choice)
        self.settings.sync()

    def entries(self) -> list[tuple[str, str, str]]:
        """(key, combo text, tooltip) of each model, ours first."""
        ours = self.tool.backend if not is_sam(self.tool.backend) else None
        rows = [(OURS, ours.name if ours is not None else "ours",
                 "Our click model: the project's newest click run, else the bundled starter")]
        for key, (enc, dec) in self.pairs.items():
            backend = self.loaded.get(key)
            name = backend.name if backend is not None else f"SAM file: {model_stem(enc)}"
            rows.append((key, name, f"{enc}\n{dec}"))
        return rows

    def current_image_id(self) -> str | None:
        return self._image_id()

    @property
    def backend(self):
        """The chosen SAM backend once open; None while ours answers (or the file opens)."""
        return self.loaded.get(self.choice) if self.choice != OURS else None

    # -- adding a model ------------------------------------------------------------------
    def add_files_dialog(self) -> None:
        """Model > Add SAM Model File…: the encoder and decoder, picked together."""
        names, _ = QFileDialog.getOpenFileNames(
            self.parent_widget, "Add SAM model: pick the encoder and the decoder .onnx",
            "", ONNX_FILTER)
        if names:
            self.add([Path(n) for n in names])

    def add_folder_dialog(self) -> None:
        """Model > Add SAM Model Folder…: a folder holding the pair (X-AnyLabeling's layout)."""
        name = QFileDialog.getExistingDirectory(self.parent_widget,
                                                "Add SAM model: the folder holding the pair")
        if name:
            self.add([Path(name)])

    def add(self, paths: list[Path]) -> Job:
        """Open the pair in a Job; once open it is listed, remembered and chosen."""
        return self._open(paths, then_choose=True)

    def _open(self, paths: list[Path], then_choose: bool) -> Job:
        if self.opening is not None:
            self.opening.token.cancel()
        job = Job(open_model, list(paths), name="Opening SAM model")
        job.signals.succeeded.connect(partial(self._on_open_succeeded, then_choose))
        job.signals.failed.connect(self._on_open_failed)
        job.signals.finished.connect(partial(self._on_open_finished, job))
        self.opening = job
        self.changed.emit()
        return self._start(job, report_failure=False, visible=True)

    def _on_open_succeeded(self, then_choose: bool, backend) -> None:
        key = str(backend.encoder_path)
        self.pairs[key] = (backend.encoder_path, backend.decoder_path)
        if key in self.loaded and self.loaded[key].decoder_path == backend.decoder_path:
            backend = self.loaded[key]     # added twice: the open one keeps its embeddings
        self.loaded[key] = backend
        log.info("SAM model %s ready (%s, %s)", backend.model_name, backend.encoder_path,
                 backend.decoder_path)
        if then_choose or self.choice == key:
            self.choose(key)
        else:
            self._save()
            self.changed.emit()

    def _on_open_failed(self, details: str) -> None:
        if self.choice != OURS and self.choice not in self.loaded:
            self.choice = OURS            # a remembered file that no longer opens
            self._save()
        self._report_error("Cannot use this SAM model", plain_error(details), details)

    def _on_open_finished(self, job: Job) -> None:
        if self.opening is job:
            self.opening = None
        self.changed.emit()

    # -- choosing ------------------------------------------------------------------------
    def choose(self, key: str) -> None:
        """Make `key` (OURS or a listed pair's encoder path) the model that answers clicks."""
        if key != OURS and key not in self.pairs:
            raise ValueError(f"unknown click model {key!r}; known: {[OURS, *self.pairs]}")
        if key == self.choice and key in self.loaded and self.tool.backend is self.loaded[key]:
            self.changed.emit()           # already answering: the clicks under way go on
            return
        self._cancel_background()
        self._deferred = None
        if key != self.choice:
            self.embedded.clear()
        self.choice = key
        self._save()
        self.tool.reset()
        self.tool.canvas.set_proposal(None)
        if key == OURS:
            if is_sam(self.tool.backend):
                self.tool.backend = None  # loaded on the first click, on a worker
        elif key in self.loaded:
            self.tool.backend = self.loaded[key]
            self.embed_current()
        else:
            self._open(list(self.pairs[key]), then_choose=True)
        self.changed.emit()

    def restore(self) -> None:
        """At project open: the remembered SAM choice is opened again (in a Job)."""
        if self.choice != OURS and self.choice not in self.loaded and self.opening is None:
            self._open(list(self.pairs[self.choice]), then_choose=True)

    # -- embedding -----------------------------------------------------------------------
    def on_image_shown(self, image_id: str) -> None:
        """A new image is on the canvas: embed it (then the next ones) with the chosen model."""
        backend = self.backend
        if backend is not None and self.tool.backend is not backend:
            self.tool.backend = backend          # the window reset it at project open
        elif backend is None and is_sam(self.tool.backend):
            self.tool.backend = None
        pending = self.precomputing or self._deferred
        self._cancel_background()
        if pending is not None and backend is not None:
            # its encoder run ends first (it may be this very image): then embed what is left
            self._deferred = pending
            self._embed_since = time.monotonic()
            self._tick.start()
            pending.signals.finished.connect(partial(self._on_deferred_finished, pending))
            if pending.ended:         # it ended before the connection: no signal will come
                self._on_deferred_finished(pending)
        else:
            self.embed_current()
        self.changed.emit()

    def _on_deferred_finished(self, job: Job) -> None:
        if self._deferred is not job:
            return
        self._deferred = None
        self._tick.stop()
        self.embed_current()
        if self.embedding is None and self._waiting_click:     # nothing was left to embed
            self._waiting_click = False
            self.tool.send_request()
        self.changed.emit()

    def embed_current(self) -> None:
        backend, image_id, image = self.backend, self._image_id(), self.tool.image
        if backend is None or image_id is None or image is None or self.embedding is not None:
            return
        region = None
        tiling = backend.tiling(*image.shape[:2])
        if tiling.tiled:     # a large image: the tiles in view, when that is a few of them
            region = self.tool.canvas_region()
            tiles = tiling.overlapping(region) if region is not None else []
            if not tiles or len(tiles) > VIEW_TILES or all(
                    backend.tile_ready(image_id, image.shape, t) for t in tiles):
                self._start_precompute(backend)     # a click embeds the tile it falls in
                return
        elif backend.is_prepared(image_id):
            self.embedded.add(image_id)
            self._start_precompute(backend)
            return
        job = Job(embed_image, backend, image_id, image, region, name="SAM embedding")
        job.signals.succeeded.connect(partial(self._on_embed_succeeded, backend))
        job.signals.finished.connect(partial(self._on_embed_finished, job))
        self.embedding = job
        self._embed_since = time.monotonic()
        self._tick.start()
        self._start(job, visible=True)

    def embedding_running(self) -> bool:
        return self.embedding is not None or self._deferred is not None

    def wait_for_embedding(self) -> None:
        """A click during the embedding: its request starts when the embedding is done."""
        self._waiting_click = True
        self.show_message(f"SAM: embedding this image… {time.monotonic() - self._embed_since:.0f}"
                          f" s; the click answers when it is done", 4000)
        self.changed.emit()

    def _on_embed_succeeded(self, backend, image_id: str) -> None:
        self.embedded.add(image_id)
        if backend is self.backend:
            self._start_precompute(backend)

    def _on_embed_finished(self, job: Job) -> None:
        if self.embedding is not job:
            return
        self.embedding = None
        self._tick.stop()
        if self._waiting_click and self._deferred is None:
            self._waiting_click = False
            if job.token.cancelled:
                self.tool.reset()
            else:
                self.tool.send_request()
        self.changed.emit()

    def _start_precompute(self, backend) -> None:
        items = self._next_images()[:AHEAD]
        if not items or all(backend.is_prepared(i) for i, _ in items):
            return
        job = Job(precompute_next, backend, items, name="SAM: embedding the next images")
        job.signals.failed.connect(self._on_precompute_failed)
        job.signals.finished.connect(partial(self._on_precompute_finished, job))
        self.precomputing = job
        # no message box for a head start that failed: the image embeds again when shown
        self._start(job, report_failure=False, visible=True)

    def _on_precompute_failed(self, details: str) -> None:
        log.warning("pre-computing SAM embeddings failed: %s", details)
        self.show_message(f"SAM: the next images were not embedded ahead: "
                          f"{plain_error(details)}", 8000)

    def _on_precompute_finished(self, job: Job) -> None:
        if self.precomputing is job:
            self.precomputing = None
        self.changed.emit()

    def _cancel_background(self) -> None:
        """Model or image switched: what was being embedded for the old one stops."""
        if self.precomputing is not None:
            self.precomputing.token.cancel()
            self.precomputing = None
        if self.embedding is not None:
            self.embedding.token.cancel()
            self.embedding = None
            self._tick.stop()
            self._waiting_click = False

    def cancel_all(self) -> None:
        """On close: nothing keeps embedding for a window that is gone."""
        self._deferred = None
        for job in (self.opening, self.embedding, self.precomputing):
            if job is not None:
                job.token.cancel()

    # -- what the tool bar says ----------------------------------------------------------
    def status_text(self, name: bool = True) -> str:
        """'SAM file: x · licence: … · embedding ~1.2 s' / 'ours: run · no embedding step';
        without `name` (the tool bar's list shows it) a SAM pair is named by its files."""
        if self.opening is not None:
            return "opening the SAM model…"
        backend = self.backend if self.choice != OURS else self.tool.backend
        if self.choice != OURS and backend is None:
            return "SAM model not open"
        if backend is None:
            return (("ours: " if name else "") + "the project's newest click run, else the "
                    "bundled starter (loaded at the first click) · no embedding step")
        return describe(backend, self.tool.canvas.image_shape, name=name,
                        embedding_for=(time.monotonic() - self._embed_since
                                       if self.embedding_running() else None),
                        embedded=self._image_id() in self.embedded)


# -- the window's side ----------------------------------------------------------------------
def _read_pixels(project, entry) -> np.ndarray:
    return project.read_image(entry).data


def image_key(project, entry_id: str) -> str:
    """The id the SAM backend knows an image by: entry ids repeat across projects, and the
    backend keeps the embedding it made for an id during the session."""
    return f"{project.root}::{entry_id}"


def _current_key(window) -> str | None:
    if window.project is None or window.current is None:
        return None
    return image_key(window.project, window.current.id)


def _next_images(window) -> list[tuple[str, ImageSource]]:
    """The images after the current one in the list as the user sees it, loaded lazily."""
    project, current = window.project, window.current
    if project is None or current is None:
        return []
    ids = window.images.visible_ids()
    if current.id not in ids:
        return []
    i = ids.index(current.id)
    rest = ids[i + 1:] + ids[:i]
    return [(image_key(project, image_id), partial(_read_pixels, project, project.entry(image_id)))
            for image_id in rest]


def attach_to_window(tool, window) -> ClickModels | None:
    """Give a MainWindow the click-model choice: the Model menu's actions, the tool bar, the
    embedding of each image shown. None for a canvas outside a MainWindow (tests of parts)."""
    if not all(hasattr(window, a) for a in ("action_registry", "runner", "image_shown",
                                              "images", "report_error")):
        return None
    models = ClickModels(
        tool, start_job=window.runner.start, report_error=window.report_error,
        show_message=lambda text, ms=0: window.statusBar().showMessage(text, ms),
        image_id=partial(_current_key, window),
        next_images=partial(_next_images, window), settings=getattr(window, "settings", None),
        parent=window)
    reg = window.action_registry
    reg.add(*CLICK_MODEL_ACTIONS)
    window.click_training = click_training.attach(tool, window)
    acts = [window.click_training.action, reg.bind("model.add_sam_files", models.add_files_dialog),
            reg.bind("model.add_sam_folder", models.add_folder_dialog)]
    menu = next((a.menu() for a in window.menuBar().actions()
                 if a.menu() is not None and a.menu().title().replace("&", "") == "Model"), None)
    if menu is not None:
        menu.addSeparator()
        menu.addActions(acts)
    window.click_model_bar = ClickModelBar(models, window)
    window.addToolBarBreak()      # a row of its own: beside the tools it was cut to "»"
    window.addToolBar(window.click_model_bar)
    window.image_shown.connect(models.on_image_shown)
    return models     # its jobs go through window.runner: closing the window cancels them
