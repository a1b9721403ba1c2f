"""The contract between the import driver (`io.imports`) and the format readers (`io.formats.readers`).

A reader is `plan(project, src, fill, options, found, cancel) -> (plans, source class names)`:
it reads and checks everything, writes nothing, and returns one `Planned` per image whose
`build(class_of)` makes the mask once the driver has resolved the class names. It registers
itself with `@register_reader` (io.formats.base).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from segstudio.core.jobs import CancelToken
from segstudio.io.formats import FormatError
from segstudio.io.project import ImageEntry, Project

__all__ = ["AnnotationImportError", "Found", "FormatError", "ImportOptions", "Matcher", "Planned",
           "Reader", "check_shape", "image_shape", "list_files", "unmatched"]


class AnnotationImportError(Exception):
    """An import refused before anything was written; the message names the file and place."""


@dataclass(frozen=True)
class ImportOptions:
    format: str = "folder"
    mapping: Mapping[str, str] | None = None   # source class name (or raw mask value) -> project name
    new_classes: bool = False                  # unknown names become new classes (else an error)
    unannotated: str = "background"            # pixels no shape covers: "background" or "ignore"
    skip_unmatched: bool = False               # files for images not in the project: skip, not fail
    # objects (io.formats.instances): the class an instance label image's objects belong to
    # (None: the project's one object class, else its one class besides background, else
    # "object"); as_objects: classes of imported COCO / labelme annotations become object
    # classes (one object per annotation), as instance images' classes always do
    object_class: str | None = None
    as_objects: bool = False


@dataclass
class Found:
    """What the readers learn besides the plans, for messages and for the class mapping."""

    skipped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    raw_ids: dict[str, str] = field(default_factory=dict)      # "7" -> source name of value 7
    unnamed: dict[str, list[int]] = field(default_factory=dict)   # file -> values with no name
    unnamed_names: set[str] = field(default_factory=set)       # the names given to those ("class 7")
    listing: str | None = None                                 # where named values were listed
    object_names: set[str] = field(default_factory=set)        # source classes made object classes


@dataclass
class Planned:
    entry: ImageEntry
    source: str                                # file (and place) it came from, for messages
    build: Callable[[dict[str, int]], np.ndarray]   # class_of (source name -> id) -> mask
    # class_of -> uint32 object ids (0 = none), called after build; the driver keeps them only
    # on pixels of object classes and renumbers them 1..n. None: the source has no objects
    objects: Callable[[dict[str, int]], np.ndarray] | None = None


class Matcher:
    """Finds the project image a file is for: by id, file name, or file stem."""

    def __init__(self, project: Project) -> None:
        self._index: dict[str, list[ImageEntry]] = {}
        for e in project.images:
            keys = {e.id}
            if e.frame is None:
                p = Path(e.path)
                keys |= {p.name, p.name.split(".")[0], p.stem}
            for k in keys:
                self._index.setdefault(k.casefold(), []).append(e)

    def find(self, *keys: str) -> ImageEntry | None:
        for k in keys:
            hits = self._index.get(k.casefold(), [])
            if len(hits) == 1:
                return hits[0]
        return None


class Reader(Protocol):
    """What a registered import reader is."""

    def __call__(self, project: Project, src: Path, fill: int, options: ImportOptions,
                 found: Found, cancel: CancelToken) -> tuple[list[Planned], set[str]]: ...


def unmatched(what: str, options: ImportOptions, found: Found) -> None:
    msg = f"{what}: matches no image of the project (by id, file name or stem)"
    if not options.skip_unmatched:
        raise AnnotationImportError(msg + "; allow skipping unmatched files to import the rest")
    found.skipped.append(msg)


def image_shape(project: Project, entry: ImageEntry) -> tuple[int, int]:
    info = project.probe(entry)
    return info.height, info.width


def list_files(src: Path, exts: tuple[str, ...], skip: tuple[str, ...] = ()) -> list[Path]:
    return sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in exts
                  and p.name not in skip and not p.name.startswith("."))


def check_shape(path: Path | str, got: tuple[int, int], entry: ImageEntry,
                 shape: tuple[int, int], what: str = "mask") -> None:
    if tuple(got) != tuple(shape):
        raise FormatError(f"{path}: {what} is {got[1]} x {got[0]} but image "
                          f"'{entry.display_name}' is {shape[1]} x {shape[0]} (width x height)")
