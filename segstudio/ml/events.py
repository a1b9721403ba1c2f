"""What a training run reports: typed events while it goes, its result or error; no torch, no Qt.

Each event is a `Progress` (done/total in thousandths of the run, a message), so a Job, a
progress bar or a jobs list shows it like any other job's progress; consumers that draw curves
match on the type (`match event: case StepDone(): ...`), never on keys of a dict. Progress that
is not an event (reading images, validating) is a plain `Progress` with a message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from segstudio.core.jobs import Cancelled, Progress

TOTAL = 1000        # progress is reported in thousandths: steps or time, whichever is nearer


@dataclass(frozen=True)
class PlanMade(Progress):
    """The plan for the run was derived from the data (`segstudio.ml.plan`), before step 1."""

    summary: str = ""            # one line: working scale, patch, batch, mirroring
    lines: tuple[str, ...] = ()  # every item with its reason


@dataclass(frozen=True)
class StepDone(Progress):
    """One optimisation step finished."""

    step: int = 0                # steps done in the whole run (a resumed run counts on)
    epoch: int = 0               # the epoch this step belongs to, from 1
    loss: float = 0.0
    lr: float = 0.0
    elapsed_s: float = 0.0


@dataclass(frozen=True)
class EpochDone(Progress):
    """An epoch finished and was validated; `scores` are its validation metrics."""

    epoch: int = 0
    scores: dict[str, float] = field(default_factory=dict)   # mean_dice, mean_iou, loss, ...
    best: bool = False           # this epoch's weights are the run's best.pt now
    elapsed_s: float = 0.0

    @property
    def mean_dice(self) -> float:
        return float(self.scores.get("mean_dice", float("nan")))

    @property
    def mean_iou(self) -> float:
        return float(self.scores.get("mean_iou", float("nan")))


@dataclass(frozen=True)
class TrainFinished(Progress):
    """The run ended (finished, early-stopped, time-budget); the result follows."""

    status: str = "finished"
    best_epoch: int = 0


@dataclass
class TrainResult:
    """What `train()` returns once the run is on disk."""

    run_dir: Path
    status: str                          # "finished", "early-stopped", "time-budget"
    best_metrics: dict[str, float]
    last_metrics: dict[str, float]
    best_epoch: int
    epochs: int
    steps: int
    elapsed_s: float
    warnings: list[str] = field(default_factory=list)


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
