"""Import masks into a project: a folder of label images, COCO JSON, YOLO-seg or labelme JSON.

Two phases, so nothing is imported half-way: first every file is read and checked (format,
geometry, image sizes, class names), and each image gets a plan for building its mask;
only when all of it is sound are masks written. A failure or a cancel while writing puts
back the masks (and classes) as they were.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from segstudio.core.classes import BACKGROUND, UNLABELED
from segstudio.core.jobs import CancelToken, Progress, ProgressFn
from segstudio.io.formats import FormatError
from segstudio.io.images import ImageReadError
from segstudio.io.masks import MaskError, decode_mask_png, encode_mask_png
from segstudio.io.project import ImageEntry, Project, labelled_fraction

log = logging.getLogger(__name__)

IMPORT_FORMATS = ("folder", "coco", "yolo", "labelme")
LABEL_EXTS = (".png", ".tif", ".tiff", ".bmp")


class AnnotationImportError(Exception):
    """An import refused before anything was written; the message names the file and place."""


@dataclass(frozen=True)
class ImportOptions:
    format: str = "folder"
    mapping: Mapping[str, str] | None = None   # source class name -> project class name
    new_classes: bool = False                  # unknown names become new classes (else an error)
    unannotated: str = "background"            # pixels no shape covers: "background" or "ignore"
    skip_unmatched: bool = False               # files for images not in the project: skip, not fail


@dataclass
class ImportResult:
    imported: list[str]                        # image ids whose masks were replaced
    added_classes: list[str]
    skipped: list[str] = field(default_factory=list)


@dataclass
class _Planned:
    entry: ImageEntry
    source: str                                # file (and place) it came from, for messages
    build: Callable[[dict[str, int]], np.ndarray]   # class_of (source name -> id) -> mask


class _Matcher:
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


@dataclass(frozen=True)
class ImportPreview:
    """What an import would do, for a class-mapping dialog: nothing is written."""

    images: list[str]                  # image ids that would get a mask
    source_classes: list[str]          # class names used in the source
    unknown_classes: list[str]         # of those, names matching no project class (after mapping)
    skipped: list[str]


def preview_import(project: Project, src: Path | str, options: ImportOptions | None = None, *,
                   cancel: CancelToken | None = None) -> ImportPreview:
    """Read and check `src` completely (same errors as an import) without writing anything."""
    options = options or ImportOptions()
    plans, names, skipped = _plan(project, Path(src), options, cancel or CancelToken())
    mapping = dict(options.mapping or {})
    known = {c.name.casefold() for c in project.classes}
    unknown = sorted(n for n in names if mapping.get(n, n).casefold() not in known)
    return ImportPreview([p.entry.id for p in plans], sorted(names), unknown, skipped)


def import_annotations(project: Project, src: Path | str, options: ImportOptions | None = None, *,
                       on_progress: ProgressFn | None = None,
                       cancel: CancelToken | None = None) -> ImportResult:
    """Read annotations from `src` into `project`'s masks; raises AnnotationImportError."""
    options = options or ImportOptions()
    cancel = cancel or CancelToken()
    src = Path(src)
    plans, names, skipped = _plan(project, src, options, cancel)
    class_of, new = _resolve_classes(project, names, options, src)
    return _write(project, plans, class_of, new, skipped, on_progress, cancel)


def _plan(project: Project, src: Path, options: ImportOptions,
          cancel: CancelToken) -> tuple[list[_Planned], set[str], list[str]]:
    if options.format not in IMPORT_FORMATS:
        raise AnnotationImportError(f"unknown import format {options.format!r}; known: "
                                    f"{list(IMPORT_FORMATS)}")
    if options.unannotated not in ("background", "ignore"):
        raise AnnotationImportError(f"unannotated must be 'background' or 'ignore', got "
                                    f"{options.unannotated!r}")
    if not src.exists():
        raise AnnotationImportError(f"{src}: not found")
    fill = BACKGROUND if options.unannotated == "background" else UNLABELED
    readers = {"folder": _plan_folder, "coco": _plan_coco, "yolo": _plan_yolo,
               "labelme": _plan_labelme}
    skipped: list[str] = []
    try:
        plans, names = readers[options.format](project, src, fill, options, skipped, cancel)
    except (FormatError, MaskError, ImageReadError) as e:
        raise AnnotationImportError(str(e)) from None
    _check_duplicates(plans)
    if not plans:
        raise AnnotationImportError(f"{src}: no annotations for any image of the project" +
                                    (f" ({len(skipped)} file(s) matched no image)" if skipped else ""))
    return plans, names, skipped


def _check_duplicates(plans: list[_Planned]) -> None:
    seen: dict[str, str] = {}
    for p in plans:
        if p.entry.id in seen:
            raise AnnotationImportError(f"{seen[p.entry.id]} and {p.source} are both for image "
                                        f"'{p.entry.display_name}'")
        seen[p.entry.id] = p.source


def _unmatched(what: str, options: ImportOptions, skipped: list[str]) -> None:
    msg = f"{what}: matches no image of the project (by id, file name or stem)"
    if not options.skip_unmatched:
        raise AnnotationImportError(msg + "; allow skipping unmatched files to import the rest")
    skipped.append(msg)


def _resolve_classes(project: Project, names: set[str], options: ImportOptions,
                     src: Path) -> tuple[dict[str, int], dict[str, str]]:
    """source name -> project class id, and source name -> new class name (when allowed)."""
    mapping = dict(options.mapping or {})
    unused = sorted(set(mapping) - names)
    if unused:
        log.info("class mapping entries not used by %s: %s", src, unused)
    by_name = {c.name.casefold(): c.id for c in project.classes}
    class_of: dict[str, int] = {}
    new: dict[str, str] = {}
    for name in sorted(names):
        target = mapping.get(name, name)
        if target.casefold() in by_name:
            class_of[name] = by_name[target.casefold()]
        else:
            new[name] = target
    unknown = sorted(set(new.values()), key=str.casefold)
    if unknown and not options.new_classes:
        raise AnnotationImportError(
            f"{src}: class name(s) {sorted(set(unknown))} are not in the project "
            f"({[c.name for c in project.classes]}); map them (e.g. --map "
            f"{unknown[0]}={project.classes[-1].name}) or allow new classes")
    return class_of, new


def _write(project: Project, plans: list[_Planned], class_of: dict[str, int], new: dict[str, str],
           skipped: list[str], on_progress: ProgressFn | None,
           cancel: CancelToken) -> ImportResult:
    cancel.raise_if_cancelled()
    old_classes = list(project.classes)
    old_entries = list(project.images)
    previous: list[tuple[str, bytes | None]] = []
    added: dict[str, int] = {}
    try:
        for source, target in new.items():
            if target.casefold() not in added:
                added[target.casefold()] = project.add_class(target).id
            class_of[source] = added[target.casefold()]
        for i, plan in enumerate(plans):
            cancel.raise_if_cancelled()
            mask = plan.build(class_of)
            e = plan.entry
            before = None
            if project.masks.has_mask(e.id):
                info = project.probe(e)
                before = encode_mask_png(project.load_mask(e, (info.height, info.width)))
            previous.append((e.id, before))
            project.masks.write(e.id, mask)
            project.update_entry(e.id, labelled=labelled_fraction(mask))
            if on_progress:
                on_progress(Progress(i + 1, len(plans), e.id))
        project.save()
    except BaseException:
        for image_id, before in reversed(previous):
            try:
                if before is None:
                    project.masks.png_path(image_id).unlink(missing_ok=True)
                else:
                    project.masks.write(image_id, decode_mask_png(before, project.masks.png_path(image_id)))
            except Exception:      # keep undoing the rest; the original error is what matters
                log.exception("could not restore the mask of %s", image_id)
        project.images[:] = old_entries
        project.classes = old_classes
        project.save()
        raise
    return ImportResult([p.entry.id for p in plans], sorted(set(new.values())), skipped)


# -- readers: each returns (plans, source class names) and checks everything it can ------------
def _image_shape(project: Project, entry: ImageEntry) -> tuple[int, int]:
    info = project.probe(entry)
    return info.height, info.width


def _class_list(folder: Path) -> dict[int, str] | None:
    """value -> name from classes.json (our export) or classes.txt (line i = class i)."""
    path = folder / "classes.json"
    if path.exists():
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            return {int(c["id"]): str(c["name"]) for c in doc["classes"]}
        except (ValueError, KeyError, TypeError) as e:
            raise FormatError(f"{path}: not a class list ({e})") from None
    path = folder / "classes.txt"
    if path.exists():
        lines = path.read_text(encoding="utf-8").splitlines()
        return {i: n.strip() for i, n in enumerate(lines)
                if n.strip() and not n.strip().startswith("_unused_")}
    return None


def _files(src: Path, exts: tuple[str, ...], skip: tuple[str, ...] = ()) -> list[Path]:
    return sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in exts
                  and p.name not in skip and not p.name.startswith("."))


def _check_shape(path: Path | str, got: tuple[int, int], entry: ImageEntry,
                 shape: tuple[int, int]) -> None:
    if tuple(got) != tuple(shape):
        raise FormatError(f"{path}: mask is {got[1]} x {got[0]} but image "
                          f"'{entry.display_name}' is {shape[1]} x {shape[0]} (width x height)")


def _plan_folder(project: Project, src: Path, fill: int, options: ImportOptions,
                 skipped: list[str], cancel: CancelToken) -> tuple[list[_Planned], set[str]]:
    from segstudio.io.formats.indexed_png import LabelImageError, read_label_image

    if not src.is_dir():
        raise FormatError(f"{src}: expected a folder of label images")
    folder = next((src / s for s in ("SegmentationClass", "masks") if (src / s).is_dir()), src)
    listed = _class_list(src)
    by_value = listed if listed is not None else {c.id: c.name for c in project.classes}
    where = f"{src / 'classes.json'} / classes.txt" if listed is not None else "the project"
    matcher = _Matcher(project)
    plans, used = [], set()
    for path in _files(folder, LABEL_EXTS):
        cancel.raise_if_cancelled()
        entry = matcher.find(path.stem, path.name)
        if entry is None:
            _unmatched(str(path), options, skipped)
            continue
        shape = _image_shape(project, entry)
        try:
            arr = read_label_image(path)
        except LabelImageError as e:
            raise FormatError(str(e)) from None
        _check_shape(path, arr.shape[:2], entry, shape)
        values = set(np.unique(arr).tolist()) - {UNLABELED}
        bad = sorted(values - set(by_value))
        if bad:
            raise FormatError(f"{path}: pixel value(s) {bad} are no class in {where} "
                              f"(known: {sorted(by_value)}; 255 = unlabeled)")
        used |= values

        def build(class_of: dict[str, int], path: Path = path) -> np.ndarray:
            lut = np.full(256, UNLABELED, np.uint8)
            for v, name in by_value.items():
                if name in class_of:
                    lut[v] = class_of[name]
            return lut[read_label_image(path)]
        plans.append(_Planned(entry, str(path), build))
    return plans, {by_value[v] for v in used}


def _plan_coco(project: Project, src: Path, fill: int, options: ImportOptions,
               skipped: list[str], cancel: CancelToken) -> tuple[list[_Planned], set[str]]:
    from segstudio.io.formats.coco import rasterize, read_coco, require_pycocotools

    try:
        require_pycocotools()
    except ImportError as e:
        raise AnnotationImportError(str(e)) from None
    if src.is_file():
        files = [src]
    else:
        files = sorted((src / "annotations").glob("*.json")) or sorted(src.glob("*.json"))
    if not files:
        raise FormatError(f"{src}: no COCO JSON file (looked in annotations/ and the folder)")
    matcher = _Matcher(project)
    plans, used = [], set()
    for f in files:
        cancel.raise_if_cancelled()
        coco = read_coco(f)
        for img in coco.images.values():
            name = Path(img.file_name.replace("\\", "/")).name
            entry = matcher.find(name, name.split(".")[0], Path(name).stem)
            what = f"{f}: image '{img.file_name}' (id {img.coco_id})"
            if entry is None:
                _unmatched(what, options, skipped)
                continue
            shape = _image_shape(project, entry)
            if (img.height, img.width) != shape:
                raise FormatError(f"{what} is declared {img.width} x {img.height} but the "
                                  f"project's image is {shape[1]} x {shape[0]}")
            used |= {coco.categories[int(a["category_id"])] for a in img.anns}

            def build(class_of: dict[str, int], img=img, cats=coco.categories) -> np.ndarray:
                return rasterize(img, {cid: class_of[n] for cid, n in cats.items()
                                       if n in class_of}, fill)
            plans.append(_Planned(entry, what, build))
    return plans, used


def _plan_yolo(project: Project, src: Path, fill: int, options: ImportOptions,
               skipped: list[str], cancel: CancelToken) -> tuple[list[_Planned], set[str]]:
    from segstudio.io.formats.yolo import rasterize, read_label_file, read_names

    if not src.is_dir():
        raise FormatError(f"{src}: expected a YOLO dataset folder (with data.yaml and labels/)")
    try:
        names = read_names(src)
    except ImportError as e:
        raise AnnotationImportError(str(e)) from None
    labels = src / "labels" if (src / "labels").is_dir() else src
    matcher = _Matcher(project)
    plans, used = [], set()
    for path in _files(labels, (".txt",), skip=("classes.txt",)):
        cancel.raise_if_cancelled()
        entry = matcher.find(path.stem)
        if entry is None:
            _unmatched(str(path), options, skipped)
            continue
        objects = read_label_file(path, len(names))
        shape = _image_shape(project, entry)
        used |= {names[o.class_index] for o in objects}

        def build(class_of: dict[str, int], objects=objects, shape=shape) -> np.ndarray:
            return rasterize(objects, shape, [class_of.get(n, fill) for n in names], fill)
        plans.append(_Planned(entry, str(path), build))
    return plans, used


def _plan_labelme(project: Project, src: Path, fill: int, options: ImportOptions,
                  skipped: list[str], cancel: CancelToken) -> tuple[list[_Planned], set[str]]:
    from segstudio.io.formats.labelme import rasterize, read_labelme

    files = [src] if src.is_file() else _files(src, (".json",))
    if not files:
        raise FormatError(f"{src}: no labelme .json files")
    matcher = _Matcher(project)
    plans, used = [], set()
    for path in files:
        cancel.raise_if_cancelled()
        first = read_labelme(path)
        image_name = Path(first.image_path.replace("\\", "/")).name
        keys = [k for k in (image_name, image_name.split(".")[0], path.stem) if k]
        entry = matcher.find(*keys)
        if entry is None:
            _unmatched(str(path), options, skipped)
            continue
        shape = _image_shape(project, entry)
        parsed = read_labelme(path, shape)
        used |= {s.label for s in parsed.shapes}

        def build(class_of: dict[str, int], parsed=parsed, shape=shape) -> np.ndarray:
            return rasterize(parsed, shape, class_of, fill)
        plans.append(_Planned(entry, str(path), build))
    return plans, used
