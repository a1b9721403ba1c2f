"""Folders that commands write: never the project itself, never a folder that is not ours.

Every command that writes or replaces a folder (dataset export, model export, predict) asks
`check_output_folder` first, so `--overwrite` can only ever replace an earlier output of the
same kind, recognised by the marker file that output always carries.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path


class OutputFolderError(Exception):
    """The output folder is refused; the message says why and what to choose instead."""


def _is_output_of_ours(folder: Path, marker: str, key: str | None) -> bool:
    try:
        data = json.loads((folder / marker).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and (key is None or key in data)


def check_output_folder(out: Path | str, *, protect: list[Path], overwrite: bool, marker: str,
                        marker_key: str | None, what: str, replaces: bool = True) -> Path:
    """The resolved `out`, or OutputFolderError.

    protect: project folders (or run folders) that must survive: `out` may be neither inside
    them nor above them. marker: the file every output of this kind holds (`export.json`);
    with `overwrite`, only a folder holding it (or an empty one) is replaced. `replaces`:
    False for commands that add files to a folder instead of replacing it (predict).
    """
    out = Path(out).expanduser().resolve()
    for root in protect:
        root = Path(root).resolve()
        if out == root or root in out.parents:
            raise OutputFolderError(
                f"{out} is inside {root}; a {what} must go to a folder outside it, or it "
                f"could overwrite the files it is made from")
        if out in root.parents and (replaces or overwrite):
            raise OutputFolderError(
                f"{out} contains {root}; writing the {what} there could delete it. "
                f"Choose a new folder, e.g. {out / (root.name + '-' + what.replace(' ', '-'))}")
    if out.exists():
        if not out.is_dir():
            raise OutputFolderError(f"{out} is a file; choose a folder for the {what}")
        if (out / "project.json").exists():
            raise OutputFolderError(f"{out} holds a SegStudio project; it is never replaced by "
                                    f"a {what}. Choose another folder")
        empty = not any(out.iterdir())
        if replaces and not empty:
            if not overwrite:
                raise OutputFolderError(f"{out} already exists; choose a new folder or allow "
                                        f"overwriting an earlier {what}")
            if not _is_output_of_ours(out, marker, marker_key):
                raise OutputFolderError(
                    f"{out} is not an earlier SegStudio {what} (it has no {marker}); only those "
                    f"are replaced when overwriting. Choose a new or empty folder, or delete "
                    f"this one yourself if you really mean it")
    return out


def swap_into_place(tmp: Path, out: Path) -> None:
    """Put a finished output folder where `out` is: renames only, so `out` is always either the
    old output or the new one, never half of each."""
    if out.exists():
        old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)
