"""Run folders under `<project>/runs/<run-id>/`: checkpoints plus a model card the app lists."""

from __future__ import annotations

import json
import logging
import math
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segstudio.ml.checkpoint import MODEL_CARD

log = logging.getLogger(__name__)

CARD_FORMAT = "segstudio-model-card"
CARD_VERSION = 1


def new_run_dir(runs_dir: Path | str, label: str) -> Path:
    """A fresh, uniquely named run folder: `20261127-013000-fast`, then `-2`, `-3`..."""
    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    base = f"{time.strftime('%Y%m%d-%H%M%S')}-{label}"
    candidate, n = base, 2
    while True:
        try:
            (runs_dir / candidate).mkdir()
            return runs_dir / candidate
        except FileExistsError:
            candidate, n = f"{base}-{n}", n + 1


def find_run(runs_dir: Path | str | None, run: Path | str) -> Path:
    """A run given as a folder path or as a run id inside `runs_dir`."""
    p = Path(run)
    if p.is_dir():
        return p
    if runs_dir is not None and (Path(runs_dir) / str(run)).is_dir():
        return Path(runs_dir) / str(run)
    known = sorted(d.name for d in Path(runs_dir).iterdir() if d.is_dir()) \
        if runs_dir is not None and Path(runs_dir).is_dir() else []
    raise FileNotFoundError(f"run {str(run)!r} not found; known runs: {known}")


def versions() -> dict[str, str]:
    import cv2

    from segstudio import __version__

    return {"segstudio": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "opencv": cv2.__version__, "python": platform.python_version(),
            "platform": f"{platform.system()} {platform.machine()}"}


def _jsonable(value: Any) -> Any:
    """NaN/inf become null so the card stays strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def write_card(run_dir: Path, card: dict[str, Any]) -> None:
    """Write model_card.json atomically (the app may read it while training goes on)."""
    card = {"format": CARD_FORMAT, "version": CARD_VERSION, **card}
    tmp = run_dir / (MODEL_CARD + ".tmp")
    tmp.write_text(json.dumps(_jsonable(card), indent=2, allow_nan=False), encoding="utf-8")
    tmp.replace(run_dir / MODEL_CARD)


def read_card(run_dir: Path | str) -> dict[str, Any]:
    return json.loads((Path(run_dir) / MODEL_CARD).read_text(encoding="utf-8"))


def list_runs(runs_dir: Path | str) -> list[dict[str, Any]]:
    """Every run's card (newest first) with `run_dir` added; unreadable cards are skipped."""
    runs_dir = Path(runs_dir)
    out = []
    if not runs_dir.is_dir():
        return out
    for d in sorted((p for p in runs_dir.iterdir() if p.is_dir()), reverse=True):
        try:
            card = read_card(d)
        except (OSError, ValueError):
            continue
        out.append({**card, "run_dir": str(d)})
    return out
