"""Checkpoints: `{"config": ..., "state_dict": ...}` files read with weights_only=True.

A checkpoint may come from anyone (a colleague, a download), so it is never unpickled as
arbitrary Python: torch's weights-only loader accepts tensors, numbers, strings and plain
containers and refuses anything else before any of its code can run. Rebuilding the model a
checkpoint describes is `segstudio.ml.runs.load_run_model`'s job (the one loader).
"""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path
from typing import Any

import torch

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


class NotACheckpointError(CheckpointError):
    """The file is not a PyTorch file at all (a text file, an image, a folder listing...)."""


_ZIP_MAGIC = b"PK\x03\x04"      # torch.save since 1.6
_PICKLE_MAGIC = b"\x80"          # the legacy format: a pickle, protocol 2 or later
# globals a weights-only pickle may name; anything else is an object that runs code when loaded
_SAFE_MODULES = ("torch", "collections", "numpy.core.multiarray", "numpy._core.multiarray")


def _pickled_code(path: Path) -> str | None:
    """The first non-weights global a pickle names ('builtins.print'), read without running it.

    Reads the pickle's opcodes (pickletools), never executes them; in a torch zip file the
    pickle is the archive's data.pkl.
    """
    import io
    import pickletools
    import zipfile

    strings: list[str] = []
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                name = next(n for n in z.namelist() if n.endswith("data.pkl"))
                f = io.BytesIO(z.read(name))
        else:
            f = path.open("rb")     # streamed: a legacy checkpoint may be large
        with f:
            for op, arg, _pos in pickletools.genops(f):
                if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
                    strings.append(str(arg))
                elif op.name in ("GLOBAL", "INST"):
                    module, _, name = str(arg).partition(" ")
                    if not module.startswith(_SAFE_MODULES):
                        return f"{module}.{name}"
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    module, name = strings[-2], strings[-1]
                    if not module.startswith(_SAFE_MODULES):
                        return f"{module}.{name}"
                elif op.name == "STOP":
                    break
    except Exception:          # a damaged pickle: whatever came before was checked
        return None
    return None


def _zip_without_pickle(path: Path) -> bool:
    """A readable zip archive with no data.pkl: some other zip (a .docx, an export) renamed."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            return not any(n.endswith("data.pkl") for n in z.namelist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return False            # unreadable: torch.load says it is damaged


def _first_line(e: BaseException) -> str:
    """The first sentence of an error: torch's zip errors go on for five more."""
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__).split(". ")[0].rstrip(".")


def load_checkpoint(path: Path | str) -> dict[str, Any]:
    """Read a checkpoint on the CPU with weights_only=True; refuses pickled code.

    Every failure is a CheckpointError saying which of three it is: not a PyTorch file at all,
    a file with code in it (refused), or a damaged file (cut short, corrupted).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        with path.open("rb") as f:
            head = f.read(4)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot be read ({e.strerror or e})") from None
    if not head:
        raise CheckpointError(f"{path} is damaged (an empty file): copy it again, or train "
                              f"again")
    if not (head == _ZIP_MAGIC or head.startswith(_PICKLE_MAGIC)):
        raise NotACheckpointError(f"{path} is not a SegStudio checkpoint (not a PyTorch file)")
    if head == _ZIP_MAGIC and _zip_without_pickle(path):
        raise NotACheckpointError(f"{path} is not a SegStudio checkpoint (a zip archive, not a "
                                  f"PyTorch file)")
    refused = (f"{path} contains code (a pickled object); refused for safety{{}}. Only load "
               f"checkpoints written by SegStudio or from a source you trust")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        text = str(e)
        glob = _pickled_code(path)
        if glob is None and "Unsupported global" in text:
            glob = next((line.split("GLOBAL", 1)[1].split()[0] for line in text.splitlines()
                         if "Unsupported global" in line and "GLOBAL" in line), "")
        if glob is not None:
            named = f": it names {glob}, which would run on loading" if glob else ""
            raise CheckpointError(refused.format(named)) from None
        raise CheckpointError(f"{path} is damaged (cut short or corrupted: "
                              f"{_first_line(e)}): copy it again, or train again") from None
    except Exception as e:      # untrusted bytes: any failure of the reader means "damaged"
        raise CheckpointError(f"{path} is damaged (cut short or corrupted: "
                              f"{_first_line(e)}): copy it again, or train again") from None
    if not isinstance(data, dict) or "state_dict" not in data or "config" not in data:
        raise CheckpointError(f"{path}: not a SegStudio checkpoint (no 'config'/'state_dict')")
    if not isinstance(data["config"], dict) or not isinstance(data["state_dict"], dict):
        raise CheckpointError(f"{path}: not a SegStudio checkpoint ('config' and 'state_dict' "
                              f"must be mappings)")
    version = data.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError(f"{path}: not a SegStudio checkpoint (version {version!r})")
    if version > CHECKPOINT_VERSION:
        raise CheckpointError(f"{path}: written by a newer SegStudio (checkpoint version "
                              f"{version}); update SegStudio to load it")
    return data


def resolve_checkpoint(path: Path | str, which: str = "best") -> Path:
    """A run folder (-> its best.pt or last.pt) or a checkpoint file."""
    path = Path(path)
    if path.is_dir():
        for name in (f"{which}.pt", "best.pt", "last.pt"):
            if (path / name).is_file():
                return path / name
        raise CheckpointError(f"{path}: no best.pt or last.pt in this run folder")
    return path
