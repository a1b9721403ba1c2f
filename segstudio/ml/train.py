"""The training loop: patches in, best/last checkpoints and a model card out.

`train()` knows nothing about Qt: it reports through `on_progress(Progress)` and stops between
steps when `cancel` is set. The CLI calls it directly; the app runs it in a `Job`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from segstudio.core.classes import BACKGROUND, UNLABELED
from segstudio.core.jobs import Cancelled, CancelToken, Progress, ProgressFn
from segstudio.core.metrics import confusion_matrix, iou_dice, mean_over
from segstudio.ml import distributed
from segstudio.ml.cards import NO_SCORE, describe_score  # noqa: F401  (re-exported)
from segstudio.ml.checkpoint import (NotACheckpointError, load_checkpoint, resolve_checkpoint,
                                    save_checkpoint)
from segstudio.ml.data import (Augment, DataError, Normalisation, PatchSampler, Prefetcher,
                               TrainingData, snapshot_project)
from segstudio.ml.device import describe, pick_device
from segstudio.ml.models import build_model, count_parameters, preset_spec
from segstudio.ml.runs import find_run, new_run_dir, versions, write_card

log = logging.getLogger(__name__)

SCHEDULES = ("cosine", "onecycle")


class TrainingError(Exception):
    """Training could not go on; the message says why and what to try, in plain words."""


class TrainingCancelled(Cancelled):
    """Cancelled after the run folder existed: which folder, and the checkpoints it keeps."""

    def __init__(self, run_dir: Path, kept: tuple[str, ...]) -> None:
        super().__init__(f"cancelled; {run_dir.name} keeps {', '.join(kept) or 'nothing'}")
        self.run_dir = run_dir
        self.kept = kept


def cancelled_message(e: BaseException, resume_hint: bool = True) -> str:
    """What a cancel kept, truthfully: nothing before the first checkpoint."""
    kept = getattr(e, "kept", ())
    run_dir = getattr(e, "run_dir", None)
    if run_dir is None or not kept:
        return "cancelled before the first checkpoint; nothing saved"
    text = f"cancelled; run {run_dir.name} keeps {' and '.join(kept)}"
    if resume_hint and "last.pt" in kept:
        text += f" (continue with --resume {run_dir.name})"
    return text


@dataclass(frozen=True)
class TrainConfig:
    """Everything that shapes a run; stored in every checkpoint and model card."""

    preset: str = "fast"                 # models.PRESETS: "fast", "strong", "tiny"
    model: str | None = None             # overrides the preset's registered model name
    depth: int | None = None             # U-Net overrides of the preset
    width: int | None = None
    norm: str | None = None
    epochs: int = 40
    minutes: float | None = None         # time budget; stops at whichever of epochs/minutes ends first
    steps_per_epoch: int = 50
    batch_size: int = 8
    patch_size: int = 192
    lr: float = 3e-3
    weight_decay: float = 1e-4
    schedule: str = "cosine"             # linear warm-up then cosine; or "onecycle"
    warmup: float = 0.05                 # fraction of the run spent warming up
    dice_weight: float = 1.0             # loss = CE + dice_weight * soft Dice
    class_weights: tuple[float, ...] | str | None = None   # CE weight per class id, or "balanced"
    normalisation: str = "percentile"    # data.NORMALISATIONS
    augment: bool = True
    label_bias: float = 0.8              # share of patches centred on a labelled pixel
    patience: int | None = 10            # epochs without validation gain before stopping
    device: str = "auto"
    amp: bool = True                     # mixed precision, CUDA only
    channels_last: bool = True
    compile: bool = False                # torch.compile the training forward (slower start)
    threads: int | None = None           # torch CPU threads; None keeps torch's default
    seed: int = 0
    val_tile: int = 512                  # validation runs whole images up to this many pixels a side

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; known: {list(SCHEDULES)}")
        if self.epochs < 1 or self.steps_per_epoch < 1 or self.batch_size < 1:
            raise ValueError("epochs, steps_per_epoch and batch_size must be at least 1")
        if self.patch_size < 16:
            raise ValueError(f"patch_size must be at least 16, got {self.patch_size}")
        if self.minutes is not None and self.minutes <= 0:
            raise ValueError(f"minutes must be positive, got {self.minutes}")
        if isinstance(self.class_weights, str) and self.class_weights != "balanced":
            raise ValueError(f"class_weights is a list of numbers or 'balanced', "
                             f"got {self.class_weights!r}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        """From a TOML table or a checkpoint's dict; unknown keys are errors."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown training setting(s) {unknown}; known: {sorted(names)}")
        d = dict(d)
        if d.get("class_weights") is not None and not isinstance(d["class_weights"], str):
            d["class_weights"] = tuple(float(w) for w in d["class_weights"])
        return cls(**d)

    def model_spec(self) -> dict[str, Any]:
        """{'name': registered model, **its keyword arguments}."""
        spec = preset_spec(self.preset)
        spec["name"] = self.model or spec.pop("model")
        spec.pop("model", None)
        for key in ("depth", "width", "norm"):
            if getattr(self, key) is not None:
                spec[key] = getattr(self, key)
        return spec


@dataclass
class TrainResult:
    run_dir: Path
    status: str                          # "finished", "early-stopped", "time-budget"
    best_metrics: dict[str, float]
    last_metrics: dict[str, float]
    best_epoch: int
    epochs: int
    steps: int
    elapsed_s: float
    warnings: list[str] = field(default_factory=list)


def balanced_weights(class_pixels: Mapping[int, int], num_classes: int) -> tuple[float, ...]:
    """Cross-entropy weights from training pixel counts: sqrt(median frequency / frequency).

    Rare classes (poles, signs) get up to 5x the weight of the median class, common ones down to
    0.2x; a class with no pixels gets 1 (it cannot be learnt either way).
    """
    counts = np.array([class_pixels.get(i, 0) for i in range(num_classes)], np.float64)
    present = counts > 0
    if not present.any():
        return (1.0,) * num_classes
    freq = counts / counts.sum()
    median = float(np.median(freq[present]))
    w = np.ones(num_classes)
    w[present] = np.clip(np.sqrt(median / freq[present]), 0.2, 5.0)
    return tuple(float(v) for v in w)


# -- loss and validation ---------------------------------------------------------------------------
def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - mean soft Dice over the classes present in the batch; 255 pixels left out."""
    n = logits.shape[1]
    valid = (target != UNLABELED).unsqueeze(1)
    probs = logits.float().softmax(1) * valid
    onehot = F.one_hot(torch.where(valid[:, 0], target, 0), n).permute(0, 3, 1, 2) * valid
    dims = (0, 2, 3)
    truth = onehot.sum(dims)
    present = truth > 0
    if not bool(present.any()):
        return logits.sum() * 0.0
    inter = (probs * onehot).sum(dims)
    dice = (2 * inter + 1.0) / (probs.sum(dims) + truth + 1.0)
    return 1.0 - dice[present].mean()


class SegLoss(nn.Module):
    """Cross-entropy (optionally class-weighted) + Dice, both ignoring 255."""

    def __init__(self, num_classes: int, dice_weight: float = 1.0,
                 class_weights: tuple[float, ...] | None = None) -> None:
        super().__init__()
        weight = None
        if class_weights is not None:
            if len(class_weights) != num_classes:
                raise TrainingError(f"class_weights has {len(class_weights)} values but the model "
                                    f"has {num_classes} classes (one weight per class id)")
            weight = torch.tensor(class_weights, dtype=torch.float32)
        self.ce = nn.CrossEntropyLoss(weight=weight, ignore_index=UNLABELED)
        self.dice_weight = dice_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = self.ce(logits.float(), target)
        if self.dice_weight:
            loss = loss + self.dice_weight * soft_dice_loss(logits, target)
        return loss


def predict_logits(model: nn.Module, x: torch.Tensor, tile: int = 512, margin: int = 32
                   ) -> torch.Tensor:
    """Logits (1, n, h, w) for one image; large images in tiles with a context margin."""
    h, w = x.shape[-2:]
    if h <= tile and w <= tile:
        return model(x)
    out = None
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            cy0, cx0 = max(0, y0 - margin), max(0, x0 - margin)
            cy1, cx1 = min(h, y1 + margin), min(w, x1 + margin)
            part = model(x[..., cy0:cy1, cx0:cx1])
            if out is None:
                out = torch.empty((1, part.shape[1], h, w), dtype=part.dtype, device=part.device)
            out[..., y0:y1, x0:x1] = part[..., y0 - cy0:y1 - cy0, x0 - cx0:x1 - cx0]
    return out


def evaluate(model: nn.Module, samples: list, num_classes: int, device: torch.device, *,
             tile: int = 512, channels_last: bool = False, amp_dtype: torch.dtype | None = None,
             cancel: CancelToken | None = None) -> tuple[np.ndarray, float]:
    """(confusion matrix, mean CE loss over labelled pixels) on whole images."""
    model.eval()
    cm = np.zeros((num_classes, num_classes), np.int64)
    loss_sum, pixels = 0.0, 0
    with torch.inference_mode():
        for s in samples:
            if cancel:
                cancel.raise_if_cancelled()
            x = torch.from_numpy(np.ascontiguousarray(s.image.transpose(2, 0, 1)))[None].to(device)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                logits = predict_logits(model, x, tile).float()
            target = torch.from_numpy(s.mask.astype(np.int64))[None].to(device)
            n = int((target != UNLABELED).sum())
            if n:
                loss_sum += float(F.cross_entropy(logits, target, ignore_index=UNLABELED,
                                                  reduction="sum"))
                pixels += n
            pred = logits.argmax(1)[0].to(torch.uint8).cpu().numpy()
            cm += confusion_matrix(s.mask, pred, num_classes)
    model.train()
    return cm, (loss_sum / pixels if pixels else float("nan"))


def metrics_from(cm: np.ndarray, classes: list, val_loss: float) -> dict[str, float]:
    """Flat metrics: val_loss, mean_dice/mean_iou, dice:<name>, iou:<name>.

    The means are over the foreground classes labelled in the validation images: an absent class
    is NaN and left out, and background alone is no score (NaN), never a perfect 1.0.
    """
    iou, dice = iou_dice(cm)
    truth = cm.sum(axis=1)
    fg = [c.id for c in classes if c.id != BACKGROUND and c.id < len(truth) and truth[c.id] > 0]
    out = {"val_loss": val_loss, "mean_dice": mean_over(dice, fg), "mean_iou": mean_over(iou, fg)}
    for c in classes:
        out[f"dice:{c.name}"] = float(dice[c.id])
        out[f"iou:{c.name}"] = float(iou[c.id])
    return out


def _score(metrics: dict[str, float]) -> float:
    """Higher is better: mean foreground Dice, or minus the loss when no Dice is defined."""
    d = metrics.get("mean_dice", float("nan"))
    return d if not math.isnan(d) else -metrics.get("val_loss", float("inf"))


def lr_factor(progress: float, schedule: str, warmup: float) -> float:
    """Multiplier of the peak learning rate at `progress` in [0, 1] of the run (steps or time)."""
    p = min(max(progress, 0.0), 1.0)
    if schedule == "onecycle":
        up = max(warmup, 0.3)
        if p < up:
            return 0.04 + 0.96 * (1 - math.cos(math.pi * p / up)) / 2
        q = (p - up) / (1 - up)
        return 1e-4 + (1 - 1e-4) * (1 + math.cos(math.pi * q)) / 2
    if warmup > 0 and p < warmup:
        return 0.01 + 0.99 * p / warmup
    q = (p - warmup) / max(1e-9, 1 - warmup)
    return 0.01 + 0.99 * (1 + math.cos(math.pi * q)) / 2


class TrainStep:
    """One optimisation step, the exact code the loop runs (the throughput benchmark times it).

    The model is moved to `device` in channels_last when configured; on CUDA it runs under
    autocast (bf16 where supported, else fp16 with a gradient scaler) with cudnn's autotuner.
    `wrap` (DistributedDataParallel) and `cfg.compile` change only the forward that trains
    (`self.net`); `self.model` stays the plain module that validation and checkpoints use.
    """

    def __init__(self, model: nn.Module, loss_fn: nn.Module, cfg: TrainConfig,
                 device: torch.device, wrap: Any = None) -> None:
        self.device = device
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.model = model.to(device, memory_format=self.memory_format)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True     # patches have one fixed size: tune once
        self.net = wrap(self.model) if wrap is not None else self.model
        if cfg.compile:
            self.net = torch.compile(self.net)
        self.loss_fn = loss_fn.to(device)
        self.amp_dtype = None
        if cfg.amp and device.type == "cuda":
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                     foreach=True)

    def host_batch(self, xb: np.ndarray, yb: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """CPU tensors of a numpy batch, page-locked on CUDA (the prefetch thread calls this)."""
        x, y = torch.from_numpy(xb), torch.from_numpy(yb)
        if self.device.type == "cuda":
            x, y = x.pin_memory(), y.pin_memory()
        return x, y

    def to_device(self, xb: np.ndarray | torch.Tensor, yb: np.ndarray | torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch on the device; from pinned memory the copy overlaps the GPU's work."""
        if not isinstance(xb, torch.Tensor):
            xb, yb = self.host_batch(xb, yb)
        nb = self.device.type == "cuda"
        x = xb.to(self.device, non_blocking=nb).contiguous(memory_format=self.memory_format)
        return x, yb.to(self.device, non_blocking=nb).long()

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Forward, backward, update; returns the loss (NaN/inf checked by the caller)."""
        with torch.autocast(self.device.type, dtype=self.amp_dtype,
                            enabled=self.amp_dtype is not None):
            loss = self.loss_fn(self.net(x), y)
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()
        return float(loss.detach())


# -- model set-up ----------------------------------------------------------------------------------
def checkpoint_config(cfg: TrainConfig, spec: dict[str, Any], data: TrainingData,
                      run_id: str) -> dict[str, Any]:
    """What a checkpoint must carry to rebuild the model and prepare its input (JSON-plain)."""
    return json.loads(json.dumps({
        "model": spec, "in_channels": data.in_channels, "num_classes": data.num_classes,
        "classes": [{"id": c.id, "name": c.name, "color": c.color} for c in data.classes],
        "normalisation": data.normalisation.to_dict(), "train": asdict(cfg), "run_id": run_id,
    }))


def transfer_weights(model: nn.Module, state: Mapping[str, torch.Tensor]) -> list[str]:
    """Copy matching weights; a head whose class count changed keeps the old classes' rows.

    Classes are matched by id, so rows 0..k-1 of the old head become rows 0..k-1 of the new one
    and added classes start from fresh rows. Returns the names that were rebuilt, not copied.
    """
    own = model.state_dict()
    rebuilt = []
    with torch.no_grad():
        for key, value in own.items():
            old = state.get(key)
            if old is None:
                rebuilt.append(key)
            elif old.shape == value.shape:
                value.copy_(old)
            elif old.dim() == value.dim() and old.shape[1:] == value.shape[1:]:
                k = min(old.shape[0], value.shape[0])
                value[:k].copy_(old[:k])
                rebuilt.append(key)
            else:
                rebuilt.append(key)
    return rebuilt


def _source_data(source: Any, cfg: TrainConfig, norm: Normalisation | None,
                 masks: Mapping[str, np.ndarray] | None, cancel: CancelToken) -> TrainingData:
    if isinstance(source, TrainingData):
        if norm is not None and norm != source.normalisation:
            raise TrainingError("the earlier run normalised images differently; build the "
                                "training data with its normalisation")
        return source
    norm = norm or Normalisation(cfg.normalisation)
    return snapshot_project(source, norm=norm, masks=masks, cancel=cancel)


def _friendly(e: BaseException, cfg: TrainConfig, device: torch.device) -> TrainingError | None:
    text = str(e)
    oom = isinstance(e, getattr(torch, "OutOfMemoryError", ())) or "out of memory" in text.lower()
    if oom or isinstance(e, MemoryError):
        return TrainingError(
            f"out of memory on {device} with batch size {cfg.batch_size} and patch size "
            f"{cfg.patch_size}: lower the batch size or the patch size, or pick the 'fast' preset")
    return None


# -- earlier runs: resume and fine-tune ------------------------------------------------------------
def _first_sentence(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


_EARLIER_KEYS = ("model", "in_channels", "num_classes", "normalisation")


def _checked_earlier(ckpt: dict[str, Any], path: Path) -> dict[str, Any]:
    missing = [k for k in _EARLIER_KEYS if k not in ckpt["config"]]
    if missing or not isinstance(ckpt["config"].get("normalisation"), dict):
        raise TrainingError(f"{path} was not written by SegStudio's trainer (its config lacks "
                            f"{missing or ['normalisation']}); it cannot be continued or "
                            f"fine-tuned")
    return ckpt


def _resume_checkpoint(runs_dir: Path | None, resume: Path | str) -> tuple[Path, dict[str, Any]]:
    """The run folder to continue and its last.pt; every failure a one-line TrainingError."""
    if Path(resume).is_file():
        raise TrainingError(f"{resume} is a file; resume takes a run folder or run id (its "
                            f"last.pt is continued); to start from a checkpoint file, fine-tune "
                            f"with --from {resume}")
    try:
        run_dir = find_run(runs_dir, resume)
    except FileNotFoundError as e:
        raise TrainingError(str(e)) from None
    last = run_dir / "last.pt"
    if not last.is_file():
        raise TrainingError(f"{run_dir} has no last.pt to continue (not a run folder, or a run "
                            f"cancelled before its first checkpoint)")
    ckpt = _checked_earlier(load_checkpoint(last), last)
    if "optimizer" not in ckpt or "state" not in ckpt or "train" not in ckpt["config"]:
        raise TrainingError(f"{last} holds weights only, not a training state to continue; "
                            f"use --from {run_dir.name} to fine-tune from it")
    return run_dir, ckpt


def _init_checkpoint(runs_dir: Path | None, init_from: Path | str) -> dict[str, Any]:
    """The checkpoint a fine-tune starts from: a checkpoint file, or a run folder's best.pt."""
    p = Path(init_from)
    if p.is_file():
        try:
            return _checked_earlier(load_checkpoint(p), p)
        except NotACheckpointError:
            raise TrainingError(f"{p} is not a run folder or checkpoint") from None
    try:
        run_dir = find_run(runs_dir, init_from)
    except FileNotFoundError as e:
        raise TrainingError(f"{init_from} is not a run folder or checkpoint ({e})") from None
    if not any((run_dir / c).is_file() for c in ("best.pt", "last.pt")):
        raise TrainingError(f"{init_from} is not a run folder or checkpoint (it holds no "
                            f"best.pt or last.pt)")
    path = resolve_checkpoint(run_dir, "best")
    return _checked_earlier(load_checkpoint(path), path)


def _check_resumable_classes(run_id: str, ckpt: dict[str, Any], classes: Any) -> None:
    """A resumed run continues the same head: a project with other classes needs fine-tuning."""
    if not classes:
        return
    now = max(c.id for c in classes) + 1
    then = int(ckpt["config"]["num_classes"])
    if now != then:
        what = "the new class" if now == then + 1 else \
            "the new classes" if now > then else "the current classes"
        raise TrainingError(f"run {run_id} was trained with {then} classes, the project now has "
                            f"{now}; use --from {run_id} to fine-tune it with {what}")


def _check_two_classes(data: TrainingData) -> None:
    """Refuse a run that could only learn one class: its score would say nothing."""
    counts = data.class_pixels("train")
    present = [c for c in data.classes if counts.get(c.id)]
    if len(present) >= 2:
        return
    if len(data.classes) < 2:
        raise TrainingError(
            f"the project has only one class ('{data.classes[0].name}'): add a class to label "
            f"(for example the objects to find), paint some of its pixels, then train")
    others = [c.name for c in data.classes if c not in present]
    only = f"'{present[0].name}'" if present else "no class"
    raise TrainingError(
        f"the labelled pixels of the training images are all {only}: label some pixels of "
        f"{', '.join(repr(n) for n in others)} too (on images in the 'train' split); a model "
        f"needs at least two classes to learn to tell them apart")


# -- the loop --------------------------------------------------------------------------------------
def train(source: Any, cfg: TrainConfig | None = None, *, runs_dir: Path | str | None = None,
          resume: Path | str | None = None, init_from: Path | str | None = None,
          masks: Mapping[str, np.ndarray] | None = None,
          on_progress: ProgressFn | None = None, cancel: CancelToken | None = None
          ) -> TrainResult:
    """Train on a Project (snapshotted here) or on prepared TrainingData.

    resume: a run folder or id whose last.pt is continued in place (same folder, same budget).
    init_from: a run folder or id whose best weights start a new run (fine-tuning); a changed
    number of classes rebuilds the head; the model comes from that run, not from cfg's preset.
    A resumed run keeps its stored config except epochs, minutes, device and threads where cfg
    sets them to other than the defaults. masks: unsaved masks by image id (the app's open
    documents), copied and used instead of the saved ones. Raises Cancelled (after saving
    last.pt) when cancelled, TrainingError or DataError with a plain-words message when
    training cannot go on.
    """
    cfg = cfg or TrainConfig()
    cancel = cancel or CancelToken()
    report = on_progress or (lambda _p: None)
    project_runs = getattr(source, "runs_dir", None)
    runs_dir = Path(runs_dir) if runs_dir is not None else project_runs
    resumed = init = None
    if resume is not None:
        resume_dir, resumed = _resume_checkpoint(runs_dir, resume)
        try:
            stored = TrainConfig.from_dict(resumed["config"]["train"])
        except (KeyError, TypeError, ValueError) as e:
            raise TrainingError(f"run {resume_dir.name}: its last.pt holds no usable training "
                                f"settings ({e}); start a new run or fine-tune from it") from None
        defaults = TrainConfig()
        cfg = replace(stored, **{k: getattr(cfg, k) for k in ("epochs", "minutes", "device",
                                                              "threads")
                                 if getattr(cfg, k) != getattr(defaults, k)})
        _check_resumable_classes(resume_dir.name, resumed, getattr(source, "classes", None))
    if init_from is not None:
        init = _init_checkpoint(runs_dir, init_from)
    earlier = resumed or init
    norm = Normalisation.from_dict(earlier["config"]["normalisation"]) if earlier else None
    report(Progress(0, 1, "reading images and masks"))
    data = _source_data(source, cfg, norm, masks, cancel)
    if runs_dir is None:
        raise TrainingError("no folder for the run: pass runs_dir, or train on a Project")
    if earlier and int(earlier["config"]["in_channels"]) != data.in_channels:
        raise TrainingError(f"the earlier run was trained on {earlier['config']['in_channels']}-"
                            f"channel images, these are {data.in_channels}-channel")
    if resumed is not None:
        _check_resumable_classes(resume_dir.name, resumed, data.classes)
    _check_two_classes(data)

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    dctx = distributed.setup(device)       # a pass-through unless launched by torchrun
    device = dctx.device
    spec = dict(earlier["config"]["model"]) if earlier else cfg.model_spec()
    torch.manual_seed(cfg.seed)
    kwargs = {k: v for k, v in spec.items() if k != "name"}
    model = build_model(spec["name"], data.in_channels, data.num_classes, **kwargs)
    warnings = list(data.warnings)
    if init is not None:
        rebuilt = transfer_weights(model, init["state_dict"])
        if rebuilt:
            warnings.append(f"fine-tuning: rebuilt {', '.join(rebuilt)} for "
                            f"{data.num_classes} classes")
            log.info("fine-tuning: rebuilt %s", rebuilt)
    if resumed is not None:
        try:
            model.load_state_dict(resumed["state_dict"])
        except RuntimeError as e:
            raise TrainingError(f"run {resume_dir.name}: its last.pt does not fit the model it "
                                f"names ({_first_sentence(e)}); use --from {resume_dir.name} to "
                                f"fine-tune from it instead") from None

    weights = cfg.class_weights
    if weights == "balanced":
        weights = balanced_weights(data.class_pixels(), data.num_classes)
        log.info("balanced class weights: %s", [round(w, 3) for w in weights])
    stepper = TrainStep(model, SegLoss(data.num_classes, cfg.dice_weight, weights),
                        cfg, device, wrap=dctx.wrap)
    opt, amp_dtype = stepper.opt, stepper.amp_dtype

    state = {"step": 0, "epoch": 0, "elapsed": 0.0, "best_score": -math.inf, "best_epoch": 0,
             "bad_epochs": 0, "history": []}
    if resumed is not None:
        opt.load_state_dict(resumed["optimizer"])
        state.update(resumed["state"])
        run_dir = resume_dir
    else:
        cancel.raise_if_cancelled()          # no run folder for a run cancelled before it began
        label = spec["name"] if (cfg.model or init is not None) else cfg.preset
        run_dir = dctx.shared_run_dir(lambda: new_run_dir(
            runs_dir, f"{label}-finetune" if init is not None else label))
    run_id = run_dir.name
    ck_config = checkpoint_config(cfg, spec, data, run_id)
    budget = cfg.minutes * 60.0 if cfg.minutes else None
    total_steps = cfg.epochs * cfg.steps_per_epoch
    started = time.perf_counter() - state["elapsed"]
    card_base = {
        "run_id": run_id, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model": spec, "parameters": count_parameters(model), "in_channels": data.in_channels,
        "num_classes": data.num_classes, "classes": ck_config["classes"],
        "normalisation": data.normalisation.to_dict(), "config": asdict(cfg),
        "data": {"hash": data.data_hash, "train_images": [s.id for s in data.train],
                 "val_images": [s.id for s in data.val],
                 "train_class_pixels": {str(k): v for k, v in data.class_pixels().items()}},
        "versions": versions(), "device": describe(device),
        "world_size": dctx.world_size,     # processes under torchrun; global batch = batch x this
        "amp": str(amp_dtype).replace("torch.", "") if amp_dtype else None,
        "resumed": resume is not None, "fine_tuned_from": str(init_from) if init_from else None,
        "warnings": warnings, "checkpoints": {"best": "best.pt", "last": "last.pt"},
    }

    def progress_fraction() -> float:
        frac = state["step"] / total_steps
        if budget:
            frac = max(frac, (time.perf_counter() - started) / budget)
        return min(frac, 1.0)

    def save(status: str, metrics: dict[str, float]) -> None:
        state["elapsed"] = time.perf_counter() - started
        if not dctx.is_main:
            return
        save_checkpoint(run_dir / "last.pt", ck_config, model.state_dict(),
                        optimizer=opt.state_dict(), state=dict(state))
        best = next((h for h in state["history"] if h["epoch"] == state["best_epoch"]), {})
        write_card(run_dir, {**card_base, "status": status, "epochs": state["epoch"],
                             "steps": state["step"], "elapsed_s": round(state["elapsed"], 2),
                             "metrics": {"best": best, "last": metrics,
                                         "best_epoch": state["best_epoch"]},
                             "history": state["history"]})

    # Reseeding from the step keeps a resumed run's patches different from those already seen.
    sampler = PatchSampler(data.train, cfg.patch_size, cfg.batch_size,
                           seed=dctx.seed(cfg.seed * 1_000_003 + state["step"]),
                           augment=Augment() if cfg.augment else Augment.none(),
                           label_bias=cfg.label_bias)
    stream = Prefetcher(sampler, transform=stepper.host_batch)
    val_samples = data.val or data.train
    last_metrics: dict[str, float] = {}
    status = "finished"
    first_batch, looped = None, False
    model.train()
    try:
        while state["epoch"] < cfg.epochs and status == "finished":
            epoch_loss, epoch_steps, waited, epoch_start = 0.0, 0, 0.0, time.perf_counter()
            for _ in range(cfg.steps_per_epoch):
                fraction = progress_fraction()
                over_budget = bool(budget and time.perf_counter() - started >= budget)
                if dctx.enabled:   # every rank stops at the same step, or one waits forever
                    fraction, over_budget, cancelled = dctx.agree_step(fraction, over_budget,
                                                                       cancel.cancelled)
                    if cancelled:
                        cancel.cancel()
                cancel.raise_if_cancelled()
                if over_budget:
                    status = "time-budget"
                    break
                lr = cfg.lr * lr_factor(fraction, cfg.schedule, cfg.warmup)
                for g in opt.param_groups:
                    g["lr"] = lr
                t_wait = time.perf_counter()
                batch = next(stream)
                waited += time.perf_counter() - t_wait     # > 0 means the data starves the model
                if first_batch is None and os.environ.get(distributed.RANK_DUMP_ENV):
                    first_batch = distributed.batch_hash(*batch)
                value = stepper(*stepper.to_device(*batch))
                value = dctx.mean(value)   # over ranks: a NaN anywhere stops every rank
                state["step"] += 1
                if not math.isfinite(value):
                    raise TrainingError(
                        f"the loss became {value} at step {state['step']} (epoch "
                        f"{state['epoch'] + 1}): training diverged. Try a lower learning rate "
                        f"(now {cfg.lr:g}), or check the images for broken pixel values")
                epoch_loss += value
                epoch_steps += 1
                elapsed = time.perf_counter() - started
                report(Progress(*_done_total(progress_fraction()),
                                f"epoch {state['epoch'] + 1}/{cfg.epochs} step {state['step']}",
                                {"loss": value, "lr": lr, "epoch": state["epoch"] + 1.0,
                                 "step": float(state["step"]), "elapsed_s": elapsed}))
            if not epoch_steps:
                break
            state["epoch"] += 1
            train_time = time.perf_counter() - epoch_start
            report(Progress(*_done_total(progress_fraction()),
                            f"epoch {state['epoch']}: validating on {len(val_samples)} images"))
            if dctx.is_main:   # validation on rank 0; the others wait in from_main below
                cm, val_loss = evaluate(model, val_samples, data.num_classes, device,
                                        tile=cfg.val_tile, channels_last=cfg.channels_last,
                                        amp_dtype=amp_dtype,
                                        cancel=None if dctx.enabled else cancel)
                last_metrics = {"epoch": float(state["epoch"]), "loss": epoch_loss / epoch_steps,
                                **metrics_from(cm, data.classes, val_loss),
                                "images_per_s": epoch_steps * cfg.batch_size / train_time,
                                "data_wait_fraction": waited / train_time}
                state["history"].append(last_metrics)
                score = _score(last_metrics)
                if score > state["best_score"] + 1e-4:
                    state.update(best_score=score, best_epoch=state["epoch"], bad_epochs=0)
                    save_checkpoint(run_dir / "best.pt", ck_config, model.state_dict())
                else:
                    state["bad_epochs"] += 1
                if cfg.patience and state["bad_epochs"] >= cfg.patience and status == "finished":
                    status = "early-stopped"
                save("running" if status == "finished" and state["epoch"] < cfg.epochs
                     else status, last_metrics)
            if dctx.enabled:
                last_metrics, status, shared = dctx.from_main(value=(last_metrics, status, state))
                state.update(shared)
            report(Progress(*_done_total(progress_fraction()),
                            f"epoch {state['epoch']}/{cfg.epochs}: loss {last_metrics['loss']:.4f}, "
                            f"val {describe_score(last_metrics)}",
                            {**last_metrics, "elapsed_s": time.perf_counter() - started}))
        looped = True
    except Cancelled:
        if resumed is None and state["step"] == 0:
            # nothing was trained: an untrained last.pt would only be a run to clean up later
            if dctx.is_main:
                shutil.rmtree(run_dir, ignore_errors=True)
            raise
        save("cancelled", last_metrics)
        raise TrainingCancelled(run_dir, tuple(c for c in ("best.pt", "last.pt")
                                               if (run_dir / c).is_file())) from None
    except (TrainingError, DataError):
        save("failed", last_metrics)
        raise
    except (RuntimeError, MemoryError) as e:
        friendly = _friendly(e, cfg, device)
        if friendly is None:
            raise
        save("failed", last_metrics)
        raise friendly from e
    finally:
        stream.close()
        if not looped:
            dctx.close()
    dctx.sync_buffers(model)
    save(status, last_metrics)
    distributed.dump_rank_state(dctx, model, first_batch)
    dctx.barrier()       # nobody leaves before rank 0 has written the final card
    dctx.close()
    best = next((h for h in state["history"] if h["epoch"] == state["best_epoch"]), {})
    report(Progress(1000, 1000, f"done: {status}, best epoch {state['best_epoch']}"))
    return TrainResult(run_dir, status, best, last_metrics, state["best_epoch"], state["epoch"],
                       state["step"], time.perf_counter() - started, warnings)


def _done_total(fraction: float) -> tuple[int, int]:
    """Progress in thousandths: steps or time, whichever limit is nearer."""
    return int(fraction * 1000), 1000
