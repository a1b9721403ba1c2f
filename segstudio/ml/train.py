"""The training loop: patches in, best/last checkpoints and a model card out.

`train()` knows nothing about Qt: it reports typed events (`segstudio.ml.events`: `StepDone`,
`EpochDone`, `TrainFinished`, each a `Progress`) through `on_progress` and stops between steps
when `cancel` is set. The CLI calls it directly; the app runs it in a `Job`. The work is split
into verbs on a `TrainingRun`: `run_epoch`, `validate` (the one predictor, see
`segstudio.ml.validate`), `checkpoint`; `train()` sets a run up and drives them.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segstudio.core.jobs import Cancelled, CancelToken, Progress, ProgressFn
from segstudio.ml import distributed
from segstudio.ml.cards import NO_SCORE, describe_score  # noqa: F401  (re-exported)
from segstudio.ml.checkpoint import save_checkpoint
from segstudio.ml.config import SCHEDULES, ConfigError, TrainConfig  # noqa: F401  (re-exported)
from segstudio.ml.data import (Augment, DataError, Normalisation, PatchSampler, Prefetcher,
                               TrainingData, build_training_data, objects_of, project_plan,
                               read_labelled)
from segstudio.ml.device import describe, pick_device
from segstudio.ml.earlier import (check_resumable_classes, first_sentence, init_checkpoint,
                                  resume_checkpoint, transfer_weights)
from segstudio.ml.events import (TOTAL, EpochDone, PlanMade, StepDone, TrainFinished,  # noqa: F401
                                 TrainingCancelled, TrainingError, TrainResult,
                                 cancelled_message)
from segstudio.ml.loss import SegLoss, balanced_weights, soft_dice_loss  # noqa: F401
from segstudio.ml.models import build_model, count_parameters
from segstudio.ml.normalise import PREPARED
from segstudio.ml.plan import resolved_without_plan
from segstudio.ml.runs import new_run_dir, versions, write_card
from segstudio.ml.step import TrainStep, lr_factor  # noqa: F401  (re-exported)
from segstudio.ml.validate import metrics_from, score, smoothed_score, validate  # noqa: F401

log = logging.getLogger(__name__)

# epochs without validation gain (cfg.patience) count from this fraction of the run on
EARLY_STOP_FROM = 0.5


@dataclass
class RunState:
    """Where a run stands; last.pt stores it (as a dict) so a resumed run goes on from here."""

    step: int = 0
    epoch: int = 0
    elapsed: float = 0.0
    best_score: float = -math.inf       # the best smoothed score so far
    smoothed: float | None = None       # the smoothed validation score after the last epoch
    best_epoch: int = 0
    bad_epochs: int = 0
    history: list[dict[str, float]] = field(default_factory=list)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunState:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def best_metrics(self) -> dict[str, float]:
        return next((h for h in self.history if h["epoch"] == self.best_epoch), {})


@dataclass
class RunSetup:
    """Everything decided before the first step: data, model, folder, earlier checkpoint."""

    cfg: TrainConfig
    data: TrainingData
    model: torch.nn.Module
    spec: dict[str, Any]
    device: torch.device
    dctx: distributed.DistContext
    runs_dir: Path
    resumed: dict[str, Any] | None       # last.pt of the run being continued
    resume_dir: Path | None
    init_from: Path | str | None
    warnings: list[str]
    loss_fn: SegLoss


class TrainingRun:
    """One run in progress and its verbs: `run_epoch`, `validate`, `checkpoint`."""

    def __init__(self, setup: RunSetup, report: ProgressFn, cancel: CancelToken) -> None:
        self.setup, self.cfg, self.report, self.cancel = setup, setup.cfg, report, cancel
        self.dctx = setup.dctx
        self.stepper = TrainStep(setup.model, setup.loss_fn, self.cfg, setup.device,
                                 wrap=self.dctx.wrap)
        self.state = RunState()
        if setup.resumed is not None:
            self.stepper.opt.load_state_dict(setup.resumed["optimizer"])
            self.state = RunState.from_dict(setup.resumed["state"])
            self.run_dir = setup.resume_dir
        else:
            cancel.raise_if_cancelled()      # no run folder for a run cancelled before it began
            cfg, spec = self.cfg, setup.spec
            label = spec["name"] if (cfg.model or setup.init_from is not None) else cfg.preset
            label = f"{label}-finetune" if setup.init_from is not None else label
            self.run_dir = self.dctx.shared_run_dir(lambda: new_run_dir(setup.runs_dir, label))
        self.ck_config = checkpoint_config(self.cfg, setup.spec, setup.data, self.run_dir.name)
        self.card_base = _card_base(self)
        self.budget = self.cfg.minutes * 60.0 if self.cfg.minutes else None
        self.agreed_fraction = 0.0      # of the run, as the last step agreed it
        self.total_steps = self.cfg.epochs * self.cfg.steps_per_epoch
        self.started = time.perf_counter() - self.state.elapsed
        self.status = "finished"
        self.last_metrics: dict[str, float] = {}
        self.val_samples = setup.data.val or setup.data.train

    # -- time and progress ---------------------------------------------------------------------
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def fraction(self) -> float:
        """How far the run is: steps or time, whichever limit is nearer."""
        frac = self.state.step / self.total_steps
        if self.budget:
            frac = max(frac, self.elapsed() / self.budget)
        return min(frac, 1.0)

    def _done(self) -> int:
        return int(self.fraction() * TOTAL)

    def sampler_seed(self) -> int | tuple[int, int]:
        # reseeding from the step keeps a resumed run's patches different from those seen
        return self.dctx.seed(self.cfg.seed * 1_000_003 + self.state.step)

    def new_sampler(self, seed: int | tuple[int, int]) -> PatchSampler:
        cfg = self.cfg
        return PatchSampler(self.setup.data.train, cfg.patch_size, cfg.batch_size, seed=seed,
                            augment=Augment(bool(cfg.flip_h), bool(cfg.flip_v), bool(cfg.rot90))
                            if cfg.augment else Augment.none(),
                            label_bias=cfg.label_bias)

    # -- the verbs -----------------------------------------------------------------------------
    def run_epoch(self, stream: Prefetcher) -> tuple[float, int, float, float]:
        """Up to steps_per_epoch steps: (loss sum, steps, data wait s, train s)."""
        cfg, state, dctx, cancel = self.cfg, self.state, self.dctx, self.cancel
        loss_sum, steps, waited, t0 = 0.0, 0, 0.0, time.perf_counter()
        for _ in range(cfg.steps_per_epoch):
            fraction = self.fraction()
            over_budget = bool(self.budget and self.elapsed() >= self.budget)
            if dctx.enabled:   # every rank stops at the same step, or one waits forever
                fraction, over_budget, cancelled = dctx.agree_step(fraction, over_budget,
                                                                   cancel.cancelled)
                if cancelled:
                    cancel.cancel()
            cancel.raise_if_cancelled()
            self.agreed_fraction = fraction
            if over_budget:
                self.status = "time-budget"
                break
            lr = cfg.lr * lr_factor(fraction, cfg.schedule, cfg.warmup)
            for g in self.stepper.opt.param_groups:
                g["lr"] = lr
            t_wait = time.perf_counter()
            batch = next(stream)
            waited += time.perf_counter() - t_wait     # > 0 means the data starves the model
            value = dctx.mean(self.stepper(*self.stepper.to_device(*batch)))   # NaN anywhere
            state.step += 1                                                   # stops every rank
            if not math.isfinite(value):
                raise TrainingError(
                    f"the loss became {value} at step {state.step} (epoch {state.epoch + 1}): "
                    f"training diverged. Try a lower learning rate (now {cfg.lr:g}), or check "
                    f"the images for broken pixel values")
            loss_sum += value
            steps += 1
            self.report(StepDone(self._done(), TOTAL,
                                 f"epoch {state.epoch + 1}/{cfg.epochs} step {state.step}",
                                 step=state.step, epoch=state.epoch + 1, loss=value, lr=lr,
                                 elapsed_s=self.elapsed()))
        return loss_sum, steps, waited, time.perf_counter() - t0

    def validate(self) -> dict[str, float]:
        """The validation metrics of the current weights (rank 0 only under torchrun)."""
        data = self.setup.data
        # validation images as stored go through the run's own normalisation and working
        # scale (what Measure does); without them, the prepared training snapshots
        norm = data.normalisation if data.val else PREPARED
        return validate(self.stepper.model, self.val_samples, data.classes, data.num_classes,
                        normalise=norm, objects=data.objects,
                        cancel=None if self.dctx.enabled else self.cancel)

    def checkpoint(self, status: str, metrics: dict[str, float]) -> None:
        """last.pt and the model card (rank 0 writes; every rank notes the elapsed time)."""
        state = self.state
        state.elapsed = self.elapsed()
        if not self.dctx.is_main:
            return
        save_checkpoint(self.run_dir / "last.pt", self.ck_config,
                        self.stepper.model.state_dict(), optimizer=self.stepper.opt.state_dict(),
                        state=asdict(state))
        write_card(self.run_dir, {**self.card_base, "status": status, "epochs": state.epoch,
                                  "steps": state.step, "elapsed_s": round(state.elapsed, 2),
                                  "metrics": {"best": state.best_metrics(), "last": metrics,
                                              "best_epoch": state.best_epoch},
                                  "history": state.history})

    def end_epoch(self, loss_sum: float, steps: int, waited: float, train_s: float) -> bool:
        """Validate, keep best.pt, decide on early stopping, write last.pt; True when best."""
        cfg, state = self.cfg, self.state
        metrics = {"epoch": float(state.epoch), "loss": loss_sum / steps, **self.validate(),
                   "images_per_s": steps * cfg.batch_size / train_s,
                   "data_wait_fraction": waited / train_s}
        self.last_metrics = metrics
        state.history.append(metrics)
        state.smoothed = smoothed_score(state.smoothed, score(metrics))
        metrics["selection_score"] = state.smoothed
        best = state.smoothed > state.best_score + 1e-4
        if best:
            state.best_score, state.best_epoch, state.bad_epochs = state.smoothed, state.epoch, 0
            save_checkpoint(self.run_dir / "best.pt", self.ck_config,
                            self.stepper.model.state_dict())
        elif self.agreed_fraction >= EARLY_STOP_FROM:
            # epochs without gain count from half the run on: with the learning rate still
            # high, validation plateaus and then gains again as it decays (the fraction every
            # rank agreed on, so all ranks stop together)
            state.bad_epochs += 1
        if cfg.patience and state.bad_epochs >= cfg.patience and self.status == "finished":
            self.status = "early-stopped"
        self.checkpoint("running" if self.status == "finished" and state.epoch < cfg.epochs
                        else self.status, metrics)
        return best

    def loop(self, stream: Prefetcher) -> None:
        cfg, state, dctx = self.cfg, self.state, self.dctx
        while state.epoch < cfg.epochs and self.status == "finished":
            loss_sum, steps, waited, train_s = self.run_epoch(stream)
            if not steps:
                break
            state.epoch += 1
            self.report(Progress(self._done(), TOTAL, f"epoch {state.epoch}: validating on "
                                                      f"{len(self.val_samples)} images"))
            best = self.end_epoch(loss_sum, steps, waited, train_s) if dctx.is_main else False
            if dctx.enabled:   # the other ranks waited here for rank 0's validation
                self.last_metrics, self.status, shared, best = dctx.from_main(
                    value=(self.last_metrics, self.status, asdict(state), best))
                self.state = state = RunState.from_dict(shared)
            m = self.last_metrics
            self.report(EpochDone(self._done(), TOTAL,
                                  f"epoch {state.epoch}/{cfg.epochs}: loss {m['loss']:.4f}, "
                                  f"val {describe_score(m)}", epoch=state.epoch, scores=dict(m),
                                  best=best, elapsed_s=self.elapsed()))

    def execute(self) -> TrainResult:
        """Drive the epochs; on every way out, leave the run folder saying what happened."""
        first_seed = self.sampler_seed()
        stream = Prefetcher(self.new_sampler(first_seed), transform=self.stepper.host_batch)
        looped = False
        self.stepper.model.train()
        try:
            self.loop(stream)
            looped = True
        except Cancelled:
            if self.setup.resumed is None and self.state.step == 0:
                # nothing was trained: an untrained last.pt would only be a run to clean up later
                if self.dctx.is_main:
                    shutil.rmtree(self.run_dir, ignore_errors=True)
                raise
            self.checkpoint("cancelled", self.last_metrics)
            raise TrainingCancelled(self.run_dir, tuple(
                c for c in ("best.pt", "last.pt") if (self.run_dir / c).is_file())) from None
        except (TrainingError, DataError):
            self.checkpoint("failed", self.last_metrics)
            raise
        except (RuntimeError, MemoryError) as e:
            friendly = _friendly(e, self.cfg, self.setup.device)
            if friendly is None:
                raise
            self.checkpoint("failed", self.last_metrics)
            raise friendly from e
        finally:
            stream.close()
            if not looped:
                self.dctx.close()
        return self.finish(first_seed)

    def finish(self, first_seed: int | tuple[int, int]) -> TrainResult:
        dctx, state = self.dctx, self.state
        dctx.sync_buffers(self.stepper.model)
        self.checkpoint(self.status, self.last_metrics)
        if os.environ.get(distributed.RANK_DUMP_ENV):     # the multi-process test's evidence
            distributed.dump_rank_state(dctx, self.stepper.model,
                                        lambda: self.new_sampler(first_seed).next_batch())
        dctx.barrier()       # nobody leaves before rank 0 has written the final card
        dctx.close()
        self.report(TrainFinished(TOTAL, TOTAL, f"done: {self.status}, best epoch "
                                                f"{state.best_epoch}", status=self.status,
                                  best_epoch=state.best_epoch))
        return TrainResult(self.run_dir, self.status, state.best_metrics(), self.last_metrics,
                           state.best_epoch, state.epoch, state.step, self.elapsed(),
                           self.setup.warnings)


def _card_base(run: TrainingRun) -> dict[str, Any]:
    s, cfg = run.setup, run.cfg
    data, amp = s.data, run.stepper.amp_dtype
    return {
        "run_id": run.run_dir.name, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model": s.spec, "parameters": count_parameters(s.model), "in_channels": data.in_channels,
        "num_classes": data.num_classes, "classes": run.ck_config["classes"],
        "objects": run.ck_config.get("objects"),
        "normalisation": data.normalisation.to_dict(), "config": asdict(cfg),
        "class_weights": s.loss_fn.class_weights,     # what the loss applies, per class id
        "data": {"hash": data.data_hash, "train_images": [x.id for x in data.train],
                 "val_images": [x.id for x in data.val],
                 "train_class_pixels": {str(k): v for k, v in data.class_pixels().items()}},
        "versions": versions(), "device": describe(s.device),
        "world_size": s.dctx.world_size,     # processes under torchrun; global batch = batch x this
        "amp": str(amp).replace("torch.", "") if amp else None,
        "resumed": s.resumed is not None,
        "fine_tuned_from": str(s.init_from) if s.init_from else None,
        "warnings": s.warnings, "checkpoints": {"best": "best.pt", "last": "last.pt"},
        "plan": data.plan.to_dict() if data.plan is not None else None,
    }


# -- setting a run up ------------------------------------------------------------------------------
def resumed_config(stored: Any, cfg: TrainConfig, run_id: str) -> TrainConfig:
    """A resumed run's stored config; epochs, minutes, device and threads from cfg where set."""
    try:
        if not isinstance(stored, Mapping):
            raise ValueError(f"'train' is {type(stored).__name__}, not a table")
        base = TrainConfig.from_dict(stored)
    except (KeyError, TypeError, ValueError) as e:
        raise TrainingError(f"run {run_id}: its last.pt holds no usable training settings "
                            f"({e}); start a new run or fine-tune from it") from None
    defaults = TrainConfig()
    return replace(base, **{k: getattr(cfg, k) for k in ("epochs", "minutes", "device", "threads")
                            if getattr(cfg, k) != getattr(defaults, k)})


def set_up(source: Any, cfg: TrainConfig, *, runs_dir: Path | str | None,
           resume: Path | str | None, init_from: Path | str | None,
           masks: Mapping[str, np.ndarray] | None, report: ProgressFn, cancel: CancelToken
           ) -> RunSetup:
    """Read the earlier run (if any) and the data, pick the device, build the model and loss."""
    runs_dir = Path(runs_dir) if runs_dir is not None else getattr(source, "runs_dir", None)
    resumed = init = resume_dir = None
    if resume is not None:
        resume_dir, resumed = resume_checkpoint(runs_dir, resume)
        cfg = resumed_config(resumed["config"].get("train"), cfg, resume_dir.name)
        check_resumable_classes(resume_dir.name, resumed, getattr(source, "classes", None))
    if init_from is not None:
        init = init_checkpoint(runs_dir, init_from)
    earlier = resumed or init
    norm = Normalisation.from_dict(earlier["config"]["normalisation"]) if earlier else None
    report(Progress(0, 1, "reading images and masks"))
    device = pick_device(cfg.device)
    data, cfg = _source_data(source, cfg, norm, masks, cancel, str(device))
    if data.plan is not None:
        report(PlanMade(0, 1, "plan: " + data.plan.summary(), lines=tuple(data.plan.lines()),
                        summary=data.plan.summary()))
    if runs_dir is None:
        raise TrainingError("no folder for the run: pass runs_dir, or train on a Project")
    if earlier and int(earlier["config"]["in_channels"]) != data.in_channels:
        raise TrainingError(f"the earlier run was trained on {earlier['config']['in_channels']}-"
                            f"channel images, these are {data.in_channels}-channel")
    if resumed is not None:
        check_resumable_classes(resume_dir.name, resumed, data.classes)
    _check_two_classes(data)

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    dctx = distributed.setup(device)    # a pass-through unless under torchrun
    spec = dict(earlier["config"]["model"]) if earlier else cfg.model_spec()
    torch.manual_seed(cfg.seed)
    model = build_model(spec["name"], data.in_channels, data.num_classes,
                        **{k: v for k, v in spec.items() if k != "name"})
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
                                f"names ({first_sentence(e)}); use --from {resume_dir.name} to "
                                f"fine-tune from it instead") from None
    weights = cfg.class_weights
    if weights == "balanced":
        weights = balanced_weights(data.class_pixels(), data.num_classes)
        log.info("balanced class weights: %s", [round(w, 3) for w in weights])
    loss_fn = SegLoss(data.num_classes, cfg.dice_weight, weights)
    return RunSetup(cfg, data, model, spec, dctx.device, dctx, runs_dir, resumed, resume_dir,
                    init_from, warnings, loss_fn)


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
    cancel = cancel or CancelToken()
    report: Callable[[Progress], None] = on_progress or (lambda _p: None)
    setup = set_up(source, cfg or TrainConfig(), runs_dir=runs_dir, resume=resume,
                   init_from=init_from, masks=masks, report=report, cancel=cancel)
    return TrainingRun(setup, report, cancel).execute()


# -- model set-up ----------------------------------------------------------------------------------
def checkpoint_config(cfg: TrainConfig, spec: dict[str, Any], data: TrainingData,
                      run_id: str) -> dict[str, Any]:
    """What a checkpoint must carry to rebuild the model and prepare its input (JSON-plain)."""
    return json.loads(json.dumps({
        "model": spec, "in_channels": data.in_channels, "num_classes": data.num_classes,
        "classes": [{"id": c.id, "name": c.name, "color": c.color} for c in data.classes],
        "normalisation": data.normalisation.to_dict(), "train": asdict(cfg), "run_id": run_id,
        "objects": data.objects.to_dict() if data.objects is not None else None,
    }))


def _source_data(source: Any, cfg: TrainConfig, norm: Normalisation | None,
                 masks: Mapping[str, np.ndarray] | None, cancel: CancelToken, device: str
                 ) -> tuple[TrainingData, TrainConfig]:
    """The training data and the config with every open setting decided.

    A Project is read once, planned (`segstudio.ml.plan`) and snapshotted at the plan's working
    scale; an earlier run (resumed or fine-tuned) keeps its own normalisation and scale.
    Prepared TrainingData has no fingerprint: open settings take the classic defaults.
    """
    if isinstance(source, TrainingData):
        if norm is not None and norm.to_dict() != source.normalisation.to_dict():
            raise TrainingError("the earlier run normalised images differently; build the "
                                "training data with its normalisation")
        return source, resolved_without_plan(cfg)
    items = read_labelled(source, masks=masks, cancel=cancel)
    plan = project_plan(items, source.classes, cfg, device=device, cancel=cancel)
    if norm is not None:        # the earlier run's input preparation, whatever the data say
        reasons = {**plan.reasons, "normalisation": "the earlier run's",
                   "working": "the earlier run's"}
        plan = replace(plan, normalisation=norm, working=norm.working, reasons=reasons)
    cfg = plan.apply(cfg)
    data = build_training_data([(it.id, it.image, it.mask, it.split) for it in items],
                               source.classes, plan.normalisation, cancel=cancel,
                               objects=objects_of(items))
    data.plan = plan
    for line in plan.lines():
        log.info("plan: %s", line)
    return data, cfg


def _friendly(e: BaseException, cfg: TrainConfig, device: torch.device) -> TrainingError | None:
    text = str(e)
    oom = isinstance(e, getattr(torch, "OutOfMemoryError", ())) or "out of memory" in text.lower()
    if oom or isinstance(e, MemoryError):
        return TrainingError(
            f"out of memory on {device} with batch size {cfg.batch_size} and patch size "
            f"{cfg.patch_size}: lower the batch size or the patch size, or pick the 'fast' preset")
    return None


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


