"""Model cards read defensively: a broken card is reported as broken, never raised while listing.

Anyone can edit `model_card.json` (or a disk can damage it), and the window lists every run when a
project opens, so one bad card must not make the project unopenable. No torch here: the window
lists runs long before any model is loaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CARD = "model_card.json"
CHECKPOINTS = ("best.pt", "last.pt")

# Fields the runs table, the CLI and prediction read, with the JSON type each must have when set.
_FIELDS: dict[str, tuple[type, ...]] = {
    "run_id": (str,), "status": (str,), "created": (str,), "device": (str,),
    "epochs": (int, float), "steps": (int, float), "num_classes": (int, float),
    "in_channels": (int, float),
    "metrics": (dict,), "classes": (list,), "normalisation": (dict,), "model": (dict, str),
    "config": (dict,), "history": (list,), "warnings": (list,), "data": (dict,),
}
_JSON_NAMES = {str: "a string", int: "a number", float: "a number", bool: "true/false",
               list: "a list", dict: "an object", type(None): "null"}


def _kind(value: Any) -> str:
    return _JSON_NAMES.get(type(value), type(value).__name__)


def _short(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (str, int, float, list, dict)) else repr(value)
    return text if len(text) <= 30 else text[:27] + "..."


NO_SCORE = "no validation score (no foreground class labelled in validation images)"


def describe_score(metrics: Any) -> str:
    """'mean Dice 0.812' (', object AP@0.5 0.774' with objects), or why there is no score: the one wording the window and CLI show."""
    def number(key: str) -> float | None:
        v = metrics.get(key) if isinstance(metrics, dict) else None
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and v == v
        return float(v) if ok else None

    d, ap = number("mean_dice"), number("object_ap50")
    parts = ([f"mean Dice {d:.3f}"] if d is not None else []) + \
        ([f"object AP@0.5 {ap:.3f}"] if ap is not None else [])
    return ", ".join(parts) if parts else NO_SCORE


def card_problem(card: Any) -> str | None:
    """Why a parsed model card cannot be shown or used, in plain words; None when it is fine.

    A phrase without the file's name ("'metrics' is a string ("x"), not an object"): the runs
    table shows it after "broken: ", messages after "model_card.json: ".
    """
    if not isinstance(card, dict):
        return f"holds {_kind(card)}, not an object"
    for key, types in _FIELDS.items():
        value = card.get(key)
        if value is None:
            continue
        ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
        if not ok:
            wanted = " or ".join(dict.fromkeys(_JSON_NAMES[t] for t in types))
            return f"'{key}' is {_kind(value)} ({_short(value)}), not {wanted}"
    for part in ("best", "last"):
        scores = (card.get("metrics") or {}).get(part)
        if scores is None:
            continue
        if not isinstance(scores, dict):
            return f"'metrics.{part}' is {_kind(scores)}, not an object"
        for key, value in scores.items():
            if value is not None and (isinstance(value, bool) or
                                      not isinstance(value, (int, float))):
                return (f"'metrics.{part}.{key}' is {_kind(value)} ({_short(value)}), "
                        f"not a number")
    for c in card.get("classes") or []:
        if isinstance(c, str):
            continue
        if not isinstance(c, dict) or not isinstance(c.get("id"), int) or \
                isinstance(c.get("id"), bool) or not isinstance(c.get("name"), str):
            return f"a class entry is {_short(c)}, not {{\"id\": number, \"name\": text}}"
    return None


def read_run_card(run_dir: Path | str) -> tuple[dict[str, Any] | None, str | None]:
    """(card, None) for a good card, (None, problem) for a broken one, (None, None) when absent;
    the problem is a phrase as card_problem's."""
    path = Path(run_dir) / CARD
    if not path.is_file():
        return None, None
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        return None, "not text (not UTF-8)"
    except ValueError as e:
        return None, f"not valid JSON ({e})"
    except OSError as e:
        return None, f"cannot be read ({e.strerror or e})"
    problem = card_problem(card)
    return (None, problem) if problem else (card, None)


def list_run_cards(runs_dir: Path | str) -> list[dict[str, Any]]:
    """Every run's card (newest first) with `run_dir`, `has_checkpoint` and `broken` added.

    A broken card comes back as `{"run_id", "run_dir", "status": "broken: <reason>", "broken":
    "model_card.json: <reason>"}` so the runs table can say so; folders without a card (a run
    still before its first checkpoint, or not a run) are left out. Never raises for what is
    inside the folders.
    """
    runs_dir = Path(runs_dir)
    out: list[dict[str, Any]] = []
    try:
        folders = sorted((p for p in runs_dir.iterdir() if p.is_dir()), reverse=True)
    except OSError:
        return out
    for d in folders:
        try:
            has_checkpoint = any((d / c).is_file() for c in CHECKPOINTS)
            card, problem = read_run_card(d)
        except OSError:
            continue            # removed while we looked
        if problem is not None:
            out.append({"run_id": d.name, "run_dir": str(d), "has_checkpoint": has_checkpoint,
                        "status": f"broken: {problem}", "broken": f"{CARD}: {problem}"})
        elif card is not None:
            out.append({**card, "run_dir": str(d), "has_checkpoint": has_checkpoint,
                        "broken": None})
    return out
