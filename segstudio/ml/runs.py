"""Run folders under `<project>/runs/<run-id>/`: checkpoints, model cards, and loading a run's
model for prediction.

A run holds `model_card.json` and `best.pt` / `last.pt`: `{"config": {"model", "in_channels",
"num_classes", "classes", "normalisation", ...}, "state_dict": ...}`, read with
`weights_only=True` because a checkpoint may come from anyone. `config["model"]` is the
trainer's spec (`{"name": "unet", "depth": 3, ...}`) or just a registered name; the model is
rebuilt through `segstudio.ml.models`. `load_run_model` is the one loader: Predict, Measure,
ranking, the CLI, exports, the benchmarks and the tests all read runs through it.
"""

from __future__ import annotations

import json
import logging
import math
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segstudio.core.classes import LabelClass, default_color
from segstudio.ml.objects import ObjectHead
from segstudio.ml.cards import list_run_cards, read_run_card
from segstudio.ml.checkpoint import MODEL_CARD
from segstudio.ml.normalise import Normalisation

log = logging.getLogger(__name__)

CARD = MODEL_CARD
CHECKPOINTS = ("best.pt", "last.pt")
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
    """Every run's card (newest first) with `run_dir` added; broken cards are skipped."""
    return [c for c in list_run_cards(runs_dir) if not c["broken"]]


class RunError(Exception):
    """A run that cannot be found or loaded; the message says which file and why."""


def runs_dir_of(project_root: Path | str) -> Path:
    return Path(project_root) / "runs"


def run_folders(project_root: Path | str) -> list[Path]:
    """Run folders that hold a checkpoint, newest first."""
    root = runs_dir_of(project_root)
    if not root.is_dir():
        return []
    runs = [Path(c["run_dir"]) for c in list_run_cards(root)
            if c["has_checkpoint"] and not c["broken"]]
    known = {r.name for r in runs}
    # a checkpoint without a card (copied by hand) is a run too; prediction uses its config alone
    runs += [d for d in root.iterdir() if d.is_dir() and d.name not in known
             and not (d / CARD).exists() and any((d / c).is_file() for c in CHECKPOINTS)]
    return sorted(runs, key=lambda d: find_checkpoint(d).stat().st_mtime, reverse=True)


def resolve_run_dir(project_root: Path | str | None, run: str | Path) -> Path:
    """A run folder from an id under the project's runs/, a path, or "latest"."""
    runs_dir = runs_dir_of(project_root) if project_root is not None else None
    if str(run) == "latest" and runs_dir is not None:
        runs = run_folders(project_root)
        if not runs:
            raise RunError(f"{runs_dir} holds no runs with a checkpoint; train a model first")
        return runs[0]
    try:
        return find_run(runs_dir, run)
    except FileNotFoundError as e:
        raise RunError(str(e)) from None


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
    card, problem = read_run_card(run_dir)
    if problem:
        raise RunError(f"run {run_dir.name!r} is broken: {CARD}: {problem}; fix or delete "
                       f"{path}, or train again")
    return card or {}


def _load_checkpoint(path: Path) -> dict[str, Any]:
    from segstudio.ml.checkpoint import CheckpointError, load_checkpoint

    try:
        ckpt = load_checkpoint(path)      # weights_only: a checkpoint may come from anyone
    except CheckpointError as e:
        raise RunError(str(e)) from None
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


@dataclass
class LoadedModel:
    """A run's model ready for inference, with what prediction needs to prepare its input."""

    model: torch.nn.Module               # eval mode, on the CPU
    normalise: Normalisation             # the run's, for segstudio.ml.predict
    classes: list[LabelClass]            # one per id the model predicts
    run_dir: Path
    checkpoint: Path
    config: dict[str, Any] = field(default_factory=dict)    # the checkpoint's config
    card: dict[str, Any] = field(default_factory=dict)      # model_card.json ({} when absent)
    objects: ObjectHead | None = None    # object classes: the boundary output to read out

    @property
    def in_channels(self) -> int:
        return int(self.config.get("in_channels", 3))

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def _model_name(cfg: dict[str, Any], card: dict[str, Any], ckpt_path: Path
                ) -> tuple[str, dict[str, Any]]:
    spec = cfg.get("model") or card.get("model")
    if isinstance(spec, dict):            # the trainer's {"name": ..., "depth": ..., ...}
        spec = dict(spec)
        name, model_kw = spec.pop("name", None), spec
    else:
        name, model_kw = spec, {}
    if not name or not isinstance(name, str):
        raise RunError(f"{ckpt_path}: the config names no 'model'; keys: {sorted(cfg)}")
    return name, model_kw


def _sizes(cfg: dict[str, Any], ckpt_path: Path) -> tuple[Any, Any]:
    try:
        in_channels = cfg.get("in_channels", 3)
        if "num_classes" in cfg:
            num_classes = cfg["num_classes"]
        elif cfg.get("classes"):
            num_classes = len(cfg["classes"]) if isinstance(cfg["classes"][0], str) else (
                max(int(c["id"]) for c in cfg["classes"]) + 1)
        else:
            raise RunError(f"{ckpt_path}: the config gives no 'num_classes'; keys: {sorted(cfg)}")
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise RunError(f"{ckpt_path}: 'classes' is malformed ({e})") from None
    return in_channels, num_classes


def load_run_model(project_root: Path | str | None, run: str | Path, which: str = "best"
                   ) -> LoadedModel:
    """The model of a run id, "latest", a run folder or a checkpoint file, ready to predict.

    which: "best" (default) or "last", for a run folder that holds both. Every failure is a
    RunError naming the file and what is wrong with it.
    """
    if Path(run).is_file():
        run_dir, ckpt_path = Path(run).parent, Path(run)
    else:
        run_dir = resolve_run_dir(project_root, run)
        ckpt_path = run_dir / f"{which}.pt"
        if not ckpt_path.is_file():
            ckpt_path = find_checkpoint(run_dir)
    card = read_model_card(run_dir)
    ckpt = _load_checkpoint(ckpt_path)
    cfg = {**ckpt["config"], **{k: v for k, v in card.items() if k in ("classes",
                                                                        "normalisation")}}
    name, model_kw = _model_name(cfg, card, ckpt_path)
    in_channels, num_classes = _sizes(cfg, ckpt_path)
    try:
        from segstudio.ml.models import build_model
    except ImportError as e:
        raise RunError(f"cannot rebuild model {name!r}: this build has no model registry "
                       f"(segstudio.ml.models: {e})") from None
    try:        # sizes are checked against sane bounds before any layer is allocated
        model = build_model(name, in_channels=in_channels, num_classes=num_classes, **model_kw)
    except (KeyError, ValueError, TypeError) as e:
        raise RunError(f"{ckpt_path}: cannot build the model its config describes: {e}") \
            from None
    in_channels, num_classes = int(in_channels), int(num_classes)
    state = ckpt["state_dict"]
    # saved from DataParallel
    if state and all(isinstance(k, str) and k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, KeyError, AttributeError) as e:
        raise RunError(f"{ckpt_path} does not fit model {name!r} with {in_channels} input "
                       f"channel(s) and {num_classes} classes: {e}") from None
    norm_raw = cfg.get("normalisation", cfg.get("normalization"))
    try:
        normalise = Normalisation.from_dict(norm_raw, in_channels=in_channels)
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        raise RunError(f"{run_dir}: normalisation: {e}") from None
    try:
        head = ObjectHead.from_dict(cfg.get("objects"))
    except (TypeError, ValueError) as e:
        raise RunError(f"{run_dir}: objects: {e}") from None
    if head is not None and head.num_outputs != num_classes:
        raise RunError(f"{run_dir}: the object boundary is output {head.boundary} but the "
                       f"model has {num_classes} outputs")
    shown = head.boundary if head is not None else num_classes
    classes = _classes(cfg.get("classes"), shown, _project_classes(project_root), run_dir)
    log.info("loaded run %s: %s, %d classes, from %s", run_dir.name, name, num_classes,
             ckpt_path.name)
    return LoadedModel(model.eval(), normalise, classes, run_dir, ckpt_path,
                       {**ckpt["config"], "in_channels": in_channels}, card, head)
