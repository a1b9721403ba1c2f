"""One image of a project as project.json lists it, a series (volume) of such images, and
images found but not yet added.

A volume (a DICOM series, a 3-D NIfTI file, one time point of a 4-D NIfTI file) is a
`SeriesRecord` and one `ImageEntry` per slice, each with the series' id and its place along
the slice normal (`slice`, 0-based). Every slice keeps its own mask, journal and status, so
painting, autosave, training and prediction work on slices as on any image; the list, the
slice slider and the per-series exports put them back together.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

STATUSES = ("unlabeled", "partly", "fully", "predicted", "reviewed")


@dataclass
class ImageScan:
    """Image files found by `Project.scan_images`, not yet in the project."""

    # (path as stored in the manifest, resolved path, frames), resolved on the worker
    found: list[tuple[str, str, list[int | None]]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    # what was odd about volumes that were added anyway (a gap, uneven spacing): not skipped
    notes: list[str] = field(default_factory=list)
    # volumes: (record with a proposed id, [(stored path, resolved path, frame, slice index)])
    series: list[tuple[SeriesRecord, list[tuple[str, str, int | None, int]]]] = \
        field(default_factory=list)


@dataclass(frozen=True)
class ImageEntry:
    id: str
    path: str                   # relative to the project root, or absolute if outside it
    frame: int | None = None    # page / slice / frame inside a multi-item file
    split: str = "train"
    labelled: float = 0.0       # fraction of pixels with a class (not 255), cached
    predicted: bool = False
    reviewed: bool = False
    series: str | None = None   # the SeriesRecord's id, for a slice of a volume
    slice: int | None = None    # its place in the series (0 = first along the slice normal)

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
        if self.series is not None and self.slice is not None:
            return f"{self.series} [slice {self.slice + 1}]"
        name = self.path.replace("\\", "/").rsplit("/", 1)[-1]    # Path(...).name, 5x cheaper
        return name if self.frame is None else f"{name} [{self.frame}]"


def entry_dict(e: ImageEntry) -> dict[str, Any]:
    """The manifest record (not dataclasses.asdict: it deep-copies, ~10x slower)."""
    d = {"id": e.id, "path": e.path, "frame": e.frame, "split": e.split, "labelled": e.labelled,
         "predicted": e.predicted, "reviewed": e.reviewed}
    if e.frame is None:
        del d["frame"]
    if e.series is not None:
        d["series"], d["slice"] = e.series, e.slice
    return d


@dataclass(frozen=True)
class SeriesRecord:
    """A volume as project.json keeps it: what the list shows and what the exports need."""

    id: str
    uid: str                    # SeriesInstanceUID, or "nifti:<file>" (io.series.Series.uid)
    kind: str                   # "dicom" or "nifti"
    modality: str | None
    description: str
    slices: int
    rows: int
    cols: int
    spacing: tuple[float, float, float]      # row mm, column mm, slice mm
    affine_lps: tuple[float, ...]            # 16 numbers, row-major: voxel (col, row, slice) -> mm
    problems: tuple[str, ...] = ()
    # (slope, intercept) per slice where the file's own header does not give them: the frames
    # of an Enhanced (multi-frame) DICOM file carry theirs in per-frame functional groups
    rescale: tuple[tuple[float, float], ...] | None = None
    # its index in a 4-D NIfTI file (each time point / echo is a series of its own); None for
    # every other volume. A record read without it (an older project.json) takes it from the
    # uid, "nifti:<file>#<volume>", where io.series keeps it too.
    volume: int | None = None

    def __post_init__(self) -> None:
        if self.volume is None and self.kind == "nifti":
            _file, hash_, tail = self.uid.rpartition("#")
            if hash_ and tail.isdigit():
                object.__setattr__(self, "volume", int(tail))

    @property
    def affine(self) -> np.ndarray:
        """4 x 4: voxel (column, row, slice, 1) -> patient LPS mm."""
        return np.asarray(self.affine_lps, np.float64).reshape(4, 4)

    @property
    def pixel_mm(self) -> float:
        """One in-plane pixel in mm (the mean of the row and column spacing)."""
        return (self.spacing[0] + self.spacing[1]) / 2

    @property
    def summary(self) -> str:
        """'CT, 40 slices, 0.7 x 0.7 x 2.5 mm'."""
        r, c, s = self.spacing
        which = ""
        if self.volume is not None:     # "volume 2 of 5", as io.series describes it
            _name, dot, tail = self.description.rpartition(" · ")
            which = f"{tail}, " if dot and tail.startswith("volume ") \
                else f"volume {self.volume + 1}, "
        return (f"{self.modality or self.kind.upper()}, {which}{self.slices} slices, "
                f"{c:.3g} x {r:.3g} x {s:.3g} mm")


SERIES_KEYS = {"id", "uid", "kind", "modality", "description", "slices", "rows", "cols",
               "spacing", "affine_lps", "problems", "rescale", "volume"}


def series_dict(r: SeriesRecord) -> dict[str, Any]:
    return {"id": r.id, "uid": r.uid, "kind": r.kind, "modality": r.modality,
            "description": r.description, "slices": r.slices, "rows": r.rows, "cols": r.cols,
            "spacing": list(r.spacing), "affine_lps": list(r.affine_lps),
            "problems": list(r.problems),
            **({"rescale": [list(x) for x in r.rescale]} if r.rescale is not None else {}),
            **({"volume": r.volume} if r.volume is not None else {})}


def series_status(slices: list[ImageEntry]) -> str:
    """A volume's status in the list: reviewed / fully labelled when every slice is, partly
    labelled when any slice has labels, else predicted or unlabeled."""
    if not slices:
        return "unlabeled"
    if all(e.reviewed for e in slices):
        return "reviewed"
    if all(e.labelled >= 1.0 or e.reviewed for e in slices):
        return "fully"
    if any(e.labelled > 0.0 for e in slices):
        return "partly"
    return "predicted" if any(e.predicted for e in slices) else "unlabeled"


def list_rows(entries: list[ImageEntry]) -> list[tuple[str, list[ImageEntry]]]:
    """The image list's rows: (key, entries): an image alone, or a series (key = its id) with
    its slices in order, in the place of its first slice."""
    rows: list[tuple[str, list[ImageEntry]]] = []
    series: dict[str, list[ImageEntry]] = {}
    for e in entries:
        if e.series is None:
            rows.append((e.id, [e]))
        elif e.series in series:
            series[e.series].append(e)
        else:
            series[e.series] = [e]
            rows.append((e.series, series[e.series]))
    for slices in series.values():
        slices.sort(key=lambda e: e.slice or 0)
    return rows


def row_faces(entries: list[ImageEntry]) -> list[ImageEntry]:
    """The image each list row shows: itself, or a volume's middle slice."""
    return [members[len(members) // 2] for _key, members in list_rows(entries)]
