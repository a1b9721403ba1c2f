"""A project: a folder with a versioned manifest (project.json), masks, runs and view state.

project.json holds relative paths where images live inside the project (absolute ones for
images left where they are outside it), the classes, the image list with each image's split,
and settings. It is validated on open: unknown keys, a newer format or broken JSON are
refused with a message that says which key or line. View state lives apart in
`.segstudio/view.json` so panning never rewrites the manifest.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from segstudio.core.classes import (BACKGROUND, ClassError, LabelClass, class_record,
                                    clean_classes, default_color, next_class_id,
                                    object_class_ids, validate_classes)
from segstudio.core.jobs import CancelToken, Progress, ProgressFn
from segstudio.core.names import slug
from segstudio.io.adding import add_scanned, scan_images
from segstudio.io.atomic import atomic_write_json, remove_stale_temporaries
from segstudio.io.dicom import looks_like_dicom
from segstudio.io.images import (DEFAULT_MAX_PIXELS, ImageInfo, ImageReadError, LoadedImage,
                                 is_supported, probe, read_image)
from segstudio.io.entries import (STATUSES, ImageEntry, ImageScan,  # noqa: F401
                                  SeriesRecord, entry_dict, series_dict)
from segstudio.io.lock import ProjectLock, ProjectLockedError
from segstudio.io.manifest import (ProjectError, check_keys, check_settings, field_of,
                                   merge_manifests, series_from, writable_problem)
from segstudio.io.masks import MaskStore, clear_class_in_place, labelled_fraction  # noqa: F401

log = logging.getLogger(__name__)

MANIFEST = "project.json"
FORMAT = "segstudio-project"
FORMAT_VERSION = 2           # 2: volumes ("series"); a project without any is still written as 1
SPLITS = ("train", "val", "test")

_TOP_KEYS = {"format", "version", "name", "classes", "images", "settings", "series"}
_CLASS_KEYS = {"id", "name", "color", "visible", "objects"}
_IMAGE_KEYS = {"id", "path", "frame", "split", "labelled", "predicted", "reviewed", "series",
               "slice"}
DEFAULT_SETTINGS: dict[str, Any] = {"max_pixels": DEFAULT_MAX_PIXELS, "val_fraction": 0.2}


_slug = slug      # image ids: the one naming rule (core/names.py)


class Project:
    """A project folder. Not thread-safe: change it on the GUI thread (or one CLI thread)."""

    def __init__(self, root: Path, name: str, classes: list[LabelClass],
                 images: list[ImageEntry], settings: dict[str, Any],
                 series: list[SeriesRecord] | None = None) -> None:
        self.root = Path(root).resolve()
        self.name = name
        self.classes = classes
        self.images = images
        self.series: dict[str, SeriesRecord] = {r.id: r for r in (series or [])}
        self.settings = {**DEFAULT_SETTINGS, **settings}
        self.masks = MaskStore(self.root / "masks")
        self.problems: list[str] = []   # what was skipped on open or add, for the user to read
        self.notes: list[str] = []      # what was odd about volumes added anyway (a gap)
        self.read_only: str | None = None   # why nothing may be written, or None
        self._lock: ProjectLock | None = None
        self._disk_manifest: dict[str, Any] | None = None   # project.json as last read/written
        self._disk_stamp: tuple[int, int, int] | None = None   # and its file's identity then
        self._resolved: dict[str, str] = {}                 # entry.path -> resolved file path

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
        existed = root.exists()
        # scanners write DICOM slices without a suffix: those are found by their contents
        files = sorted(p for p in images_dir.rglob("*") if p.is_file()
                       and (is_supported(p) or looks_like_dicom(p))
                       and root.resolve() not in p.resolve().parents)
        project = cls.create(root, name=images_dir.resolve().name, classes=classes)
        try:
            project.add_images(files, copy=copy)
        except BaseException:
            # all or nothing: a half-created project would make a rerun refuse the folder
            if not existed:
                shutil.rmtree(root, ignore_errors=True)
            else:
                (root / MANIFEST).unlink(missing_ok=True)
            raise
        return project

    @classmethod
    def open(cls, root: Path | str) -> Project:
        root = Path(root)
        if root.is_file() and root.name == MANIFEST:
            root = root.parent
        path = root / MANIFEST
        if not path.exists():
            raise ProjectError(f"{root} is not a SegStudio project: {MANIFEST} not found")
        stamp = _file_stamp(path)       # before reading: a newer file is then merged, never missed
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ProjectError(f"{path} is not valid JSON (line {e.lineno}, column {e.colno}: "
                               f"{e.msg}); the file was left as it is") from None
        except UnicodeDecodeError:
            raise ProjectError(f"{path} is not UTF-8 text") from None
        except RecursionError:
            raise ProjectError(f"{path} is nested too deeply to be a SegStudio project; "
                               f"the file was left as it is") from None
        except OSError as e:
            raise ProjectError(f"{path} cannot be read: {e.strerror or e}") from None
        project = cls._from_manifest(root, raw, path)
        project._disk_manifest = project.to_manifest()
        project._disk_stamp = stamp
        try:
            remove_stale_temporaries(root)
        except OSError:
            pass
        project._check_files()
        return project

    @classmethod
    def _from_manifest(cls, root: Path, raw: Any, path: Path) -> Project:
        check_keys(raw, _TOP_KEYS, str(path))
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
        raw_classes = raw.get("classes", [])
        if not isinstance(raw_classes, list):
            raise ProjectError(f"{path}: 'classes' must be a list")
        for i, c in enumerate(raw_classes):
            where = f"{path}: classes[{i}]"
            check_keys(c, _CLASS_KEYS, where)
            cid = field_of(c, "id", int, where)
            classes.append(LabelClass(cid, field_of(c, "name", str, where),
                                      field_of(c, "color", str, where, default_color(cid)),
                                      field_of(c, "visible", bool, where, True),
                                      field_of(c, "objects", bool, where, False)))
        try:
            classes = clean_classes(classes, str(path))   # names saved before they were checked
            validate_classes(classes)
        except ClassError as e:
            raise ProjectError(f"{path}: {e}") from None
        images, seen = [], set()
        raw_images = raw.get("images", [])
        if not isinstance(raw_images, list):
            raise ProjectError(f"{path}: 'images' must be a list")
        for i, m in enumerate(raw_images):
            where = f"{path}: images[{i}]"
            check_keys(m, _IMAGE_KEYS, where)
            frame = m.get("frame")
            sid = m.get("series")
            entry = ImageEntry(field_of(m, "id", str, where), field_of(m, "path", str, where),
                               None if frame is None else field_of(m, "frame", int, where),
                               field_of(m, "split", str, where, "train"),
                               min(1.0, max(0.0, field_of(m, "labelled", float, where, 0.0))),
                               field_of(m, "predicted", bool, where, False),
                               field_of(m, "reviewed", bool, where, False),
                               None if sid is None else field_of(m, "series", str, where),
                               None if sid is None else field_of(m, "slice", int, where))
            if entry.split not in SPLITS:
                raise ProjectError(f"{path}: images[{i}] has split {entry.split!r}; "
                                   f"expected one of {list(SPLITS)}")
            if entry.id in seen or _slug(entry.id) != entry.id:
                raise ProjectError(f"{path}: images[{i}] has a duplicate or unsafe id {entry.id!r}")
            seen.add(entry.id)
            images.append(entry)
        series = series_from(raw.get("series", []), path)
        for e in images:
            if e.series is not None and e.series not in series:
                raise ProjectError(f"{path}: image {e.id!r} is a slice of series {e.series!r}, "
                                   f"which 'series' does not list")
        settings = raw.get("settings", {})
        if not isinstance(settings, dict):
            raise ProjectError(f"{path}: 'settings' must be an object")
        unknown = sorted(set(settings) - set(DEFAULT_SETTINGS))
        if unknown:
            raise ProjectError(f"{path}: settings: unknown key(s) {unknown}; "
                               f"known: {sorted(DEFAULT_SETTINGS)}")
        check_settings(settings, str(path))
        return cls(root, field_of(raw, "name", str, str(path), root.name), classes, images, settings,
                   list(series.values()))

    def to_manifest(self) -> dict[str, Any]:
        out = {
            "format": FORMAT,
            # a project without volumes stays readable by versions that know none
            "version": FORMAT_VERSION if self.series else 1,
            "name": self.name,
            "classes": [class_record(c) for c in self.classes],
            "images": [entry_dict(e) for e in self.images],   # not asdict: it deep-copies
            "settings": self.settings,
        }
        if self.series:
            out["series"] = [series_dict(r) for r in self.series.values()]
        return out

    def save(self) -> None:
        """Write project.json, merging changes another writer made since we read it."""
        if self.read_only:
            raise ProjectError(f"not saved: {self.read_only}")
        mine = self.to_manifest()
        path = self.root / MANIFEST
        base = self._disk_manifest
        # unchanged since we read or wrote it (the usual case): nothing to merge, nothing to parse
        if base is not None and _file_stamp(path) != self._disk_stamp:
            try:
                disk = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError, RecursionError):
                disk = None                              # gone or broken: ours is the truth
            if isinstance(disk, dict) and disk != base and disk.get("format") == FORMAT:
                merged = merge_manifests(base, mine, disk)
                try:
                    other = type(self)._from_manifest(self.root, merged, path)
                except ProjectError as e:
                    log.warning("%s changed on disk and the changes do not merge (%s); "
                                "writing this copy's version", path, e)
                else:
                    log.info("%s changed on disk since it was read; merged both", path)
                    self.name, self.classes, self.images = other.name, other.classes, other.images
                    self.settings, self.series = other.settings, other.series
                    mine = self.to_manifest()
        atomic_write_json(path, mine)
        self._disk_manifest = mine
        self._disk_stamp = _file_stamp(path)

    # -- one writer at a time --------------------------------------------------------------
    def lock_for_writing(self, program: str = "SegStudio") -> str | None:
        """Take the project's writer lock; if another holds it the project becomes read-only.

        Returns why the project is read-only (None: this copy may write).
        """
        if self.read_only or self._lock is not None:
            return self.read_only
        # tried here, by writers only: the many read-only opens of workers write nothing
        self.read_only = writable_problem(self.root)
        if self.read_only:
            return self.read_only
        lock = ProjectLock(self.state_dir, program)
        try:
            lock.acquire()
        except ProjectLockedError as e:
            self.read_only = str(e)
        except OSError as e:
            self.read_only = f"the project folder {self.root} cannot be written ({e.strerror or e})"
        else:
            self._lock = lock
        return self.read_only

    def require_writable(self, program: str = "segstudio-cli") -> None:
        """For commands that write: take the lock or raise ProjectError saying who holds it."""
        why = self.lock_for_writing(program)
        if why:
            raise ProjectError(f"{why}; nothing was changed")

    def release_lock(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

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
        loaded = read_image(self.image_path(entry), entry.frame, self.max_pixels)
        record = self.series.get(entry.series) if entry.series is not None else None
        if record is not None and record.rescale is not None and entry.slice is not None \
                and 0 <= entry.slice < len(record.rescale):
            # a frame of an Enhanced DICOM file: its own slope/intercept, not the file's
            slope, intercept = record.rescale[entry.slice]
            data = np.asarray(loaded.data, np.float32)
            file_rescale = loaded.info.extra.get("rescale")
            if file_rescale is not None:
                data = (data - np.float32(file_rescale[1])) / np.float32(file_rescale[0] or 1)
            loaded = LoadedImage(loaded.info, data * np.float32(slope) + np.float32(intercept))
        return loaded

    def probe(self, entry: ImageEntry) -> ImageInfo:
        infos = probe(self.image_path(entry), self.max_pixels)
        for info in infos:
            if info.frame == entry.frame:
                return info
        raise ImageReadError(f"{self.image_path(entry)}: has no frame {entry.frame}")

    def known_files(self) -> set[tuple[str, int | None]]:
        """(resolved path, frame) of every item already in the project."""
        cache = self._resolved
        for e in self.images:
            if e.path not in cache:     # resolving costs syscalls per path part: once per file
                cache[e.path] = str(self.image_path(e).resolve())
        return {(cache[e.path], e.frame) for e in self.images}

    def register_resolved(self, stored: str, resolved: str) -> None:
        self._resolved[stored] = resolved

    def scan_images(self, paths: list[Path], *, copy: bool = False,
                    known: set[tuple[str, int | None]] | None = None,
                    on_progress: ProgressFn | None = None,
                    cancel: CancelToken | None = None) -> ImageScan:
        """The slow half of adding images, safe on a worker (`segstudio.io.adding`)."""
        return scan_images(self, paths, copy=copy, known=known, on_progress=on_progress,
                           cancel=cancel)

    def add_scanned(self, scan: ImageScan) -> list[ImageEntry]:
        """Add what `scan_images` found (ids, splits, series, one manifest write); cheap."""
        return add_scanned(self, scan)

    def add_images(self, paths: list[Path], *, copy: bool = False) -> list[ImageEntry]:
        """Add image files (every page/slice of multi-item files, volumes as series);
        unreadable ones go to problems."""
        return self.add_scanned(self.scan_images(paths, copy=copy))

    def stored_path(self, path: Path) -> str:
        path = path.resolve()
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return str(path)

    # -- volumes ---------------------------------------------------------------------------
    def series_by_uid(self, uid: str) -> SeriesRecord | None:
        return next((r for r in self.series.values() if r.uid == uid), None)

    def slices_of(self, series_id: str) -> list[ImageEntry]:
        """The slices of a series in the project, in slice order."""
        return sorted((e for e in self.images if e.series == series_id),
                      key=lambda e: e.slice or 0)

    # -- classes ---------------------------------------------------------------------------
    def set_classes(self, classes: list[LabelClass]) -> None:
        try:
            validate_classes(classes)
        except ClassError as e:
            raise ProjectError(str(e)) from None
        old, self.classes = self.classes, list(classes)
        try:
            self.save()
        except BaseException:
            self.classes = old       # not on disk: not changed in memory either
            raise

    def add_class(self, name: str, color: str | None = None) -> LabelClass:
        cid = next_class_id(self.classes)
        cls = LabelClass(cid, name, color or default_color(cid))
        self.set_classes([*self.classes, cls])
        return cls

    def class_by_id(self, class_id: int) -> LabelClass | None:
        return next((c for c in self.classes if c.id == class_id), None)

    def clear_class_from_masks(self, class_id: int, *, skip: set[str] = frozenset(),
                               on_progress: ProgressFn | None = None,
                               cancel: CancelToken | None = None) -> int:
        """A deleted class's pixels become unlabeled in every saved mask (but those in `skip`,
        which the caller edits itself); returns how many masks changed. Each mask is rewritten
        under the store's lock, so a stroke saved meanwhile is never overwritten."""
        entries = [e for e in self.images if e.id not in skip and self.masks.has_mask(e.id)]
        changed = 0
        for k, e in enumerate(entries):
            if cancel is not None:
                cancel.raise_if_cancelled()
            if on_progress is not None:
                on_progress(Progress(k, len(entries), e.display_name))
            try:
                info = self.probe(e)
                changed += self.masks.rewrite(e.id, (info.height, info.width),
                                              lambda m: clear_class_in_place(m, class_id))
            except Exception as err:
                self.problems.append(f"{e.display_name}: {err}")
        return changed

    # -- masks and view state --------------------------------------------------------------
    def load_mask(self, entry: ImageEntry, shape: tuple[int, int]) -> np.ndarray:
        return self.masks.load(entry.id, shape)

    def load_layers(self, entry: ImageEntry, shape: tuple[int, int]
                    ) -> tuple[np.ndarray, np.ndarray | None]:
        """The mask and its instance layer (None if the image has none), ids kept only on
        pixels of classes marked objects (a class unmarked since keeps its pixels, not ids)."""
        mask, objects = self.masks.load_layers(entry.id, shape)
        if objects is not None:
            keep = np.zeros(256, bool)
            keep[list(object_class_ids(self.classes))] = True
            objects[~keep[mask]] = 0
        return mask, objects

    def load_objects(self, entry: ImageEntry, shape: tuple[int, int]) -> np.ndarray:
        """The image's object ids (uint32, 0 = no object; zeros where it has none)."""
        objects = self.load_layers(entry, shape)[1] if self.masks.has_objects(entry.id) else None
        return objects if objects is not None else np.zeros(shape, np.uint32)

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


def _file_stamp(path: Path) -> tuple[int, int, int] | None:
    """(inode, mtime, size): every atomic replace makes a new inode, so any rewrite shows."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size

