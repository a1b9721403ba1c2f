"""The training plan: what a run should look like, derived from the project's labelled data.

Before every run the trainer reads a `Fingerprint` (`segstudio.ml.fingerprint`) of the labelled
images (sizes, channels, modality, the size and place of every class's objects) and derives a
`Plan` from it: the working scale, patch and batch size, network depth, which augmentations
keep the labels true, and the normalisation. Every item carries its reason, the Training panel and
`segstudio-cli plan` show them, and the model card stores them. A setting the user gave
(panel, CLI flag, TOML) always wins, and the plan says so.

The rules, in words (docs/training.md has them with the measurements):

- **Working scale.** Objects and their surroundings must fit a patch: the 90th percentile of
  the objects' extent (the longer bounding-box side of a connected region of one class) is
  brought to at most `OBJECT_SHARE` of the patch. When the images differ in size and the
  objects grow with the image (the same scene at different resolutions: radiographs), every
  image is resampled to one longer side; otherwise (objects the same size in pixels whatever
  the image: microscopy) one factor serves all. Images are never enlarged by the plan.
- **Mirroring and rotation.** A horizontal mirror swaps left and right: it is off when two
  classes sit on opposite sides (left and right lung) or a class keeps to one side, in
  (nearly) every image where they appear. The same test on the vertical axis turns vertical
  mirrors off (sky above road); rotations by 90 degrees are off when either mirror is.
- **Normalisation.** CT (DICOM modality CT, or Hounsfield-like values): clip to the 0.5-99.5
  percentiles of the foreground and z-score with the foreground's mean and spread (nnU-Net's
  rule); everything else per image (percentiles), which suits microscopy at any bit depth,
  photographs and radiographs.
- **Capacity and budget.** U-Net depth: the smallest whose receptive field covers the objects
  at the working scale (at least the preset's). Patch: 192 px, 256 px for large objects.
  Batch: a fixed number of pixels per step (what 2 CPU cores train fastest on), within a
  memory budget (a quarter of free RAM on the CPU, half the free memory of a GPU).

numpy and OpenCV only: the window and the CLI plan without importing torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from segstudio.core.classes import BACKGROUND
from segstudio.ml.config import PRESETS, TrainConfig
from segstudio.ml.fingerprint import (SIDE_AGREEMENT, Fingerprint, ImageFacts,  # noqa: F401
                                      fingerprint, foreground_statistics, image_facts,
                                      modality_of)
from segstudio.ml.normalise import Normalisation
from segstudio.ml.resample import NATIVE, WorkingScale

OBJECT_SHARE = 0.5          # objects' 90th percentile extent: at most this share of the patch
PATCH_SMALL, PATCH_LARGE = 192, 256
PIXELS_PER_STEP = 8 * 192 * 192    # the batch that trains fastest per second on 2 CPU cores
MAX_BATCH = 32
MIN_SEPARATION = 0.15       # centroid distance (share of the image side) for a lateral pair
MIN_SIDE_IMAGES = 3         # a single class keeping to one side needs this many images
SIDE_OFFSET = 0.2           # ... and its centroids this far from the middle
GROWS_WITH_IMAGE = 0.5      # slope of log(object size) on log(image size): "same scene"
MIN_OBJECT = 12             # px: the plan never shrinks a class's typical object below this
NOT_WORTH = 0.75            # a working scale above this is not worth resampling for
_DEPTHS = range(1, 7)


# -- the plan ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    """A run's shape and why; `apply` fills a TrainConfig's open settings with it."""

    working: WorkingScale
    patch_size: int
    batch_size: int
    depth: int | None
    flip_h: bool
    flip_v: bool
    rot90: bool
    normalisation: Normalisation
    reasons: dict[str, str]
    fingerprint: dict[str, Any] = field(default_factory=dict)

    def apply(self, cfg: TrainConfig) -> TrainConfig:
        """The config with every setting the user left open taken from the plan."""
        changes: dict[str, Any] = {"patch_size": self.patch_size, "batch_size": self.batch_size,
                                   "flip_h": self.flip_h, "flip_v": self.flip_v,
                                   "rot90": self.rot90, "normalisation": self.normalisation.mode}
        if self.working.mode == "long_side":
            changes["working_size"] = self.working.long_side
            changes["working_scale"] = None
        else:
            changes["working_scale"] = self.working.scale_for(1, 1)
            changes["working_size"] = None
        if self.depth is not None and cfg.depth is None:
            changes["depth"] = self.depth
        return replace(cfg, **changes)

    def lines(self) -> list[str]:
        """One line per item, with its reason: what the panel and `segstudio-cli plan` print."""
        aug = [n for n, on in (("horizontal mirror", self.flip_h), ("vertical mirror",
               self.flip_v), ("90° rotations", self.rot90)) if on]
        out = [f"working scale: {self.working.describe()} — {self.reasons['working']}",
               f"patch {self.patch_size} px, batch {self.batch_size} — {self.reasons['batch']}"]
        if self.depth is not None:
            out.append(f"U-Net depth {self.depth} — {self.reasons['depth']}")
        out.append(f"augmentation: {', '.join(aug) if aug else 'no mirrors or rotations'}; "
                   f"scale and intensity — {self.reasons['augment']}")
        out.append(f"normalisation: {self.normalisation.describe()} — "
                   f"{self.reasons['normalisation']}")
        if self.reasons.get("objects"):
            out.append(self.reasons["objects"])
        return out

    def summary(self) -> str:
        """One short line for the status of the Training panel."""
        mirrors = "mirroring on" if self.flip_h and self.flip_v else (
            "mirroring off" if not (self.flip_h or self.flip_v) else
            "left-right mirror only" if self.flip_h else "up-down mirror only")
        return (f"{self.working.describe()}, patch {self.patch_size}, batch "
                f"{self.batch_size}, {mirrors}")

    def to_dict(self) -> dict[str, Any]:
        return {"working": self.working.to_dict(), "patch_size": self.patch_size,
                "batch_size": self.batch_size, "depth": self.depth, "flip_h": self.flip_h,
                "flip_v": self.flip_v, "rot90": self.rot90,
                "normalisation": self.normalisation.to_dict(), "reasons": dict(self.reasons),
                "fingerprint": self.fingerprint, "lines": self.lines()}


def unet_receptive_field(depth: int) -> int:
    """Receptive field in pixels of `models.UNet` (two 3x3 convs per level, 2x2 pooling)."""
    rf, jump = 1, 1
    for _level in range(depth):
        rf += 4 * jump          # two 3x3 convs
        rf += jump              # 2x2 max pool
        jump *= 2
    rf += 4 * jump              # the bottom block
    for _level in range(depth):
        jump //= 2
        rf += jump + 4 * jump   # transposed conv and the decoder block
    return rf


def _lateral(fp: Fingerprint, axis: int) -> tuple[str | None, bool]:
    """Why mirroring along `axis` (0: x, left-right; 1: y, up-down) would swap labels, or None;
    and whether it is a pair of classes told apart by their side (a label defined by where it
    lies, not by how it looks)."""
    side = "left and right" if axis == 0 else "top and bottom"
    names = {c.id: c.name for c in fp.classes}
    fg = sorted({c for f in fp.images for c in f.centroids if c != BACKGROUND})
    for i, a in enumerate(fg):            # two classes on opposite sides
        for b in fg[i + 1:]:
            diffs = [f.centroids[a][axis] - f.centroids[b][axis] for f in fp.images
                     if a in f.centroids and b in f.centroids]
            if not diffs:
                continue
            d = np.asarray(diffs)
            same_sign = max((d > 0).mean(), (d < 0).mean())
            if same_sign >= SIDE_AGREEMENT and np.median(np.abs(d)) >= MIN_SEPARATION:
                return (f"classes '{names.get(a, a)}' and '{names.get(b, b)}' sit on opposite "
                        f"sides ({side}) in {int(round(same_sign * len(d)))} of {len(d)} "
                        f"images", True)
    for c in fg:                          # one class keeping to one side
        pos = np.asarray([f.centroids[c][axis] for f in fp.images if c in f.centroids]) - 0.5
        if len(pos) < MIN_SIDE_IMAGES:
            continue
        same_sign = max((pos > 0).mean(), (pos < 0).mean())
        if same_sign >= SIDE_AGREEMENT and abs(float(np.median(pos))) >= SIDE_OFFSET:
            where = ("left" if np.median(pos) < 0 else "right") if axis == 0 else (
                "top" if np.median(pos) < 0 else "bottom")
            return (f"class '{names.get(c, c)}' keeps to the {where} of the image in "
                    f"{int(round(same_sign * len(pos)))} of {len(pos)} images", False)
    return None, False


def _grows_with_image(fp: Fingerprint) -> tuple[bool, str]:
    """Whether objects are bigger in bigger images (one scene at many resolutions)."""
    pts = [(math.log(f.long_side), math.log(float(np.median(es))))
           for f in fp.images for es in [sum(f.extents.values(), [])] if es]
    sides = [f.long_side for f in fp.images]
    if len(pts) < 2 or max(sides) < 1.25 * min(sides):
        return False, "the images are about one size"
    x, y = np.asarray(pts).T
    if np.ptp(x) < 1e-9:
        return False, "the images are about one size"
    slope = float(np.polyfit(x, y, 1)[0])
    if slope >= GROWS_WITH_IMAGE:
        return True, (f"the images range from {min(sides)} to {max(sides)} px and their objects "
                      f"grow with them (slope {slope:.2f})")
    return False, (f"the objects keep their size in pixels across images of {min(sides)} to "
                   f"{max(sides)} px (slope {slope:.2f})")


def _memory_batch(patch: int, width: int, depth: int, in_channels: int, budget_bytes: int
                  ) -> int:
    """How many patches fit a memory budget, from the U-Net's activations (forward + backward,
    about 24 float32 values per feature map element)."""
    per = 0.0
    for level in range(depth + 1):
        side = patch / 2**level
        per += width * 2**level * side * side * (2 if level < depth else 1)
    per = per * 24 * 4 + in_channels * patch * patch * 4
    return max(1, int(budget_bytes // max(per, 1.0)))


def make_plan(fp: Fingerprint, cfg: TrainConfig | None = None, *, device: str = "cpu",
              memory_bytes: int | None = None) -> Plan:
    """The plan for a fingerprint; settings given in `cfg` are kept and said so."""
    cfg = cfg or TrainConfig()
    reasons: dict[str, str] = {}
    ext = fp.extents(things=True)
    p90 = float(np.percentile(ext, 90)) if ext.size else 0.0
    spec = cfg.model_spec()
    is_unet = spec.get("name") == "unet"

    # classes told apart by their side need the whole image in view: a patch of its middle
    # cannot know which half it shows
    (h_why, h_pair), (v_why, v_pair) = _lateral(fp, 0), _lateral(fp, 1)
    whole = h_pair       # left and right (lungs, kidneys); above and below is seen by looks

    # patch: the context window the network trains on
    if cfg.patch_size is not None:
        patch = cfg.patch_size
        patch_why = "set by you"
    elif whole:
        patch, patch_why = PATCH_LARGE, "classes told apart by their side"
    else:
        patch = PATCH_LARGE if p90 > OBJECT_SHARE * PATCH_SMALL else PATCH_SMALL
        patch_why = ("large objects" if patch == PATCH_LARGE else "small objects")

    # working scale
    target = OBJECT_SHARE * patch
    stuff = sorted(fp.stuff_classes())
    names = {c.id: c.name for c in fp.classes}
    stuff_note = (f" (not counting {', '.join(repr(names.get(c, c)) for c in stuff)}, which "
                  f"span the image)" if stuff else "")
    if cfg.working_size is not None:
        working = WorkingScale("long_side", long_side=int(cfg.working_size))
        reasons["working"] = "set by you"
    elif cfg.working_scale is not None:
        working = WorkingScale("factor", factor=float(cfg.working_scale)) \
            if cfg.working_scale != 1.0 else NATIVE
        reasons["working"] = "set by you"
    elif not ext.size:
        working, reasons["working"] = NATIVE, "no objects labelled to measure" + stuff_note
    elif p90 <= target:
        working = NATIVE
        reasons["working"] = (f"90 % of the objects{stuff_note} span at most {p90:.0f} px: "
                              f"they fit the {patch} px patch at full resolution")
    else:
        grows, why = _grows_with_image(fp)
        rel = np.asarray([e / f.long_side for f in fp.images for c, es in f.extents.items()
                          if c not in stuff for e in es])
        smallest_rel = min(fp.typical_extents(relative=True).values())
        smallest = min(fp.typical_extents().values())
        biggest_side = max(f.long_side for f in fp.images)
        long_side = target / float(np.percentile(rel, 90))
        long_side = int(math.ceil(max(long_side, MIN_OBJECT / smallest_rel) / 16) * 16)
        factor = max(target / p90, MIN_OBJECT / smallest)
        detail = (f"; no class's typical object below {MIN_OBJECT} px"
                  if factor > target / p90 * 1.001 else "")
        if grows and long_side < NOT_WORTH * biggest_side:
            working = WorkingScale("long_side", long_side=max(long_side, 32))
            reasons["working"] = (f"{why}: each image is resampled so that 90 % of the objects"
                                  f"{stuff_note} span at most {target:.0f} px of the {patch} px "
                                  f"patch{detail}")
        elif not grows and factor < NOT_WORTH:
            working = WorkingScale("factor", factor=round(factor, 3))
            reasons["working"] = (f"{why}; 90 % of the objects{stuff_note} span up to "
                                  f"{p90:.0f} px, more than {target:.0f} px of the {patch} px "
                                  f"patch{detail}")
        else:
            working = NATIVE
            reasons["working"] = (f"90 % of the objects{stuff_note} span up to {p90:.0f} px; "
                                  f"shrinking the images would lose their detail{detail}"
                                  if factor >= NOT_WORTH or long_side >= NOT_WORTH * biggest_side
                                  else why)

    if whole and cfg.working_size is None and cfg.working_scale is None:
        biggest_side = max((f.long_side for f in fp.images), default=patch)
        current = max((max(working.shape_for(f.height, f.width)) for f in fp.images),
                      default=patch)
        if current > patch and biggest_side > patch:
            working = WorkingScale("long_side", long_side=patch)
            reasons["working"] = (f"{h_why}: each image is resampled to {patch} px so "
                                  f"that the network sees all of it and can tell the sides "
                                  f"apart")

    # the working images may be smaller than the patch: no point in a bigger one
    sides = [max(working.shape_for(f.height, f.width)) for f in fp.images]
    if cfg.patch_size is None and sides:
        biggest = int(math.ceil(max(sides) / 16) * 16)
        if biggest < patch:
            patch, patch_why = max(32, biggest), "the whole working image"

    # depth: the receptive field covers the objects at the working scale
    depth = None
    base_depth = int(spec.get("depth", 4)) if is_unet else None
    stuff_ids = fp.stuff_classes()
    scaled = [e * working.scale_for(f.height, f.width) for f in fp.images
              for c, es in f.extents.items() if c not in stuff_ids for e in es]
    if not is_unet:
        reasons["depth"] = f"model {spec.get('name')!r} has no depth"
    elif cfg.depth is not None:
        depth, reasons["depth"] = cfg.depth, "set by you"
    else:
        need = float(np.percentile(scaled, 90)) if scaled else 0.0
        if whole:
            need = max(need, 0.8 * patch)    # to see from the middle to an edge and beyond
        depth = next((d for d in _DEPTHS if d >= base_depth and
                      (unet_receptive_field(d) >= need or 2 ** (d + 1) > patch // 8)),
                     base_depth)
        depth = min(depth, 5)
        reasons["depth"] = (f"receptive field {unet_receptive_field(depth)} px for objects up "
                            f"to {need:.0f} px at the working scale"
                            + (f" (the preset's {base_depth})" if depth == base_depth else ""))

    # batch: pixels per step, within memory
    in_ch = max((f.channels for f in fp.images), default=1)
    if memory_bytes is None:
        memory_bytes = _free_memory(device)
    width = int(spec.get("width", 32)) if is_unet else 16
    fits = _memory_batch(patch, width, depth or 3, in_ch, memory_bytes)
    if cfg.batch_size is not None:
        batch, batch_why = cfg.batch_size, "set by you"
        if batch > fits:
            batch_why += (f" (about {fits} fit the memory budget of "
                          f"{memory_bytes / 2**30:.1f} GB)")
    else:
        per_step = PIXELS_PER_STEP * (4 if device.startswith("cuda") else 1)
        batch = min(MAX_BATCH, max(2, math.ceil(per_step / (patch * patch))), max(2, fits))
        batch_why = (f"{patch_why}; {batch} patches a step on {device.split(':')[0]}, within "
                     f"{memory_bytes / 2**30:.1f} GB")
    reasons["batch"] = batch_why

    # augmentation
    flip_h = (not h_why) if cfg.flip_h is None else cfg.flip_h
    flip_v = (not v_why) if cfg.flip_v is None else cfg.flip_v
    rot90 = (flip_h and flip_v) if cfg.rot90 is None else cfg.rot90
    why = []
    if h_why and cfg.flip_h is None:
        why.append(f"left-right mirror off: {h_why}")
    if v_why and cfg.flip_v is None:
        why.append(f"up-down mirror off: {v_why}")
    if cfg.rot90 is None and not rot90:
        why.append("rotations off with the mirrors")
    given = [n for n in ("flip_h", "flip_v", "rot90") if getattr(cfg, n) is not None]
    if given:
        why.append(f"{', '.join(given)} set by you")
    if not cfg.augment:
        flip_h = flip_v = rot90 = False
        why = ["augmentation switched off by you"]
    reasons["augment"] = "; ".join(why) or "no class is tied to a side of the image"

    # normalisation
    modality = fp.modality
    if cfg.normalisation is not None:
        norm = Normalisation(cfg.normalisation) if cfg.normalisation != "clip" else \
            _ct_normalisation(fp)
        reasons["normalisation"] = "set by you"
    elif modality == "ct" and fp.foreground:
        norm = _ct_normalisation(fp)
        reasons["normalisation"] = "CT: Hounsfield units clipped to the foreground's 0.5-99.5 " \
                                   "percentiles, then z-scored (nnU-Net's rule)"
    else:
        norm = Normalisation("percentile")
        reasons["normalisation"] = {
            "photo": "colour photographs: per image",
            "ct": "CT without labelled foreground to measure: per image"}.get(
                modality, f"{modality} images: per image, whatever the bit depth")
    norm = replace(norm, working=working)
    from segstudio.ml.objects import describe as describe_objects, head_for

    objects_line = describe_objects(head_for(fp.classes), fp.classes)
    if objects_line:
        reasons["objects"] = objects_line
    return Plan(working, int(patch), int(batch), depth, bool(flip_h), bool(flip_v), bool(rot90),
                norm, reasons, fp.to_dict())


def _ct_normalisation(fp: Fingerprint) -> Normalisation:
    f = fp.foreground or {"p00_5": -1024.0, "p99_5": 3071.0, "mean": 0.0, "std": 1000.0}
    hi = f["p99_5"] if f["p99_5"] > f["p00_5"] else f["p00_5"] + 1.0
    return Normalisation("clip", mean=(f["mean"],), std=(f["std"],), clip_low=f["p00_5"],
                         clip_high=hi)


def _free_memory(device: str) -> int:
    """The memory budget for activations: half a GPU's free memory, a quarter of free RAM."""
    if device.startswith("cuda"):
        try:
            import torch
            free, _total = torch.cuda.mem_get_info(torch.device(device))
            return int(free * 0.5)
        except Exception:
            return 4 << 30
    try:
        with open("/proc/meminfo") as fh:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in fh}
        return int(min(info.get("MemAvailable", 8 << 30) * 0.25, 8 << 30))
    except (OSError, ValueError, IndexError):
        return 2 << 30


def resolved_without_plan(cfg: TrainConfig) -> TrainConfig:
    """Prepared training data has no fingerprint: open settings take the classic defaults."""
    return replace(cfg, patch_size=cfg.patch_size or PATCH_SMALL,
                   batch_size=cfg.batch_size or 8,
                   flip_h=cfg.augment if cfg.flip_h is None else cfg.flip_h,
                   flip_v=cfg.augment if cfg.flip_v is None else cfg.flip_v,
                   rot90=cfg.augment if cfg.rot90 is None else cfg.rot90)


__all__ = ["Fingerprint", "ImageFacts", "Plan", "PRESETS", "fingerprint", "image_facts",
           "make_plan", "modality_of", "foreground_statistics", "unet_receptive_field",
           "resolved_without_plan"]
