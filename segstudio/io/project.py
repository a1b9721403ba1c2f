"""A project: a folder with a versioned manifest (project.json), masks, runs and view state.

project.json holds relative paths where images live inside the project (absolute ones for
images left where they are outside it), the classes, the image list with each image's split,
and settings. It is validated on open: unknown keys, a newer format or broken JSON are
refused with a message that says which key or line. View state lives apart in
`.segstudio/view.json` so panning never rewrites the manifest.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import unicodedata
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from segstudio.core.classes import (BACKGROUND, UNLABELED, ClassError, LabelClass, clean_classes,
                                    default_color, next_class_id, validate_classes)
from segstudio.io.atomic import atomic_write_json, remove_stale_temporaries
from segstudio.io.images import (DEFAULT_MAX_PIXELS, ImageInfo, ImageReadError, LoadedImage,
                                 is_supported, probe, read_image)
from segstudio.io.masks import MaskStore

log = logging.getLogger(__name__)

MANIFEST = "project.json"
FORMAT = "segstudio-project"
FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
STATUSES = ("unlabeled", "partly", "fully", "predicted", "reviewed")

_TOP_KEYS = {"format", "version", "name", "classes", "images", "settings"}
_CLASS_KEYS = {"id", "name", "color", "visible"}
_IMAGE_KEYS = {"id", "path", "frame", "split", "labelled", "predicted", "reviewed"}
DEFAULT_SETTINGS: dict[str, Any] = {"max_pixels": DEFAULT_MAX_PIXELS, "val_fraction": 0.2}


class ProjectError(Exception):
    """A project that cannot be opened or saved; the message says what and where."""


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


def _slug(text: str) -> str:
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")
    return text[:80] or "image"


def _split_for(image_id: str, val_fraction: float) -> str:
    """Deterministic split from the id, so adding images never reshuffles the old ones."""
    h = int(hashlib.sha1(image_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "val" if h < val_fraction else "train"


def _check_keys(obj: Any, known: set[str], where: str) -> None:
    if not isinstance(obj, dict):
        raise ProjectError(f"{where} must be an object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - known)
    if unknown:
        raise ProjectError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")


class Project:
    """A project folder. Not thread-safe: change it on the GUI thread (or one CLI thread)."""

    def __init__(self, root: Path, name: str, classes: list[LabelClass],
                 images: list[ImageEntry], settings: dict[str, Any]) -> None:
        self.root = Path(root).resolve()
        self.name = name
        self.classes = classes
        self.images = images
        self.settings = {**DEFAULT_SETTINGS, **settings}
        self.masks = MaskStore(self.root / "masks")
        self.problems: list[str] = []   # what was skipped on open or add, for the user to read

    # -- create / open / save --------------------------------------------------------------
    @classmethod
    def create(cls, root: Path | str, *, name: str | None = None,
               classes: list[LabelClass] | None = None) -> Project:
        root = Path(root)
        if (root / MANIFEST).exists():
            raise ProjectError(f"{root} already holds a project ({MANIFEST}); open it instead")
        classes = classes or [LabelClass(BACKGROUND, "background", default_color(0)),
                              LabelClass(1, "foreground", default_color(1))]
        try:
            validate_classes(classes)
        except ClassError as e:
            raise ProjectError(f"cannot create a project in {root}: {e}") from None
        root.mkdir(parents=True, exist_ok=True)
        project = cls(root, name or root.resolve().name, classes, [], {})
        project.save()
        return project

    @classmethod
    def from_folder(cls, images_dir: Path | str, root: Path | str | None = None, *,
                    copy: bool = False, classes: list[LabelClass] | None = None) -> Project:
        """A new project over a folder of images (the project folder defaults to inside it)."""
        images_dir = Path(images_dir)
        if not images_dir.is_dir():
            raise ProjectError(f"{images_dir} is not a folder")
        root = Path(root) if root is not None else images_dir / "segstudio-project"
        project = cls.create(root, name=images_dir.resolve().name, classes=classes)
        files = sorted(p for p in images_dir.rglob("*") if p.is_file() and is_supported(p)
                       and root.resolve() not in p.resolve().parents)
        project.add_images(files, copy=copy)
        return project

    @classmethod
    def open(cls, root: Path | str) -> Project:
        root = Path(root)
        if root.is_file() and root.name == MANIFEST:
            root = root.parent
        path = root / MANIFEST
        if not path.exists():
            raise ProjectError(f"{root} is not a SegStudio project: {MANIFEST} not found")
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ProjectError(f"{path} is not valid JSON (line {e.lineno}, column {e.colno}: "
                               f"{e.msg}); the file was left as it is") from None
        except UnicodeDecodeError:
            raise ProjectError(f"{path} is not UTF-8 text") from None
        project = cls._from_manifest(root, raw, path)
        remove_stale_temporaries(root)
        project._check_files()
        return project

    @classmethod
    def _from_manifest(cls, root: Path, raw: Any, path: Path) -> Project:
        _check_keys(raw, _TOP_KEYS, str(path))
        if raw.get("format") != FORMAT:
            raise ProjectError(f"{path}: 'format' is {raw.get('format')!r}, expected {FORMAT!r}")
        version = raw.get("version")
        if not isinstance(version, int):
            raise ProjectError(f"{path}: 'version' must be a whole number")
        if version > FORMAT_VERSION:
            raise ProjectError(f"{path} was written by a newer SegStudio (format version "
                               f"{version}); this version reads up to {FORMAT_VERSION}. "
                               f"Update SegStudio to open it")
        classes = []
        for i, c in enumerate(raw.get("classes", [])):
            _check_keys(c, _CLASS_KEYS, f"{path}: classes[{i}]")
            try:
                classes.append(LabelClass(int(c["id"]), str(c["name"]),
                                          str(c.get("color", default_color(int(c["id"])))),
                                          bool(c.get("visible", True))))
            except (KeyError, TypeError, ValueError) as e:
                raise ProjectError(f"{path}: classes[{i}] is incomplete ({e})") from None
        try:
            classes = clean_classes(classes, str(path))   # names saved before they were checked
            validate_classes(classes)
        except ClassError as e:
            raise ProjectError(f"{path}: {e}") from None
        images, seen = [], set()
        for i, m in enumerate(raw.get("images", [])):
            _check_keys(m, _IMAGE_KEYS, f"{path}: images[{i}]")
            try:
                entry = ImageEntry(str(m["id"]), str(m["path"]),
                                   None if m.get("frame") is None else int(m["frame"]),
                                   str(m.get("split", "train")), float(m.get("labelled", 0.0)),
                                   bool(m.get("predicted", False)), bool(m.get("reviewed", False)))
            except (KeyError, TypeError, ValueError) as e:
                raise ProjectError(f"{path}: images[{i}] is incomplete ({e})") from None
            if entry.split not in SPLITS:
                raise ProjectError(f"{path}: images[{i}] has split {entry.split!r}; "
                                   f"expected one of {list(SPLITS)}")
            if entry.id in seen or _slug(entry.id) != entry.id:
                raise ProjectError(f"{path}: images[{i}] has a duplicate or unsafe id {entry.id!r}")
            seen.add(entry.id)
            images.append(entry)
        settings = raw.get("settings", {})
        if not isinstance(settings, dict):
            raise ProjectError(f"{path}: 'settings' must be an object")
        unknown = sorted(set(settings) - set(DEFAULT_SETTINGS))
        if unknown:
            raise ProjectError(f"{path}: settings: unknown key(s) {unknown}; "
                               f"known: {sorted(DEFAULT_SETTINGS)}")
        return cls(root, str(raw.get("name", root.name)), classes, images, settings)

    def to_manifest(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "name": self.name,
            "classes": [asdict(c) for c in self.classes],
            "images": [{k: v for k, v in asdict(e).items()
                        if not (k == "frame" and v is None)} for e in self.images],
            "settings": self.settings,
        }

    def save(self) -> None:
        atomic_write_json(self.root / MANIFEST, self.to_manifest())

    def _check_files(self) -> None:
        for e in self.images:
            if not self.image_path(e).exists():
                self.problems.append(f"{e.display_name}: image file not found at "
                                     f"{self.image_path(e)}")

    # -- images ----------------------------------------------------------------------------
    @property
    def max_pixels(self) -> int:
        return int(self.settings.get("max_pixels", DEFAULT_MAX_PIXELS))

    def image_path(self, entry: ImageEntry) -> Path:
        p = Path(entry.path)
        return p if p.is_absolute() else self.root / p

    def entry(self, image_id: str) -> ImageEntry:
        for e in self.images:
            if e.id == image_id:
                return e
        raise KeyError(f"no image with id {image_id!r} in {self.root}")

    def index_of(self, image_id: str) -> int:
        return next(i for i, e in enumerate(self.images) if e.id == image_id)

    def update_entry(self, image_id: str, **changes: Any) -> ImageEntry:
        i = self.index_of(image_id)
        self.images[i] = replace(self.images[i], **changes)
        return self.images[i]

    def read_image(self, entry: ImageEntry) -> LoadedImage:
        return read_image(self.image_path(entry), entry.frame, self.max_pixels)

    def probe(self, entry: ImageEntry) -> ImageInfo:
        infos = probe(self.image_path(entry), self.max_pixels)
        for info in infos:
            if info.frame == entry.frame:
                return info
        raise ImageReadError(f"{self.image_path(entry)}: has no frame {entry.frame}")

    def _unique_id(self, base: str) -> str:
        used = {e.id for e in self.images}
        candidate, n = base, 2
        while candidate in used:
            candidate, n = f"{base}-{n}", n + 1
        return candidate

    def add_images(self, paths: list[Path], *, copy: bool = False) -> list[ImageEntry]:
        """Add image files (every page/slice of multi-item files); unreadable ones go to problems."""
        added: list[ImageEntry] = []
        known = {(str(self.image_path(e).resolve()), e.frame) for e in self.images}
        for src in paths:
            src = Path(src)
            if not is_supported(src):
                self.problems.append(f"{src}: not a supported image type; skipped")
                continue
            try:
                infos = probe(src, self.max_pixels)
            except ImageReadError as e:
                self.problems.append(f"{e}; skipped")
                continue
            if copy:
                dest_dir = self.root / "images"
                dest_dir.mkdir(exist_ok=True)
                dest = dest_dir / src.name
                n = 2
                while dest.exists() and not _same_file(dest, src):
                    dest = dest_dir / f"{src.stem}-{n}{''.join(src.suffixes)}"
                    n += 1
                if not dest.exists():
                    shutil.copy2(src, dest)
            else:
                dest = src
            for info in infos:
                if (str(dest.resolve()), info.frame) in known:
                    continue
                stem = _slug(dest.name[: -len(".nii.gz")] if dest.name.lower().endswith(".nii.gz")
                             else dest.stem)
                base = stem if info.frame is None else f"{stem}_{info.frame:03d}"
                image_id = self._unique_id(base)
                entry = ImageEntry(image_id, self._stored_path(dest), info.frame,
                                   _split_for(image_id, float(self.settings["val_fraction"])))
                self.images.append(entry)
                added.append(entry)
        if added:
            self.save()
        return added

    def _stored_path(self, path: Path) -> str:
        path = path.resolve()
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return str(path)

    # -- classes ---------------------------------------------------------------------------
    def set_classes(self, classes: list[LabelClass]) -> None:
        try:
            validate_classes(classes)
        except ClassError as e:
            raise ProjectError(str(e)) from None
        self.classes = list(classes)
        self.save()

    def add_class(self, name: str, color: str | None = None) -> LabelClass:
        cid = next_class_id(self.classes)
        cls = LabelClass(cid, name, color or default_color(cid))
        self.set_classes([*self.classes, cls])
        return cls

    def class_by_id(self, class_id: int) -> LabelClass | None:
        return next((c for c in self.classes if c.id == class_id), None)

    def clear_class_from_masks(self, class_id: int) -> int:
        """Set a deleted class's pixels to unlabeled in every saved mask; returns masks changed."""
        changed = 0
        for e in self.images:
            if not self.masks.has_mask(e.id):
                continue
            try:
                info = self.probe(e)
                mask = self.masks.load(e.id, (info.height, info.width))
            except Exception as err:
                self.problems.append(f"{e.display_name}: {err}")
                continue
            hit = mask == class_id
            if hit.any():
                mask[hit] = UNLABELED
                self.masks.write(e.id, mask)
                changed += 1
        return changed

    # -- masks and view state --------------------------------------------------------------
    def load_mask(self, entry: ImageEntry, shape: tuple[int, int]) -> np.ndarray:
        return self.masks.load(entry.id, shape)

    @property
    def state_dir(self) -> Path:
        return self.root / ".segstudio"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    def load_view(self) -> dict[str, Any]:
        try:
            data = json.loads((self.state_dir / "view.json").read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def save_view(self, view: dict[str, Any]) -> None:
        atomic_write_json(self.state_dir / "view.json", view)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b) or (a.stat().st_size == b.stat().st_size
                                          and a.read_bytes() == b.read_bytes())
    except OSError:
        return False


def labelled_fraction(mask: np.ndarray) -> float:
    """Share of pixels that carry a class (not 255); sampled on huge masks to stay cheap."""
    sample = mask if mask.size <= 1 << 24 else mask[::4, ::4]
    if sample.size == 0:
        return 0.0
    n = int(np.count_nonzero(sample != UNLABELED))
    return 1.0 if n == sample.size else n / sample.size
