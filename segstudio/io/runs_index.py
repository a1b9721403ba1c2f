"""Listing run folders without torch: the app shows runs long before any model is loaded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CARD = "model_card.json"
CHECKPOINTS = ("best.pt", "last.pt")


def run_cards(runs_dir: Path | str) -> list[dict[str, Any]]:
    """Every run's model card (newest first) with `run_dir` and `has_checkpoint` added."""
    runs_dir = Path(runs_dir)
    out: list[dict[str, Any]] = []
    if not runs_dir.is_dir():
        return out
    for d in sorted((p for p in runs_dir.iterdir() if p.is_dir()), reverse=True):
        try:
            card = json.loads((d / CARD).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(card, dict):
            out.append({**card, "run_dir": str(d),
                        "has_checkpoint": any((d / c).is_file() for c in CHECKPOINTS)})
    return out


def starter_matches(models_dir: Path, class_names: list[str]) -> Path | None:
    """A bundled model whose classes are the project's (same names, same order), if any."""
    if not Path(models_dir).is_dir():
        return None
    wanted = [n.casefold() for n in class_names]
    for d in sorted(p for p in Path(models_dir).iterdir() if p.is_dir()):
        try:
            card = json.loads((d / CARD).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(card, dict) or card.get("kind") == "click":
            continue            # a click model answers clicks, never predicts classes
        names = [str(c.get("name", "")).casefold() for c in card.get("classes", []) if isinstance(c, dict)]
        if names == wanted and any((d / c).is_file() for c in CHECKPOINTS):
            return d
    return None
