"""Our click model: a U-Net that takes the image plus positive, negative and previous-mask
channels and answers with one object, trained on the project's own labels by simulated clicks.

The recipes followed (facts from the papers, code of our own):
- RITM (Sofiiuk et al. 2022): the first click at the object's interior point farthest from its
  edge, a few more random clicks, then up to 3 iterative clicks with the model in the loop
  (no gradient), each in the largest error region of its last answer (positive in a false
  negative, negative in a false positive), the previous answer as an input channel.
- DeepEdit (MONAI Label): on a share of the samples every guidance channel is zeroed, so the
  same network also segments the object a window is centred on without any click.

One sample is one object (a stored object id, or a connected region of one class) seen through
a square window around it, resized to `size` px: the same window the predictor takes around
the clicks, so a 16k image costs what a small one does. The output is binary (object / not);
unlabeled pixels (255) are left out of the loss. Training is a job like any run: `on_progress`
gets `StepDone` events, `cancel` stops between steps (the last checkpoint stays), CUDA is used
when present, and the optimisation step is the trainer's `TrainStep` (ml/step.py).
Runs are stored under `<project>/runs/click/<run-id>/` (best.pt + model_card.json, kind
"click"), a folder the semantic runs' listing does not walk into.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from segstudio.core.classes import UNLABELED
from segstudio.core.clicks import Click, click_maps
from segstudio.core.jobs import CancelToken, Progress
from segstudio.ml import click_sim
from segstudio.ml.checkpoint import save_checkpoint
from segstudio.ml.events import TOTAL, StepDone, TrainingError
from segstudio.ml.normalise import Normalisation, PixelNormalisation, effective_channels, to_channels

log = logging.getLogger(__name__)

CLICK_KIND = "click"
CLICK_RUNS = "click"          # <project>/runs/click/


@dataclass(frozen=True)
class ClickConfig:
    """What shapes a click-model run; stored in its checkpoint and card."""

    size: int = 96               # model window side (px)
    depth: int = 3
    width: int = 16
    radius: float = 3.0          # click disk radius in window px
    minutes: float = 5.0
    steps: int = 3000            # whichever of steps/minutes ends first
    batch_size: int = 12
    lr: float = 2e-3
    weight_decay: float = 1e-4
    max_iterative: int = 3       # RITM: up to 3 clicks with the model in the loop
    iterative_share: float = 0.7
    no_guidance_share: float = 0.15   # DeepEdit: all guidance zeroed
    # with objects of two or more classes the model also reads the class the user will commit
    # to (one constant plane per class); a share of samples sees no class, as a click with a
    # class the model never learnt does
    class_aware: bool = True
    no_class_share: float = 0.1
    # window side = margin x the object's longer side; below 1 the object runs past the
    # window, as a large object does in the typical object's window of a first click: the
    # model learns to answer up to the window's edge there (the predictor then looks wider)
    margin_low: float = 0.9
    margin_high: float = 3.0
    device: str = "auto"
    # torch CPU threads (None: torch's default). On a shared 2-core machine 1 is faster than 2:
    # the second OpenMP thread spins waiting for a core another process holds.
    threads: int | None = None
    seed: int = 0
    checkpoint_every: int = 200

    def __post_init__(self) -> None:
        if self.size < 32 or self.size % 8:
            raise ValueError(f"click model size must be a multiple of 8 from 32, got {self.size}")
        if not self.minutes > 0 or self.steps < 1 or self.batch_size < 1:
            raise ValueError("click training needs minutes > 0, steps >= 1 and batch_size >= 1")


@dataclass
class ClickImage:
    """One labelled image: raw pixels as float32 channels, its normalisation, labels, objects."""

    id: str
    pixels: np.ndarray           # (h, w, c) float32, not normalised
    norm: PixelNormalisation
    valid: np.ndarray            # bool: labelled pixels
    labels: np.ndarray           # int32 object labels (0 = none)


@dataclass
class ClickData:
    images: list[ClickImage]
    objects: list[click_sim.ObjectRef]
    channels: int

    @property
    def object_classes(self) -> tuple[int, ...]:
        """The classes the objects belong to, sorted (0: not known is left out)."""
        return tuple(sorted({o.cls for o in self.objects} - {0}))

    def typical_side(self, margin: float = 2.2, lo: float = 24.0) -> float:
        """Window side for a first click: margin x the median object's longer side."""
        if not self.objects:
            return 64.0
        ext = np.median([max(o.box[2] - o.box[0], o.box[3] - o.box[1]) for o in self.objects])
        return float(max(lo, margin * ext))


def image_norm(image: np.ndarray, channels: int) -> PixelNormalisation:
    """Per-image percentile statistics, as the semantic runs use."""
    return Normalisation(mode="percentile", in_channels=channels).for_image(image)


def click_data(items: list[tuple[str, np.ndarray, np.ndarray, np.ndarray | None]],
               object_classes: frozenset[int] = frozenset(),
               channels: int | None = None) -> ClickData:
    """ClickData from (id, image, mask, stored objects or None) items."""
    if channels is None:
        channels = 3 if any(effective_channels(np.asarray(im)) == 3 for _, im, _, _ in items) else 1
    images, refs = [], []
    for id_, image, mask, objects in items:
        labels = click_sim.object_labels(mask, objects, object_classes)
        found = click_sim.object_refs(labels, len(images), mask=np.asarray(mask))
        if not found:
            continue
        images.append(ClickImage(id_, to_channels(np.asarray(image), channels),
                                 image_norm(np.asarray(image), channels), mask != UNLABELED,
                                 labels))
        refs += found
    if not refs:
        raise TrainingError("no labelled objects to learn clicks from: label a few objects "
                            "(any class but background) first")
    return ClickData(images, refs, channels)


def project_click_data(project: Any, cancel: CancelToken | None = None,
                       masks: dict[str, np.ndarray] | None = None) -> ClickData:
    """Every labelled train/val image of a Project (read once: painting goes on meanwhile)."""
    from segstudio.ml.data import read_labelled

    labelled = read_labelled(project, masks=masks, cancel=cancel)
    obj_classes = frozenset(int(c.id) for c in project.classes if getattr(c, "objects", False))
    return click_data([(it.id, it.image, it.mask, it.objects) for it in labelled], obj_classes)


def window_input(pixels: np.ndarray, norm: PixelNormalisation, win: click_sim.Window
                 ) -> np.ndarray:
    """(c, size, size) normalised window of raw pixels; only the covered region is touched."""
    h, w = pixels.shape[:2]
    ry0, rx0 = max(0, int(np.floor(win.y0))), max(0, int(np.floor(win.x0)))
    ry1 = min(h, int(np.ceil(win.y0 + win.side)) + 1)
    rx1 = min(w, int(np.ceil(win.x0 + win.side)) + 1)
    if ry0 >= ry1 or rx0 >= rx1:
        return np.zeros((norm.in_channels or 1, win.size, win.size), np.float32)
    region = np.asarray(pixels[ry0:ry1, rx0:rx1])
    sub = replace(win, y0=win.y0 - ry0, x0=win.x0 - rx0)
    normed = np.moveaxis(norm(region), 0, -1)               # (h, w, c) float32
    out = sub.crop(np.ascontiguousarray(normed))
    if out.ndim == 2:
        out = out[..., None]
    return np.ascontiguousarray(np.moveaxis(out, -1, 0), dtype=np.float32)


def class_planes(class_ids: tuple[int, ...] | list[int], class_id: int | None, size: int
                 ) -> np.ndarray:
    """(len(class_ids), size, size) float32: ones on the plane of `class_id`, zeros elsewhere
    (all zero for a class the model does not know, or none)."""
    out = np.zeros((len(class_ids), size, size), np.float32)
    if class_id is not None and class_id in class_ids:
        out[list(class_ids).index(class_id)] = 1.0
    return out


def with_class_planes(image_win: np.ndarray, class_ids: tuple[int, ...],
                      class_id: int | None) -> np.ndarray:
    """The image window with a class-aware run's class planes after its channels (as is for a
    class-free run): the model's image part, in training and when answering a click."""
    if not class_ids:
        return image_win
    return np.concatenate([image_win, class_planes(class_ids, class_id, image_win.shape[-1])])


def model_input(image_win: np.ndarray, clicks: list[Click] | tuple[Click, ...],
                previous: np.ndarray | None, radius: float) -> np.ndarray:
    """(c + 3, s, s): image, positive disks, negative disks, previous mask (window coords)."""
    s = image_win.shape[-1]
    pos, neg = click_maps((s, s), clicks, radius)
    prev = np.zeros((s, s), np.float32) if previous is None else previous.astype(np.float32)
    return np.concatenate([image_win, pos[None], neg[None], prev[None]], axis=0)


class ClickLoss(nn.Module):
    """Binary cross-entropy + soft Dice on one logit channel; 255 pixels left out."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logit = logits[:, 0].float()
        valid = (target != UNLABELED).float()
        t = (target == 1).float()
        bce = (F.binary_cross_entropy_with_logits(logit, t, reduction="none") * valid).sum() \
            / valid.sum().clamp(min=1.0)
        p = torch.sigmoid(logit) * valid
        inter = (p * t).sum((1, 2))
        dice = 1 - (2 * inter + 1) / (p.sum((1, 2)) + (t * valid).sum((1, 2)) + 1)
        return bce + dice.mean()


class _Sampler:
    """Random object windows with simulated clicks (window coordinates), numpy only."""

    def __init__(self, data: ClickData, cfg: ClickConfig,
                 class_ids: tuple[int, ...] = ()) -> None:
        self.data, self.cfg, self.class_ids = data, cfg, class_ids
        self.rng = np.random.default_rng(cfg.seed)

    def one(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[Click], bool]:
        """(image window (c,s,s), target uint8 (s,s) 0/1/255, target bool, clicks, guided)."""
        cfg, rng = self.cfg, self.rng
        ref = self.data.objects[int(rng.integers(len(self.data.objects)))]
        im = self.data.images[ref.image]
        y0, x0, y1, x1 = ref.box
        margin = rng.uniform(cfg.margin_low, cfg.margin_high)
        win = click_sim.window_around((y0, x0, y1, x1), margin, 16.0, cfg.size)
        jitter = 0.15 * win.side
        win = replace(win, y0=win.y0 + rng.uniform(-jitter, jitter),
                      x0=win.x0 + rng.uniform(-jitter, jitter))
        img = window_input(im.pixels, im.norm, win)
        obj = win.crop((im.labels == ref.label).astype(np.uint8), nearest=True) > 0
        valid = win.crop(im.valid.astype(np.uint8), nearest=True) > 0
        k = int(rng.integers(4))
        flip = bool(rng.integers(2))
        img, obj, valid = (_aug(a, k, flip) for a in (img, obj, valid))
        if rng.random() < 0.3:          # brightness / contrast jitter
            img = img * rng.uniform(0.8, 1.25) + rng.uniform(-0.1, 0.1)
        if self.class_ids:              # (no draw for a class-free run: its samples stay)
            told = None if rng.random() < cfg.no_class_share else ref.cls
            img = with_class_planes(img, self.class_ids, told)
        target = np.where(valid, obj.astype(np.uint8), UNLABELED).astype(np.uint8)
        if not obj.any():
            return img, target, obj, [], False
        guided = rng.random() >= cfg.no_guidance_share
        clicks = self._clicks(obj, valid) if guided else []
        return img.astype(np.float32), target, obj, clicks, guided

    def _clicks(self, obj: np.ndarray, valid: np.ndarray) -> list[Click]:
        rng = self.rng
        import cv2

        inside = cv2.distanceTransform(np.pad(obj.astype(np.uint8), 1), cv2.DIST_L2, 5)[1:-1, 1:-1]
        clicks = []
        if rng.random() < 0.7:
            clicks.append(click_sim.first_click(obj))
        else:
            ys, xs = np.nonzero(inside >= max(1.0, 0.4 * inside.max()))
            i = int(rng.integers(len(ys)))
            clicks.append(Click(float(ys[i]), float(xs[i]), True))
        ys, xs = np.nonzero(inside >= 2.0)
        for _ in range(int(rng.choice([0, 0, 0, 1, 2]))):
            if len(ys):
                i = int(rng.integers(len(ys)))
                clicks.append(Click(float(ys[i]), float(xs[i]), True))
        outside = cv2.distanceTransform((~obj).astype(np.uint8), cv2.DIST_L2, 5)
        ring = valid & ~obj & (outside >= 3) & (outside <= 0.35 * obj.shape[0])
        ys, xs = np.nonzero(ring)
        for _ in range(int(rng.choice([0, 0, 1, 1, 2, 3]))):
            if len(ys):
                i = int(rng.integers(len(ys)))
                clicks.append(Click(float(ys[i]), float(xs[i]), False))
        return clicks


def _aug(a: np.ndarray, k: int, flip: bool) -> np.ndarray:
    a = np.rot90(a, k, axes=(-2, -1))
    if flip:
        a = a[..., ::-1]
    return np.ascontiguousarray(a)


def _robot_rounds(model: nn.Module, device: torch.device, imgs: np.ndarray,
                  targets: list[np.ndarray], valids: list[np.ndarray],
                  clicks: list[list[Click]], rounds: list[int], radius: float
                  ) -> list[np.ndarray | None]:
    """RITM's iterative part: answer, add the robot's click, feed the answer back (no grad)."""
    prev: list[np.ndarray | None] = [None] * len(targets)
    n = max(rounds) if rounds else 0
    if n == 0:
        return prev
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for r in range(n):
                idx = [i for i, k in enumerate(rounds) if k > r]
                x = np.stack([model_input(imgs[i], clicks[i], prev[i], radius) for i in idx])
                prob = torch.sigmoid(model(torch.from_numpy(x).to(device))[:, 0]).cpu().numpy()
                for j, i in enumerate(idx):
                    pred = prob[j] > 0.5
                    c = click_sim.next_click(targets[i], pred, valids[i])
                    prev[i] = pred
                    if c is not None:
                        clicks[i] = clicks[i] + [c]
    finally:
        model.train(was_training)
    return prev


def build_click_model(channels: int, cfg: ClickConfig, n_classes: int = 0) -> nn.Module:
    """Image channels, one plane per class when class-aware, then positive, negative, previous."""
    from segstudio.ml.models import build_model

    return build_model("unet", in_channels=channels + n_classes + 3, num_classes=1,
                       depth=cfg.depth, width=cfg.width, norm="batch")


def click_classes(data: ClickData, cfg: ClickConfig) -> tuple[int, ...]:
    """The classes a run reads as input: those of its objects when two or more, else none
    (a one-class model is the class-free one, like the starter)."""
    classes = data.object_classes
    return classes if cfg.class_aware and len(classes) >= 2 else ()


@dataclass
class ClickTrainResult:
    run_dir: Path
    status: str
    steps: int
    elapsed_s: float
    loss: float


def click_runs_dir(project_root: Path | str) -> Path:
    return Path(project_root) / "runs" / CLICK_RUNS


def train_click_model(source: Any, cfg: ClickConfig | None = None, *,
                      runs_dir: Path | str | None = None,
                      masks: dict[str, np.ndarray] | None = None,
                      on_progress: Callable[[Progress], None] | None = None,
                      cancel: CancelToken | None = None) -> ClickTrainResult:
    """Train a click model on a Project (snapshotted here) or on ClickData; a Job runs this."""
    from segstudio.ml.config import TrainConfig
    from segstudio.ml.device import describe, pick_device
    from segstudio.ml.runs import new_run_dir, write_card
    from segstudio.ml.step import TrainStep, lr_factor

    cfg = cfg or ClickConfig()
    cancel = cancel or CancelToken()
    report = on_progress or (lambda _p: None)
    report(Progress(0, TOTAL, "reading labelled images"))
    data = source if isinstance(source, ClickData) else project_click_data(source, cancel, masks)
    if runs_dir is None:
        runs_dir = click_runs_dir(source.root)
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    class_ids = click_classes(data, cfg)
    model = build_click_model(data.channels, cfg, len(class_ids))
    tcfg = TrainConfig(lr=cfg.lr, weight_decay=cfg.weight_decay, device=str(device),
                       channels_last=False, seed=cfg.seed)
    step = TrainStep(model, ClickLoss(), tcfg, device)
    sampler = _Sampler(data, cfg, class_ids)
    run_dir = new_run_dir(runs_dir, "click")
    typical = data.typical_side()
    config = {"kind": CLICK_KIND,
              "model": {"name": "unet", "depth": cfg.depth, "width": cfg.width, "norm": "batch"},
              "in_channels": data.channels + len(class_ids) + 3,
              "image_channels": data.channels, "class_ids": list(class_ids),
              "num_classes": 1, "normalisation": {"mode": "percentile", "low": 1.0, "high": 99.8},
              "window": {"size": cfg.size, "radius": cfg.radius, "first_side": typical,
                         "margin": 1.8},
              "train": asdict(cfg), "run_id": run_dir.name}
    t0 = time.monotonic()
    losses: list[float] = []
    status, done = "finished", 0

    def save(final_status: str) -> None:
        state = {k: v.detach().cpu() for k, v in step.model.state_dict().items()}
        save_checkpoint(run_dir / "best.pt", config, state)
        write_card(run_dir, {
            "kind": CLICK_KIND, "run_id": run_dir.name,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "model": config["model"],
            "in_channels": config["in_channels"], "num_classes": 1, "classes": [],
            "click_classes": list(class_ids),
            "window": config["window"], "normalisation": config["normalisation"],
            "config": asdict(cfg), "device": describe(device), "status": final_status,
            "steps": done, "elapsed_s": round(time.monotonic() - t0, 1),
            "data": {"images": [im.id for im in data.images], "objects": len(data.objects)},
            "metrics": {"last": {"loss": float(np.mean(losses[-50:])) if losses else None}},
            "checkpoints": {"best": "best.pt"}})

    budget = cfg.minutes * 60.0
    try:
        while done < cfg.steps:
            cancel.raise_if_cancelled()
            elapsed = time.monotonic() - t0
            if elapsed >= budget:
                status = "time-budget"
                break
            # the clock steers the schedule only once it may bind (>10 % spent): a run that
            # ends by steps follows the same schedule, and gives the same weights, every time
            progress = max(done / cfg.steps, elapsed / budget if elapsed > 0.1 * budget else 0.0)
            for g in step.opt.param_groups:
                g["lr"] = cfg.lr * lr_factor(progress, "cosine", 0.05)
            batch = [sampler.one() for _ in range(cfg.batch_size)]
            imgs = np.stack([b[0] for b in batch])
            clicks = [b[3] for b in batch]
            rounds = [int(sampler.rng.integers(1, cfg.max_iterative + 1))
                      if b[4] and sampler.rng.random() < cfg.iterative_share else 0
                      for b in batch]
            prev = _robot_rounds(step.model, device, imgs, [b[2] for b in batch],
                                 [b[1] != UNLABELED for b in batch], clicks, rounds, cfg.radius)
            # unguided samples (DeepEdit) have no clicks and no rounds: all guidance is zero
            x = np.stack([model_input(imgs[i], clicks[i], prev[i], cfg.radius)
                          for i in range(len(batch))])
            y = np.stack([b[1] for b in batch]).astype(np.int64)
            xt, yt = step.to_device(x, y)
            loss = step(xt, yt)
            if not np.isfinite(loss):
                raise TrainingError(f"the click model's loss became {loss} at step {done + 1}; "
                                    f"try a lower learning rate")
            losses.append(loss)
            done += 1
            elapsed = time.monotonic() - t0
            if done % 10 == 0 or done == 1:
                frac = max(done / cfg.steps, elapsed / budget)
                report(StepDone(int(min(frac, 1.0) * TOTAL), TOTAL,
                                f"click model step {done}: loss {np.mean(losses[-10:]):.3f}",
                                step=done, epoch=1, loss=loss,
                                lr=step.opt.param_groups[0]["lr"], elapsed_s=elapsed))
            if done % cfg.checkpoint_every == 0:
                save("running")
    except BaseException:
        if done:
            save("cancelled")
        raise
    save(status)
    log.info("click model %s: %d steps in %.0f s", run_dir.name, done, time.monotonic() - t0)
    return ClickTrainResult(run_dir, status, done, time.monotonic() - t0,
                            float(np.mean(losses[-50:])) if losses else float("nan"))

