"""The contract between the export driver and the format writers, and the format registries.

`io.export` (the driver: plan, threads, temporary folder) and the writers in
`io.formats.writers` both import this module and never each other. A writer class declares
itself next to its code with `@register_writer("coco", label="COCO", ...)`; an import reader
(in `io.formats.readers`) with `@register_reader`. The CLI's `--format` choices and help, the
Export/Import dialogs and the README's lists (checked by tests/io/test_format_registry.py)
all read these two registries.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from segstudio.core.classes import BACKGROUND, UNLABELED
from segstudio.io.images import ImageInfo, suffix_of
from segstudio.io.masks import read_mask_file
from segstudio.io.project import SPLITS, ImageEntry, Project

log = logging.getLogger(__name__)

IMAGE_MODES = ("copy", "link", "none")
# "ignore": 255; "background": 0; "label": the value after the last exported class, declared
# in classes.json (nnU-Net's rule for its ignore label: the highest value, consecutive)
UNLABELED_MODES = ("ignore", "background", "label")
SPLIT_MODES = ("project", "ratios")
COCO_MODES = ("polygon", "rle")


# -- the registries ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Format:
    """One export or import format, as every list of formats shows it."""

    name: str                        # "coco": the --format value, ExportOptions.format, export.json
    label: str                       # "COCO": short, for help lines ("PNG, COCO, YOLO, ...")
    description: str                 # the dialogs' format list: "COCO JSON (polygons or RLE)"
    options: tuple[str, ...] = ()    # option fields only this format reads ("coco_mode")
    make: Callable[..., Any] = field(default=None, compare=False)   # writer class / reader function
    file_filter: str | None = None   # import: Browse… picks a file of this filter (None: a folder)
    # export: can its masks hold "unlabeled" (255 or a declared ignore label)? COCO and YOLO
    # cannot: an object list has no "not labelled" area, so unlabeled pixels read as background
    keeps_unlabeled: bool = True


WRITERS: dict[str, Format] = {}      # filled when io.formats.writers is imported (io.export does)
READERS: dict[str, Format] = {}      # filled when io.formats.readers is imported (io.imports does)


def _register(registry: dict[str, Format], name: str, label: str, description: str,
              options: tuple[str, ...], file_filter: str | None, keeps_unlabeled: bool = True):
    def add(obj):
        if name in registry and registry[name].make is not obj:
            raise ValueError(f"format {name!r} is registered twice "
                             f"({registry[name].make.__qualname__} and {obj.__qualname__})")
        registry[name] = Format(name, label, description, tuple(options), obj, file_filter,
                                keeps_unlabeled)
        return obj
    return add


def register_writer(name: str, *, label: str, description: str, options: tuple[str, ...] = (),
                    keeps_unlabeled: bool = True):
    """Class decorator: `name` is exported by this Writer class; `keeps_unlabeled=False` for
    formats whose files cannot say "unlabeled" (exports warn about partly labelled images)."""
    return _register(WRITERS, name, label, description, options, None, keeps_unlabeled)


def register_reader(name: str, *, label: str, description: str, options: tuple[str, ...] = (),
                    file_filter: str | None = None):
    """Function decorator: masks in format `name` are imported by this reader."""
    return _register(READERS, name, label, description, options, file_filter)


def labels(registry: dict[str, Format]) -> str:
    """'PNG, COCO, YOLO, ...' in registration order, for help lines."""
    return ", ".join(f.label for f in registry.values())


def using(registry: dict[str, Format], option: str) -> list[Format]:
    """The formats that read `option` (e.g. which imports use 'unannotated')."""
    return [f for f in registry.values() if option in f.options]


# -- the export contract ---------------------------------------------------------------------
class ExportError(Exception):
    """An export that cannot start or finish; the message says why."""


class Skip(Exception):
    """This item is left out of the export; the message says why."""


@dataclass(frozen=True)
class ExportOptions:
    """What to export and how; the GUI edits a copy with `dataclasses.replace`."""

    format: str = "png"
    split: str = "project"                   # "project": each image's own; "ratios": shuffled
    ratios: tuple[float, float, float] = (0.8, 0.2, 0.0)   # train, val, test (split="ratios")
    seed: int = 0
    images: str = "copy"                     # "copy", "link" (symlink) or "none" (masks only)
    unlabeled: str = "ignore"                # "ignore": 255; "background": 0; "label": n + 1
    only_fully_labelled: bool = False        # skip images with any unlabeled pixel
    include_unmasked: bool = False           # also images that have no mask at all
    classes: tuple[str, ...] | None = None   # class names to keep (None: all); others -> background
    renumber: bool = True                    # kept classes become 1..n (background stays 0)
    coco_mode: str = "polygon"               # "polygon" or "rle"
    overwrite: bool = False                  # replace `out` if it exists (only once complete)
    workers: int = 0                         # threads; 0 = min(4, cpu count)

    def check(self) -> None:
        """Raises ExportError naming the first unknown value (formats: those registered)."""
        for name, value, known in (("format", self.format, WRITERS),
                                   ("images", self.images, IMAGE_MODES),
                                   ("unlabeled", self.unlabeled, UNLABELED_MODES),
                                   ("split", self.split, SPLIT_MODES),
                                   ("coco_mode", self.coco_mode, COCO_MODES)):
            if value not in known:
                raise ExportError(f"unknown {name} {value!r}; known: {list(known)}")
        if self.split == "ratios":
            r = self.ratios
            if len(r) != 3 or any(v < 0 for v in r) or sum(r) <= 0:
                raise ExportError(f"split ratios must be three non-negative numbers (train, val, "
                                  f"test) with a positive sum, got {r}")


@dataclass(frozen=True)
class ExportedClass:
    id: int            # id in the exported masks
    name: str
    color: str
    source_id: int     # id in the project


@dataclass(frozen=True)
class ClassPlan:
    lut: np.ndarray                  # 256 uint8: project id -> exported id
    classes: list[ExportedClass]     # background first when present
    unlabeled_value: int
    objects: frozenset[int] = frozenset()   # exported ids of the classes that hold objects

    @property
    def foreground(self) -> list[ExportedClass]:
        return [c for c in self.classes if c.id != BACKGROUND]


@dataclass
class Item:
    """One unit of work: an image, or every slice of one volume file (NIfTI, DICOM-SEG)."""

    key: str
    split: str
    entries: list[ImageEntry]


class Writer(Protocol):
    """What a registered writer class provides; one instance per export."""

    def items(self, ctx: ExportContext, entries: list[ImageEntry],
              splits: dict[str, str]) -> list[Item]:
        """The units of work, in order (runs once, on the calling thread; may raise ExportError)."""

    def write_item(self, ctx: ExportContext, item: Item) -> Any:
        """Writes one item's own files (on a worker thread); raises Skip to leave it out."""

    def finish(self, ctx: ExportContext, results: list[tuple[Item, Any]]) -> None:
        """Indexes, JSON, data.yaml: once, on the calling thread, after every item."""


class ExportContext:
    """What the format writers share: project, options, classes and the temporary root."""

    def __init__(self, project: Project, options: ExportOptions, plan: ClassPlan, root: Path,
                 final: Path) -> None:
        self.project = project
        self.options = options
        self.plan = plan
        self.root = root            # temporary folder being written
        self.final = final          # where it will be once complete
        self.notes: list[str] = []   # items a writer left out while planning
        self._made: set[Path] = set()

    def folder(self, *parts: str) -> Path:
        d = self.root.joinpath(*parts)
        if d not in self._made:
            d.mkdir(parents=True, exist_ok=True)
            self._made.add(d)
        return d

    def image_folder(self, *parts: str) -> Path:
        """Like folder(), but made only when images are written (not for images="none")."""
        if self.options.images == "none":
            return self.root.joinpath(*parts)
        return self.folder(*parts)

    def info(self, entry: ImageEntry) -> ImageInfo:
        return self.project.probe(entry)

    def mask(self, entry: ImageEntry, info: ImageInfo) -> np.ndarray:
        """The exported mask of an entry: class ids remapped, unlabeled as chosen."""
        shape = (info.height, info.width)
        store = self.project.masks
        if not store.has_mask(entry.id):
            raw = np.full(shape, UNLABELED, np.uint8)
        elif store.journal_path(entry.id).exists():
            raw = self.project.load_mask(entry, shape)
        else:
            # No journal: the PNG is replaced atomically, so it can be read without the
            # store's lock, which would otherwise serialise every decode on one thread.
            raw = read_mask_file(store.png_path(entry.id), shape)
        if self.options.only_fully_labelled and (raw == UNLABELED).any():
            raise Skip(f"{entry.display_name}: has unlabeled pixels (only fully labelled "
                       f"images were asked for)")
        import cv2

        return cv2.LUT(raw, self.plan.lut)        # ~4x faster than numpy fancy indexing

    def objects(self, entry: ImageEntry, info: ImageInfo, mask: np.ndarray) -> np.ndarray | None:
        """The entry's object ids (uint32, 1..n) on the exported object classes of `mask` (the
        exported mask), or None when no exported class holds objects in this image."""
        if not self.plan.objects or not self.project.masks.has_objects(entry.id):
            return None
        from segstudio.io.formats.instances import renumber

        ids = self.project.load_objects(entry, (info.height, info.width))
        keep = np.zeros(256, bool)
        keep[list(self.plan.objects)] = True
        ids = np.where(keep[mask], ids, 0)
        return renumber(ids)[0] if ids.any() else None

    def put_image(self, entry: ImageEntry, info: ImageInfo, dest_dir: Path,
                  jpeg: bool = False) -> str:
        """Copy, link or convert one image into dest_dir; returns its file name there."""
        src = self.project.image_path(entry)
        ext = suffix_of(src)
        whole_file = entry.frame is None and info.kind in ("raster", "tiff")
        if jpeg:
            whole_file = whole_file and ext in (".jpg", ".jpeg")
            ext = ".jpg"
        elif not whole_file:
            ext = ".tif" if info.dtype.startswith("float") else ".png"
        name = f"{entry.id}{ext}"
        if self.options.images == "none":
            return name
        dest = dest_dir / name
        if whole_file:
            place_file(src, dest, self.options.images)
        else:
            write_frame(self.project.read_image(entry).data, dest)
        return name

    def put_source_file(self, entry: ImageEntry, dest_dir: Path, stem: str) -> str:
        """Copy or link a whole source file (a volume) as `<stem><its suffix>`."""
        src = self.project.image_path(entry)
        name = f"{stem}{suffix_of(src)}"
        if self.options.images != "none":
            place_file(src, dest_dir / name, self.options.images)
        return name


def place_file(src: Path, dest: Path, mode: str) -> None:
    """Copy or symlink; where symlinks are not allowed, a hard link, else a copy."""
    if mode == "link":
        try:
            os.symlink(src.resolve(), dest)
            return
        except OSError:
            try:
                os.link(src, dest)
                return
            except OSError:
                log.warning("cannot link %s; copying it instead", src)
    shutil.copy2(src, dest)


def to_uint8(data: np.ndarray) -> np.ndarray:
    if data.dtype == np.uint8:
        return data
    lo, hi = float(np.min(data)), float(np.max(data))
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    return ((data.astype(np.float32) - lo) * scale).astype(np.uint8)


def write_frame(data: np.ndarray, dest: Path) -> None:
    """One decoded frame as a file: PNG (8/16-bit), TIFF (float) or JPEG (8-bit, by suffix)."""
    import cv2

    if dest.suffix == ".tif":
        import tifffile

        tifffile.imwrite(dest, np.asarray(data, np.float32))
        return
    arr = np.asarray(data)
    if dest.suffix == ".jpg" or arr.dtype not in (np.uint8, np.uint16):
        arr = to_uint8(arr)
    if arr.ndim == 3 and arr.shape[2] == 4:
        # JPEG has no alpha channel
        code = cv2.COLOR_RGBA2BGR if dest.suffix == ".jpg" else cv2.COLOR_RGBA2BGRA
        arr = cv2.cvtColor(arr, code)
    elif arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(dest.suffix, arr)
    if not ok:
        raise OSError(f"could not encode {dest.name}")
    dest.write_bytes(buf.tobytes())


def iter_split_names(items: Iterable[Item]) -> list[str]:
    present = {it.split for it in items}
    return [s for s in SPLITS if s in present]
