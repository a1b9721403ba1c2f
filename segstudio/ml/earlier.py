"""Earlier runs a new one starts from: resume (continue last.pt in place) and fine-tune.

Every refusal is a one-line TrainingError that says which run and what to do instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from segstudio.ml.checkpoint import NotACheckpointError, load_checkpoint, resolve_checkpoint
from segstudio.ml.events import TrainingError
from segstudio.ml.runs import find_run


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


def first_sentence(e: BaseException) -> str:
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


def resume_checkpoint(runs_dir: Path | None, resume: Path | str) -> tuple[Path, dict[str, Any]]:
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


def init_checkpoint(runs_dir: Path | None, init_from: Path | str) -> dict[str, Any]:
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


def check_resumable_classes(run_id: str, ckpt: dict[str, Any], classes: Any) -> None:
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
