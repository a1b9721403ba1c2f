"""Finding a training run and loading its model for prediction.

A run is a folder `<project>/runs/<run-id>/` holding `model_card.json` and a checkpoint,
`best.pt` (preferred) or `last.pt`: `{"config": {"model", "in_channels", "num_classes", ...},
"state_dict": ...}`, read with `weights_only=True` because a checkpoint may come from anyone.
The model is rebuilt through the registry in `segstudio.ml.models` (imported when needed).

Optional keys this module understands, in the model card or the checkpoint's config:
`classes` ([{"id", "name", "color"}] or names in id order) and `normalisation` ({"mean", "std", "scale"}).
Without them the project's classes are used and pixels are scaled by their dtype to 0..1.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from segstudio.core.classes import LabelClass, default_color
from segstudio.ml.predict import Normalisation

log = logging.getLogger(__name__)

CARD = "model_card.json"
CHECKPOINTS = ("best.pt", "last.pt")


class RunError(Exception):
    """A run that cannot be found or loaded; the message says which file and why."""


def runs_dir_of(project_root: Path | str) -> Path:
    return Path(project_root) / "runs"


def list_runs(project_root: Path | str) -> list[Path]:
    """Run folders that hold a checkpoint, newest first."""
    root = runs_dir_of(project_root)
    if not root.is_dir():
        return []
    runs = [d for d in root.iterdir() if d.is_dir() and any((d / c).is_file() for c in CHECKPOINTS)]
    return sorted(runs, key=lambda d: find_checkpoint(d).stat().st_mtime, reverse=True)


def resolve_run_dir(project_root: Path | str | None, run: str | Path) -> Path:
    """A run folder from an id under the project's runs/, a path, or "latest"."""
    run_s = str(run)
    if project_root is not None:
        if run_s == "latest":
            runs = list_runs(project_root)
            if not runs:
                raise RunError(f"{runs_dir_of(project_root)} holds no runs with a checkpoint; "
                               "train a model first")
            return runs[0]
        candidate = runs_dir_of(project_root) / run_s
        if candidate.is_dir():
            return candidate
    path = Path(run)
    if path.is_dir():
        return path
    known = [d.name for d in list_runs(project_root)] if project_root is not None else []
    where = f"in {runs_dir_of(project_root)} " if project_root is not None else ""
    raise RunError(f"no run {run_s!r} {where}and no such folder"
                   + (f"; known runs: {known}" if known else ""))


def find_checkpoint(run_dir: Path) -> Path:
    for name in CHECKPOINTS:
        if (run_dir / name).is_file():
            return run_dir / name
    present = sorted(p.name for p in run_dir.iterdir()) if run_dir.is_dir() else []
    raise RunError(f"{run_dir} has no checkpoint ({' or '.join(CHECKPOINTS)}); it holds {present}")


def read_model_card(run_dir: Path) -> dict[str, Any]:
    path = run_dir / CARD
    if not path.is_file():
        log.warning("%s has no %s; using the checkpoint's config alone", run_dir, CARD)
        return {}
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise RunError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(card, dict):
        raise RunError(f"{path} must hold a JSON object, got {type(card).__name__}")
    return card


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:     # pickle refused, truncated file, not a checkpoint at all
        raise RunError(f"{path} cannot be read as a checkpoint: {e}") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "config" not in ckpt:
        keys = sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise RunError(f"{path} is not a SegStudio checkpoint: expected keys 'config' and "
                       f"'state_dict', found {keys}")
    if not isinstance(ckpt["config"], dict):
        raise RunError(f"{path}: 'config' must be a mapping")
    return ckpt


def _classes(raw: Any, num_classes: int, fallback: list[LabelClass] | None,
             where: Path) -> list[LabelClass]:
    if raw and all(isinstance(c, str) for c in raw):        # just names, in id order
        classes = [LabelClass(i, name, default_color(i)) for i, name in enumerate(raw)]
    elif raw:
        try:
            classes = [LabelClass(int(c["id"]), str(c["name"]),
                                  str(c.get("color", default_color(int(c["id"])))))
                       for c in raw]
        except (KeyError, TypeError, ValueError) as e:
            raise RunError(f"{where}: 'classes' is malformed ({e})") from None
    elif fallback:
        classes = [c for c in fallback if c.id < num_classes]
    else:
        classes = []
    known = {c.id for c in classes}
    # every id the model can predict gets a class, so tables and overlays never miss one
    classes += [LabelClass(i, f"class {i}", default_color(i)) for i in range(num_classes)
                if i not in known]
    return sorted(classes, key=lambda c: c.id)


def _project_classes(project_root: Path | str | None) -> list[LabelClass] | None:
    if project_root is None or not (Path(project_root) / "project.json").is_file():
        return None
    from segstudio.io.project import Project, ProjectError

    try:
        return list(Project.open(project_root).classes)
    except ProjectError as e:
        log.warning("could not read the project's classes: %s", e)
        return None


def load_run_model(project_root: Path | str | None, run: str | Path
                   ) -> tuple[torch.nn.Module, Normalisation, list[LabelClass]]:
    """(eval-mode model on CPU, its normalisation, its classes) for a run id or folder."""
    run_dir = resolve_run_dir(project_root, run)
    card = read_model_card(run_dir)
    ckpt_path = find_checkpoint(run_dir)
    ckpt = load_checkpoint(ckpt_path)
    cfg = {**ckpt["config"], **{k: v for k, v in card.items() if k in ("classes",
                                                                        "normalisation")}}
    name = cfg.get("model") or card.get("model")
    if not name:
        raise RunError(f"{ckpt_path}: the config names no 'model'; keys: {sorted(cfg)}")
    in_channels = int(cfg.get("in_channels", 3))
    if "num_classes" in cfg:
        num_classes = int(cfg["num_classes"])
    elif cfg.get("classes"):
        num_classes = len(cfg["classes"]) if isinstance(cfg["classes"][0], str) else (
            max(int(c["id"]) for c in cfg["classes"]) + 1)
    else:
        raise RunError(f"{ckpt_path}: the config gives no 'num_classes'; keys: {sorted(cfg)}")
    try:
        from segstudio.ml.models import build_model
    except ImportError as e:
        raise RunError(f"cannot rebuild model {name!r}: this build has no model registry "
                       f"(segstudio.ml.models: {e})") from None
    try:
        model = build_model(name, in_channels=in_channels, num_classes=num_classes)
    except (KeyError, ValueError) as e:
        raise RunError(f"{ckpt_path}: {e}") from None
    state = ckpt["state_dict"]
    if state and all(k.startswith("module.") for k in state):       # saved from DataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise RunError(f"{ckpt_path} does not fit model {name!r} with {in_channels} input "
                       f"channel(s) and {num_classes} classes: {e}") from None
    norm_raw = cfg.get("normalisation", cfg.get("normalization"))
    try:
        normalise = Normalisation.from_dict(norm_raw, in_channels=in_channels)
    except (TypeError, ValueError) as e:
        raise RunError(f"{run_dir}: normalisation: {e}") from None
    classes = _classes(cfg.get("classes"), num_classes, _project_classes(project_root), run_dir)
    log.info("loaded run %s: %s, %d classes, from %s", run_dir.name, name, num_classes,
             ckpt_path.name)
    return model.eval(), normalise, classes
