"""Project images and masks -> normalised snapshots -> augmented training patches.

The trainer works on copies taken once at the start (`read_labelled`, then
`build_training_data`), so painting in the app goes on while it trains. Training images are
resampled to the run's working scale once, there (`segstudio.ml.resample`); validation images
stay as stored, because validation goes through the predictor, which resamples and brings the
prediction back to full size, as Measure does. Patches are cropped around labelled pixels most
of the time, so a few scribbles on a large image still fill most batches with supervision.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import cv2
import numpy as np

from segstudio.core.classes import UNLABELED, LabelClass
from segstudio.core.jobs import CancelToken
from segstudio.ml.normalise import (Normalisation, effective_channels,  # noqa: F401 (re-exported)
                                    normalise_image, to_channels)
from segstudio.ml.objects import ObjectHead, head_for, project_objects, resize_objects, training_target
from segstudio.ml.resample import resize_mask

log = logging.getLogger(__name__)

_MAX_INDEX_PER_CLASS = 8192   # labelled-pixel positions kept per class and image for sampling


class DataError(ValueError):
    """Training data that cannot be used; the message says what to do."""


def normalise(data: np.ndarray, norm: Normalisation, in_channels: int) -> np.ndarray:
    """The model's input for one image: (h, w, in_channels) float32, normalised per image.

    The same `Normalisation.for_image` call the predictor makes, so validation in training and
    Measure afterwards feed the model the same numbers.
    """
    return normalise_image(data, replace(norm, in_channels=in_channels))


@dataclass
class Sample:
    """One image's normalised pixels (h, w, c) and a private copy of its mask."""

    id: str
    image: np.ndarray
    mask: np.ndarray
    split: str
    positions: dict[int, np.ndarray] = field(default_factory=dict)  # class -> flat indices

    def __post_init__(self) -> None:
        if self.image.shape[:2] != self.mask.shape:
            raise DataError(f"{self.id}: image {self.image.shape[:2]} and mask {self.mask.shape} "
                            f"differ in size")
        if not self.positions:
            flat = self.mask.ravel()
            rng = np.random.default_rng(len(flat))
            for cls in np.unique(flat):
                if cls == UNLABELED:
                    continue
                idx = np.flatnonzero(flat == cls)
                if len(idx) > _MAX_INDEX_PER_CLASS:
                    idx = rng.choice(idx, _MAX_INDEX_PER_CLASS, replace=False)
                self.positions[int(cls)] = idx

    @property
    def labelled(self) -> int:
        return int(np.count_nonzero(self.mask != UNLABELED))


@dataclass
class ValImage:
    """A validation image as stored (raw pixels, full-size mask): the predictor prepares it."""

    id: str
    image: np.ndarray
    mask: np.ndarray
    split: str = "val"
    objects: np.ndarray | None = None     # stored object ids (object classes), full size


@dataclass
class Labelled:
    """One labelled image read from a project: raw pixels, a private mask copy, its header."""

    id: str
    image: np.ndarray
    mask: np.ndarray
    split: str
    kind: str = "raster"
    extra: dict = field(default_factory=dict)
    objects: np.ndarray | None = None     # object ids of object classes, when stored


@dataclass
class TrainingData:
    """Snapshots of the labelled images, split by the image list's train/val column.

    `train` holds normalised images at the working scale; `val` raw images at full size.
    """

    train: list[Sample]
    val: list[ValImage]
    classes: list[LabelClass]
    in_channels: int
    normalisation: Normalisation
    data_hash: str
    warnings: list[str] = field(default_factory=list)
    plan: Any = None                 # the segstudio.ml.plan.Plan the data was prepared by
    objects: ObjectHead | None = None    # object classes: one more output, their boundary

    @property
    def num_classes(self) -> int:
        """Outputs the model needs: every class id, and the boundary with object classes."""
        if self.objects is not None:
            return self.objects.num_outputs
        return max(c.id for c in self.classes) + 1

    def class_pixels(self, split: str = "train") -> dict[int, int]:
        counts = np.zeros(256, np.int64)
        for s in self.train if split == "train" else self.val:
            counts += np.bincount(s.mask.ravel(), minlength=256)
        out = {c.id: int(counts[c.id]) for c in self.classes}
        if self.objects is not None:
            out[self.objects.boundary] = int(counts[self.objects.boundary])
        return out


def build_training_data(items: Sequence[tuple[str, np.ndarray, np.ndarray, str]],
                        classes: list[LabelClass], norm: Normalisation | None = None,
                        in_channels: int | None = None,
                        cancel: CancelToken | None = None, *,
                        objects: Mapping[str, np.ndarray] | None = None) -> TrainingData:
    """TrainingData from (id, raw image, mask, split) tuples; masks are copied.

    With object classes among `classes`, the training masks get the objects' boundary rings
    (`segstudio.ml.objects`), from `objects` (image id -> object ids) where an image has them.
    """
    norm = norm or Normalisation("percentile")
    head = head_for(classes)
    objects = objects or {}
    if not classes:
        raise DataError("the project has no classes; add at least a background and one class")
    known = {c.id for c in classes}
    if in_channels is None:
        in_channels = max((effective_channels(img) for _i, img, _m, s in items if s != "test"),
                          default=1)
    digest = hashlib.sha256()
    train, val, warnings = [], [], []
    for image_id, image, mask, split in items:
        if cancel:
            cancel.raise_if_cancelled()
        if split == "test":
            continue                  # held out: never seen by training or early stopping
        mask = np.array(mask, dtype=np.uint8, copy=True)
        stray = set(np.unique(mask).tolist()) - known - {UNLABELED}
        if stray:
            warnings.append(f"{image_id}: mask holds class ids {sorted(stray)} that the project "
                            f"does not define; they are ignored")
            mask[np.isin(mask, sorted(stray))] = UNLABELED
        if not np.any(mask != UNLABELED):
            continue
        digest.update(image_id.encode())
        digest.update(np.ascontiguousarray(image).tobytes())
        digest.update(mask.tobytes())
        ids = objects.get(image_id) if head is not None else None
        if ids is not None and ids.shape != mask.shape:
            warnings.append(f"{image_id}: object ids {ids.shape} do not fit the mask "
                            f"{mask.shape}; its regions stand in for its objects")
            ids = None
        if ids is not None:
            digest.update(np.ascontiguousarray(ids).tobytes())
        if split == "val":
            val.append(ValImage(image_id, image, mask, objects=ids))
            continue
        prepared = normalise(image, norm, in_channels)
        target = resize_mask(mask, prepared.shape[:2])
        if head is not None:
            if ids is not None:
                ids = resize_objects(ids, prepared.shape[:2])
            target = training_target(target, ids, head)
        train.append(Sample(image_id, prepared, target, split))
    if not train:
        raise DataError("no labelled pixels in the training images: paint at least a few "
                        "strokes of each class on images in the 'train' split (or move "
                        "labelled images there), then train again")
    # the run's normalisation knows its channel count: validation prepares raw images with it
    data = TrainingData(train, val, list(classes), in_channels,
                        replace(norm, in_channels=in_channels), digest.hexdigest()[:16], warnings,
                        objects=head)
    counts = data.class_pixels("train")
    for c in classes:
        if counts[c.id] == 0:
            data.warnings.append(f"class '{c.name}' has no labelled pixels in the training "
                                 f"images; the model cannot learn it")
    if not val:
        data.warnings.append("no labelled images in the 'val' split: validation uses the "
                             "training images, so its scores are optimistic")
    for w in data.warnings:
        log.warning("%s", w)
    return data


def read_labelled(project: Any, *, masks: Mapping[str, np.ndarray] | None = None,
                  cancel: CancelToken | None = None) -> list[Labelled]:
    """Every labelled train/val image of a Project, read once (unsaved `masks` win over disk)."""
    masks = masks or {}
    head = head_for(project.classes)
    out = []
    for entry in project.images:
        if entry.split == "test" or (entry.id not in masks and not project.masks.has_mask(entry.id)):
            continue
        if cancel:
            cancel.raise_if_cancelled()
        loaded = project.read_image(entry)
        h, w = loaded.data.shape[:2]
        mask = masks.get(entry.id)
        mask = project.load_mask(entry, (h, w)) if mask is None else np.array(mask, copy=True)
        out.append(Labelled(entry.id, np.asarray(loaded.data), mask, entry.split,
                            loaded.info.kind, dict(loaded.info.extra or {}),
                            project_objects(project, entry, (h, w), head)))
    return out


def objects_of(items: Sequence[Labelled]) -> dict[str, np.ndarray]:
    """image id -> stored object ids, for `build_training_data`."""
    return {it.id: it.objects for it in items if it.objects is not None}


def project_plan(items: Sequence[Labelled], classes: list[LabelClass], cfg: Any, *,
                 device: str = "cpu", memory_bytes: int | None = None,
                 cancel: CancelToken | None = None) -> Any:
    """The plan (`segstudio.ml.plan.Plan`) for these labelled images under `cfg`."""
    from segstudio.ml import plan as planning

    facts = []
    for it in items:
        if cancel:
            cancel.raise_if_cancelled()
        if it.split != "test" and np.any(it.mask != UNLABELED):
            facts.append(planning.image_facts(it.id, it.image, it.mask, kind=it.kind,
                                              extra=it.extra))
    foreground = {}
    if any(f.modality == "ct" for f in facts):
        foreground = planning.foreground_statistics(
            [(it.image, it.mask) for it in items if it.split != "test"])
    fp = planning.fingerprint(facts, classes, foreground)
    return planning.make_plan(fp, cfg, device=device, memory_bytes=memory_bytes)


def snapshot_project(project: Any, *, norm: Normalisation | None = None,
                     masks: Mapping[str, np.ndarray] | None = None,
                     in_channels: int | None = None,
                     cancel: CancelToken | None = None) -> TrainingData:
    """Copy every labelled image of a Project (unsaved masks from `masks` win over disk)."""
    labelled = read_labelled(project, masks=masks, cancel=cancel)
    items = [(it.id, it.image, it.mask, it.split) for it in labelled]
    return build_training_data(items, project.classes, norm, in_channels, cancel,
                               objects=objects_of(labelled))


@dataclass(frozen=True)
class Augment:
    """Random geometric and intensity changes; all off with `Augment.none()`.

    The plan turns mirrors and rotations off where they would swap labels (left and right
    lung, sky and road): `flip_h` mirrors left-right, `flip_v` up-down.
    """

    flip_h: bool = True
    flip_v: bool = True
    rot90: bool = True
    scale: tuple[float, float] = (0.75, 1.33)
    brightness: float = 0.1          # added, in normalised units
    contrast: tuple[float, float] = (0.8, 1.25)

    @classmethod
    def none(cls) -> Augment:
        return cls(False, False, False, (1.0, 1.0), 0.0, (1.0, 1.0))


def _crop(img: np.ndarray, mask: np.ndarray, cy: int, cx: int, size: int
          ) -> tuple[np.ndarray, np.ndarray]:
    """A size x size window centred near (cy, cx), shifted inside the image; padded if smaller."""
    h, w = mask.shape
    y0 = min(max(cy - size // 2, 0), max(h - size, 0))
    x0 = min(max(cx - size // 2, 0), max(w - size, 0))
    ci, cm = img[y0:y0 + size, x0:x0 + size], mask[y0:y0 + size, x0:x0 + size]
    if ci.shape[0] < size or ci.shape[1] < size:
        py, px = size - ci.shape[0], size - ci.shape[1]
        ci = np.pad(ci, ((0, py), (0, px), (0, 0)), mode="constant")
        cm = np.pad(cm, ((0, py), (0, px)), mode="constant", constant_values=UNLABELED)
    return ci, cm


class PatchSampler:
    """Draws augmented (image, mask) patch batches from training samples, seeded."""

    def __init__(self, samples: Sequence[Sample], patch: int, batch: int, *, seed: int = 0,
                 augment: Augment | None = None, label_bias: float = 0.8) -> None:
        self.samples = [s for s in samples if s.positions]
        if not self.samples:
            raise DataError("no labelled pixels to sample patches from")
        self.patch, self.batch = patch, batch
        self.augment = augment if augment is not None else Augment()
        self.label_bias = label_bias
        self.rng = np.random.default_rng(seed)
        self.channels = self.samples[0].image.shape[2]

    def _one(self, out_img: np.ndarray, out_mask: np.ndarray) -> None:
        rng, aug, p = self.rng, self.augment, self.patch
        s = self.samples[rng.integers(len(self.samples))]
        h, w = s.mask.shape
        if rng.random() < self.label_bias:
            # a class first, then one of its pixels: rare classes get as many centres as common ones
            classes = list(s.positions)
            idx = s.positions[classes[rng.integers(len(classes))]]
            cy, cx = divmod(int(idx[rng.integers(len(idx))]), w)
        else:
            cy, cx = int(rng.integers(h)), int(rng.integers(w))
        lo, hi = aug.scale
        scale = float(np.exp(rng.uniform(np.log(lo), np.log(hi)))) if hi > lo else 1.0
        size = max(8, int(round(p * scale)))
        img, mask = _crop(s.image, s.mask, cy, cx, size)
        if size != p:
            img = cv2.resize(img, (p, p), interpolation=cv2.INTER_LINEAR)
            mask = cv2.resize(mask, (p, p), interpolation=cv2.INTER_NEAREST)
            if img.ndim == 2:
                img = img[:, :, None]
        if aug.flip_h and rng.random() < 0.5:
            img, mask = img[:, ::-1], mask[:, ::-1]
        if aug.flip_v and rng.random() < 0.5:
            img, mask = img[::-1], mask[::-1]
        if aug.rot90:
            k = int(rng.integers(4))
            if k:
                img, mask = np.rot90(img, k), np.rot90(mask, k)
        c_lo, c_hi = aug.contrast
        contrast = float(rng.uniform(c_lo, c_hi)) if c_hi > c_lo else 1.0
        bright = float(rng.uniform(-aug.brightness, aug.brightness)) if aug.brightness else 0.0
        chw = img.transpose(2, 0, 1)
        if contrast != 1.0 or bright:
            m = float(chw.mean())
            np.multiply(chw - m, contrast, out=out_img)
            out_img += m + bright
        else:
            out_img[...] = chw
        out_mask[...] = mask

    def next_batch(self) -> tuple[np.ndarray, np.ndarray]:
        """(batch, c, p, p) float32 and (batch, p, p) uint8 (255 = ignore)."""
        x = np.empty((self.batch, self.channels, self.patch, self.patch), np.float32)
        y = np.empty((self.batch, self.patch, self.patch), np.uint8)
        for i in range(self.batch):
            self._one(x[i], y[i])
        return x, y


class Prefetcher:
    """Builds batches on a background thread (numpy and OpenCV release the GIL), `depth` ahead.

    `transform(x, y)`, when given, also runs on that thread: the trainer turns batches into
    page-locked tensors there, so the training loop only starts the copy to the GPU.
    """

    def __init__(self, sampler: PatchSampler, depth: int = 2,
                 transform: Callable[[np.ndarray, np.ndarray], Any] | None = None) -> None:
        self._sampler = sampler
        self._transform = transform
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="segstudio-patches", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                item = self._sampler.next_batch()
                if self._transform is not None:
                    item = self._transform(*item)
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except BaseException as e:  # handed to the consumer, which re-raises it
            self._queue.put(e)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return self

    def __next__(self) -> tuple[np.ndarray, np.ndarray]:
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
