"""One image of a project as project.json lists it, and images found but not yet added."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STATUSES = ("unlabeled", "partly", "fully", "predicted", "reviewed")


@dataclass
class ImageScan:
    """Image files found by `Project.scan_images`, not yet in the project."""

    # (path as stored in the manifest, resolved path, frames), resolved on the worker
    found: list[tuple[str, str, list[int | None]]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ImageEntry:
    id: str
    path: str                   # relative to the project root, or absolute if outside it
    frame: int | None = None    # page / slice / frame inside a multi-item file
    split: str = "train"
    labelled: float = 0.0       # fraction of pixels with a class (not 255), cached
    predicted: bool = False
    reviewed: bool = False

    @property
    def status(self) -> str:
        if self.reviewed:
            return "reviewed"
        if self.labelled >= 1.0:
            return "fully"
        if self.labelled > 0.0:
            return "partly"
        return "predicted" if self.predicted else "unlabeled"

    @property
    def display_name(self) -> str:
        name = Path(self.path).name
        return name if self.frame is None else f"{name} [{self.frame}]"


def entry_dict(e: ImageEntry) -> dict[str, Any]:
    """The manifest record (not dataclasses.asdict: it deep-copies, ~10x slower)."""
    d = {"id": e.id, "path": e.path, "frame": e.frame, "split": e.split, "labelled": e.labelled,
         "predicted": e.predicted, "reviewed": e.reviewed}
    if e.frame is None:
        del d["frame"]
    return d
