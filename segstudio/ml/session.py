"""Job bodies the app runs on its worker pool: predict one or many images, measure, rank.

Plain functions with `on_progress`/`cancel` (no Qt); each loads what it needs itself, so a
worker never touches the GUI's project object.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segstudio.core.jobs import CancelToken, Progress, ProgressFn
from segstudio.io.prediction_cache import PredictionCache, checkpoint_stamp
from segstudio.io.project import Project
from segstudio.ml.predict import TileOptions, predict_tiled
from segstudio.ml.runs import LoadedModel, find_checkpoint, load_run_model

log = logging.getLogger(__name__)

_models: dict[tuple[str, str], LoadedModel] = {}
_lock = threading.Lock()
_cache_lock = threading.Lock()     # PredictionCache is not thread-safe; jobs may overlap


def run_model(project_root: Path, run_dir: Path) -> LoadedModel:
    """A run's model, loaded once per checkpoint version (the one loader, cached)."""
    stamp = checkpoint_stamp(find_checkpoint(Path(run_dir)))
    key = (str(Path(run_dir).resolve()), f"{stamp['size']}:{stamp['mtime_ns']}")
    with _lock:
        if key not in _models:
            _models.clear()          # one model in memory at a time is plenty
            _models[key] = load_run_model(project_root, run_dir)
        return _models[key]


@dataclass
class ImagePrediction:
    image_id: str
    run_id: str
    labels: np.ndarray
    uncertainty: np.ndarray | None      # uint8 0..255 (entropy)
    objects: np.ndarray | None = None   # uint32 object ids of a run with object classes


def _cache(project: Project, run_dir: Path) -> PredictionCache:
    cache = PredictionCache.for_project(project)
    with _cache_lock:
        cache.validate(Path(run_dir).name, checkpoint_stamp(find_checkpoint(Path(run_dir))))
    return cache


def predict_images(project_root: Path, run_dir: Path, image_ids: list[str], *,
                   options: TileOptions = TileOptions(), on_progress: ProgressFn | None = None,
                   cancel: CancelToken | None = None) -> list[ImagePrediction]:
    """Predict images (cached per run: a cached one costs a file read) and return them."""
    cancel = cancel or CancelToken()
    project = Project.open(project_root)
    loaded = run_model(project.root, run_dir)
    cache = _cache(project, run_dir)
    run_id = Path(run_dir).name
    out = []
    for k, image_id in enumerate(image_ids):
        cancel.raise_if_cancelled()
        entry = project.entry(image_id)
        if on_progress:
            on_progress(Progress(k, len(image_ids), f"{entry.display_name}"))
        info = project.probe(entry)
        with _cache_lock:
            cached = cache.load(run_id, image_id, (info.height, info.width))
            objects = (cache.load_objects(run_id, image_id, (info.height, info.width))
                       if cached is not None and loaded.objects is not None else None)
        if cached is not None and loaded.objects is not None and objects is None:
            cached = None                # cached before its objects were: predict again
        if cached is None:
            data = project.read_image(entry).data
            pred = predict_tiled(loaded.model, data, loaded.normalise, options,
                                 objects=loaded.objects, cancel=cancel)
            with _cache_lock:
                try:
                    cache.save(run_id, image_id, pred.labels, pred.entropy, pred.objects)
                    cached = cache.load(run_id, image_id, (info.height, info.width))
                except (OSError, RuntimeError) as e:
                    log.warning("prediction of %s not cached: %s", image_id, e)
            if cached is None:       # the cache folder is not writable: keep the result anyway
                unc = None if pred.entropy is None else np.rint(
                    np.clip(pred.entropy.astype(np.float32), 0, 1) * 255).astype(np.uint8)
                cached = (pred.labels, unc)
            objects = pred.objects
        out.append(ImagePrediction(image_id, run_id, cached[0], cached[1], objects))
    if on_progress:
        on_progress(Progress(len(image_ids), len(image_ids), "done"))
    return out


def measure(project_root: Path, run_dir: Path, split: str = "val", *,
            on_progress: ProgressFn | None = None, cancel: CancelToken | None = None):
    """Per-class metrics of a run on a split; objects counted for the run's object classes
    (from its object ids), else for binary projects (connected regions)."""
    from segstudio.ml.evaluate import evaluate_project

    project = Project.open(project_root)
    loaded = run_model(project.root, run_dir)
    classes = loaded.classes
    objects = [c.id for c in classes if c.id != 0] if len(classes) == 2 else None
    if loaded.objects is not None:
        objects = None                  # the run's object classes
    return evaluate_project(project, loaded.model, loaded.normalise, classes, split=split,
                            instance_classes=objects, exclude_from_mean=(0,),
                            objects=loaded.objects,
                            on_progress=on_progress, cancel=cancel)


def rank(project_root: Path, run_dir: Path, *, on_progress: ProgressFn | None = None,
         cancel: CancelToken | None = None):
    """'Label this next': images still to label, most uncertain first."""
    from segstudio.ml.suggest import images_to_label, rank_images

    project = Project.open(project_root)
    loaded = run_model(project.root, run_dir)
    return rank_images(project, loaded.model, loaded.normalise, entries=images_to_label(project),
                       on_progress=on_progress, cancel=cancel)
