"""Import masks into a project: a folder of label images, COCO JSON, YOLO-seg or labelme JSON.

Two phases, so nothing is imported half-way: first every file is read and checked (format,
geometry, image sizes, class names), and each image gets a plan for building its mask;
only when all of it is sound are masks written. A failure or a cancel while writing puts
back the masks (and classes) as they were.

What a file means is taken as meant, what it cannot mean is refused, naming the file and the
place: a shape up to polygons.edge_slack past the image edge (1 %, at least 2 px) is clipped
and listed in `warnings`; further out, a NaN or infinite coordinate, a label that is not
text or no valid class name, and anything malformed is an AnnotationImportError. A mask
value no class has is the source class "class <v>", mapped by `mapping` ("7": "cell") or
added with `new_classes`; 255 stays unlabeled.
"""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from segstudio.core.classes import (BACKGROUND, UNLABELED, ClassError, source_class_name,
                                    validate_class_name)
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
    mapping: Mapping[str, str] | None = None   # source class name (or raw mask value) -> project name
    new_classes: bool = False                  # unknown names become new classes (else an error)
    unannotated: str = "background"            # pixels no shape covers: "background" or "ignore"
    skip_unmatched: bool = False               # files for images not in the project: skip, not fail


@dataclass
class ImportResult:
    imported: list[str]                        # image ids whose masks were replaced
    added_classes: list[str]
    skipped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)   # imported, but changed (e.g. clipped)


@dataclass
class _Found:
    """What the readers learn besides the plans, for messages and for the class mapping."""

    skipped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    raw_ids: dict[str, str] = field(default_factory=dict)      # "7" -> source name of value 7
    unnamed: dict[str, list[int]] = field(default_factory=dict)   # file -> values with no name
    unnamed_names: set[str] = field(default_factory=set)       # the names given to those ("class 7")
    listing: str | None = None                                 # where named values were listed


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
    warnings: list[str] = field(default_factory=list)


def preview_import(project: Project, src: Path | str, options: ImportOptions | None = None, *,
                   cancel: CancelToken | None = None) -> ImportPreview:
    """Read and check `src` completely (same errors as an import) without writing anything."""
    options = options or ImportOptions()
    plans, names, found = _plan(project, Path(src), options, cancel or CancelToken())
    mapping = _mapping(options, names, found)
    known = {c.name.casefold() for c in project.classes}
    unknown = sorted(n for n in names if mapping.get(n, n).casefold() not in known)
    return ImportPreview([p.entry.id for p in plans], sorted(names), unknown, found.skipped,
                         found.warnings)


def import_annotations(project: Project, src: Path | str, options: ImportOptions | None = None, *,
                       on_progress: ProgressFn | None = None,
                       cancel: CancelToken | None = None) -> ImportResult:
    """Read annotations from `src` into `project`'s masks; raises AnnotationImportError."""
    options = options or ImportOptions()
    cancel = cancel or CancelToken()
    src = Path(src)
    plans, names, found = _plan(project, src, options, cancel)
    class_of, new = _resolve_classes(project, names, options, src, found)
    result = _write(project, plans, class_of, new, found.skipped, on_progress, cancel)
    result.warnings = list(found.warnings)
    return result


def _plan(project: Project, src: Path, options: ImportOptions,
          cancel: CancelToken) -> tuple[list[_Planned], set[str], _Found]:
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
    found = _Found()
    try:
        plans, names = readers[options.format](project, src, fill, options, found, cancel)
    except (FormatError, MaskError, ImageReadError) as e:
        raise AnnotationImportError(str(e)) from None
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError,
            zlib.error) as e:
        # the readers check what they read; this is the net for what they missed, so that
        # a hostile file still ends as one sentence, not a traceback
        log.exception("reading %s as %s", src, options.format)
        raise AnnotationImportError(f"{src}: cannot be read as {options.format} "
                                    f"({type(e).__name__}: {e})") from None
    _check_duplicates(plans)
    if not plans:
        raise AnnotationImportError(f"{src}: no annotations for any image of the project" +
                                    (f" ({len(found.skipped)} file(s) matched no image)"
                                     if found.skipped else ""))
    for w in found.warnings:
        log.warning("%s", w)
    return plans, names, found


def _check_duplicates(plans: list[_Planned]) -> None:
    seen: dict[str, str] = {}
    for p in plans:
        if p.entry.id in seen:
            raise AnnotationImportError(f"{seen[p.entry.id]} and {p.source} are both for image "
                                        f"'{p.entry.display_name}'")
        seen[p.entry.id] = p.source


def _unmatched(what: str, options: ImportOptions, found: _Found) -> None:
    msg = f"{what}: matches no image of the project (by id, file name or stem)"
    if not options.skip_unmatched:
        raise AnnotationImportError(msg + "; allow skipping unmatched files to import the rest")
    found.skipped.append(msg)


def _mapping(options: ImportOptions, names: set[str], found: _Found) -> dict[str, str]:
    """options.mapping keyed by source names: a numeric key that is no source name maps the
    raw mask value (folder imports: `--map 7=cell` for pixels of value 7)."""
    out: dict[str, str] = {}
    for old, new in (options.mapping or {}).items():
        key = old if old in names or old not in found.raw_ids else found.raw_ids[old]
        if key != old and key in (options.mapping or {}):
            continue                    # the name itself is mapped too: the name wins
        out[key] = new
    return out


def _resolve_classes(project: Project, names: set[str], options: ImportOptions,
                     src: Path, found: _Found) -> tuple[dict[str, int], dict[str, str]]:
    """source name -> project class id, and source name -> new class name (when allowed)."""
    mapping = _mapping(options, names, found)
    unused = sorted(set(mapping) - names)
    if unused:
        log.info("class mapping entries not used by %s: %s", src, unused)
    for old, new in mapping.items():
        try:
            mapping[old] = validate_class_name(new)
        except ClassError as e:
            raise AnnotationImportError(f"class mapping {old}={new!r}: {e}") from None
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
    lacking = {n for n, target in new.items() if n in found.unnamed_names and target == n}
    if lacking and not options.new_classes:
        _raise_unnamed(found, lacking)
    if unknown and not options.new_classes:
        raise AnnotationImportError(
            f"{src}: class name(s) {sorted(set(unknown))} are not in the project "
            f"({[c.name for c in project.classes]}); map them (e.g. --map "
            f"{unknown[0]}={project.classes[-1].name}) or allow new classes")
    return class_of, new


def _raise_unnamed(found: _Found, lacking: set[str]) -> None:
    """Mask values that no class has: say which file holds which, and the two ways out."""
    files = [(f, ids) for f, ids in found.unnamed.items()
             if any(f"class {v}" in lacking for v in ids)]
    first, ids = files[0]
    shown = ", ".join(str(v) for v in ids)
    where = "the project does not have" if found.listing is None else \
        f"{found.listing} does not name"
    more = f" (and {len(files) - 1} more file(s) hold such ids)" if len(files) > 1 else ""
    raise AnnotationImportError(
        f"{first} holds class id{'s' if len(ids) > 1 else ''} {shown} that {where}{more}; "
        f"map them with --map {ids[0]}=<class> or add classes with --new-classes "
        f"(255 stays unlabeled)")


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
            try:
                mask = plan.build(class_of)
            except (FormatError, ValueError, TypeError, KeyError, IndexError, zlib.error) as e:
                # planning checked the source; this is the net for what it missed
                log.exception("building the mask of %s", plan.source)
                raise AnnotationImportError(f"{plan.source}: cannot be turned into a mask "
                                            f"({type(e).__name__}: {e})") from None
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


def _class_list(folder: Path) -> tuple[dict[int, str], str] | None:
    """value -> name from classes.json (our export) or classes.txt (line i = class i), and
    the file it came from."""
    path = folder / "classes.json"
    if path.exists():
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as e:
            raise FormatError(f"{path}: cannot be read as JSON ({e})") from None
        entries = doc.get("classes") if isinstance(doc, dict) else None
        if not isinstance(entries, list):
            raise FormatError(f"{path}: not a class list (expected {{\"classes\": [{{\"id\": 0, "
                              f"\"name\": \"background\"}}, ...]}})")
        out: dict[int, str] = {}
        for i, c in enumerate(entries):
            cid = c.get("id") if isinstance(c, dict) else None
            if isinstance(cid, bool) or not isinstance(cid, int) or not 0 <= cid <= UNLABELED:
                raise FormatError(f"{path}: classes[{i}] needs an 'id' from 0 to 254 and a 'name'")
            try:
                name = source_class_name(c.get("name"))
            except ClassError as e:
                raise FormatError(f"{path}: classes[{i}].name: {e}") from None
            if cid in out:
                raise FormatError(f"{path}: classes[{i}] repeats id {cid}")
            if cid != UNLABELED:
                out[cid] = name
        return out, str(path)
    path = folder / "classes.txt"
    if path.exists():
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise FormatError(f"{path}: cannot be read ({e})") from None
        out = {}
        for i, line in enumerate(lines[:UNLABELED]):
            if line.strip() and not line.strip().startswith("_unused_"):
                try:
                    out[i] = source_class_name(line)
                except ClassError as e:
                    raise FormatError(f"{path}, line {i + 1}: {e}") from None
        return out, str(path)
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
                 found: _Found, cancel: CancelToken) -> tuple[list[_Planned], set[str]]:
    from segstudio.io.formats.indexed_png import LabelImageError, read_label_image

    if not src.is_dir():
        raise FormatError(f"{src}: expected a folder of label images")
    folder = next((src / s for s in ("SegmentationClass", "masks") if (src / s).is_dir()), src)
    listed = _class_list(src)
    if listed is not None:
        by_value, found.listing = dict(listed[0]), listed[1]
    else:
        by_value = {c.id: c.name for c in project.classes}
    # a value no class has is the source class "class <v>": mapped (--map 7=cell, see
    # _mapping) or added (new classes) like any other name; named later in this dict
    names_of = dict(by_value)
    matcher = _Matcher(project)
    plans, used = [], set()
    for path in _files(folder, LABEL_EXTS):
        cancel.raise_if_cancelled()
        entry = matcher.find(path.stem, path.name)
        if entry is None:
            _unmatched(str(path), options, found)
            continue
        shape = _image_shape(project, entry)
        try:
            arr = read_label_image(path)
        except LabelImageError as e:
            raise FormatError(str(e)) from None
        _check_shape(path, arr.shape[:2], entry, shape)
        values = set(np.unique(arr).tolist()) - {UNLABELED}
        unnamed = sorted(values - set(by_value))
        if unnamed:
            found.unnamed[str(path)] = unnamed
            for v in unnamed:
                names_of[v] = f"class {v}"
                found.unnamed_names.add(f"class {v}")
        used |= values

        def build(class_of: dict[str, int], path: Path = path) -> np.ndarray:
            lut = np.full(256, UNLABELED, np.uint8)
            for v, name in names_of.items():
                if name in class_of:
                    lut[v] = class_of[name]
            return lut[read_label_image(path)]
        plans.append(_Planned(entry, str(path), build))
    found.raw_ids.update({str(v): names_of[v] for v in used})
    return plans, {names_of[v] for v in used}


def _plan_coco(project: Project, src: Path, fill: int, options: ImportOptions,
               found: _Found, cancel: CancelToken) -> tuple[list[_Planned], set[str]]:
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
        found.warnings += coco.warnings
        for img in coco.images.values():
            name = Path(img.file_name.replace("\\", "/")).name
            entry = matcher.find(name, name.split(".")[0], Path(name).stem)
            what = f"{f}: image '{img.file_name}' (id {img.coco_id})"
            if entry is None:
                _unmatched(what, options, found)
                continue
            shape = _image_shape(project, entry)
            if (img.height, img.width) != shape:
                raise FormatError(f"{what} is declared {img.width} x {img.height} but the "
                                  f"project's image is {shape[1]} x {shape[0]}")
            used |= {coco.categories[a["category_id"]] for a in img.anns}

            def build(class_of: dict[str, int], img=img, cats=coco.categories) -> np.ndarray:
                return rasterize(img, {cid: class_of[n] for cid, n in cats.items()
                                       if n in class_of}, fill)
            plans.append(_Planned(entry, what, build))
    return plans, used


def _plan_yolo(project: Project, src: Path, fill: int, options: ImportOptions,
               found: _Found, cancel: CancelToken) -> tuple[list[_Planned], set[str]]:
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
            _unmatched(str(path), options, found)
            continue
        shape = _image_shape(project, entry)
        objects = read_label_file(path, len(names), shape, found.warnings)
        used |= {names[o.class_index] for o in objects}

        def build(class_of: dict[str, int], objects=objects, shape=shape) -> np.ndarray:
            return rasterize(objects, shape, [class_of.get(n, fill) for n in names], fill)
        plans.append(_Planned(entry, str(path), build))
    return plans, used


def _plan_labelme(project: Project, src: Path, fill: int, options: ImportOptions,
                  found: _Found, cancel: CancelToken) -> tuple[list[_Planned], set[str]]:
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
            _unmatched(str(path), options, found)
            continue
        shape = _image_shape(project, entry)
        parsed = read_labelme(path, shape)
        found.warnings += parsed.warnings
        used |= {s.label for s in parsed.shapes}

        def build(class_of: dict[str, int], parsed=parsed, shape=shape) -> np.ndarray:
            return rasterize(parsed, shape, class_of, fill)
        plans.append(_Planned(entry, str(path), build))
    return plans, used
