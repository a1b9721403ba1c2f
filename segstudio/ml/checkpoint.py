"""Checkpoints: `{"config": ..., "state_dict": ...}` files read with weights_only=True.

A checkpoint may come from anyone (a colleague, a download), so it is never unpickled as
arbitrary Python: torch's weights-only loader accepts tensors, numbers, strings and plain
containers and refuses anything else before any of its code can run.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from segstudio.ml.models import build_model

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "segstudio-checkpoint"
CHECKPOINT_VERSION = 1
MODEL_CARD = "model_card.json"


class CheckpointError(Exception):
    """A checkpoint that cannot or must not be loaded; the message says why in plain words."""


def save_checkpoint(path: Path | str, config: dict[str, Any], state_dict: dict[str, Any],
                    **extra: Any) -> None:
    """Write atomically (temp file + rename), so a crash never leaves half a checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
               "config": config, "state_dict": state_dict, **extra}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path | str) -> dict[str, Any]:
    """Read a checkpoint on the CPU with weights_only=True; refuses pickled code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        detail = next((line.split("error:", 1)[1].strip() for line in str(e).splitlines()
                       if "WeightsUnpickler error:" in line), "")
        detail = detail or next((line.strip() for line in str(e).splitlines()
                                 if "Unsupported" in line), "")
        if "global" in detail.lower():
            raise CheckpointError(
                f"{path}: refused to load: the file holds Python objects other than weights and "
                f"settings ({detail.split('.')[0]}), which could run code on this computer. "
                f"Only load checkpoints written by SegStudio or from a source you trust") from None
        raise CheckpointError(f"{path}: not a readable checkpoint: damaged, or not a weights "
                              f"file ({detail or 'unpickling failed'})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable checkpoint ({e})") from None
    if not isinstance(data, dict) or "state_dict" not in data or "config" not in data:
        raise CheckpointError(f"{path}: not a SegStudio checkpoint (no 'config'/'state_dict')")
    if int(data.get("version", 1)) > CHECKPOINT_VERSION:
        raise CheckpointError(f"{path}: written by a newer SegStudio (checkpoint version "
                              f"{data['version']}); update SegStudio to load it")
    return data


@dataclass
class LoadedModel:
    """A model ready for inference plus what prediction needs to prepare its input."""

    model: nn.Module
    config: dict[str, Any]        # the checkpoint's config (see train.checkpoint_config)
    card: dict[str, Any] | None   # model_card.json beside the checkpoint, when present

    @property
    def in_channels(self) -> int:
        return int(self.config["in_channels"])

    @property
    def normalisation(self) -> dict[str, Any]:
        return dict(self.config["normalisation"])

    @property
    def classes(self) -> list[dict[str, Any]]:
        return list(self.config["classes"])


def resolve_checkpoint(path: Path | str, which: str = "best") -> Path:
    """A run folder (-> its best.pt or last.pt) or a checkpoint file."""
    path = Path(path)
    if path.is_dir():
        for name in (f"{which}.pt", "best.pt", "last.pt"):
            if (path / name).is_file():
                return path / name
        raise CheckpointError(f"{path}: no best.pt or last.pt in this run folder")
    return path


def load_model(path: Path | str, which: str = "best") -> LoadedModel:
    """Build the model a checkpoint (or run folder) describes and load its weights, in eval mode."""
    ckpt_path = resolve_checkpoint(path, which)
    data = load_checkpoint(ckpt_path)
    cfg = data["config"]
    try:
        spec = dict(cfg["model"])
        name = spec.pop("name")
        model = build_model(name, int(cfg["in_channels"]), int(cfg["num_classes"]), **spec)
        model.load_state_dict(data["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{ckpt_path}: the weights do not fit the model it names ({e})") \
            from None
    model.eval()
    card = None
    card_path = ckpt_path.parent / MODEL_CARD
    if card_path.is_file():
        try:
            card = json.loads(card_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            log.warning("%s: model card unreadable (%s)", card_path, e)
    return LoadedModel(model, cfg, card)
