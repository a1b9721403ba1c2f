"""Import masks into a project, from any format of `io.formats.base.READERS`.

Two phases, so nothing is imported half-way: first every file is read and checked (format,
geometry, image sizes, class names), and each image gets a plan for building its mask;
only when all of it is sound are masks written. A failure or a cancel while writing puts
back the masks (and classes) as they were.

What a file means is taken as meant, what it cannot mean is refused, naming the file and the
place: a shape up to polygons.edge_slack past the image edge (1 %, at least 2 px) is clipped
and listed in `warnings`; further out, a NaN or infinite coordinate, a label that is not
text or no valid class name, and anything malformed is an AnnotationImportError. A mask
value no class has is the source class "class <v>", mapped by `mapping` ("7": "cell") or
added with `new_classes`; 255 stays unlabeled. labelme's conventions hold for every format:
a source class `__ignore__`, and any class mapped to "unlabeled", becomes 255 (not a class);
`_background_` is the project's background (id 0) unless mapped. The readers (io.formats.readers) do the
reading; this module resolves class names and writes (and undoes) the masks.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from segstudio.core.classes import (BACKGROUND, UNLABELED, ClassError, object_class_ids,
                                    validate_class_name)
from segstudio.core.jobs import CancelToken, Progress, ProgressFn
from segstudio.io.formats import FormatError
from segstudio.io.formats import readers as _readers  # noqa: F401 (fills READERS)
from segstudio.io.formats import volume_import as _volume_import  # noqa: F401 (and this one)
from segstudio.io.formats.base import READERS
from segstudio.io.formats.instances import renumber
from segstudio.io.formats.import_base import (AnnotationImportError, Found, ImportOptions,
                                              Planned)
from segstudio.io.images import ImageReadError
from segstudio.io.masks import MaskError, decode_mask_png, encode_mask_png
from segstudio.io.project import Project, labelled_fraction

__all__ = ["READERS", "UNLABELED_TARGET", "AnnotationImportError", "ImportOptions",
           "ImportPreview", "ImportResult", "import_annotations", "preview_import"]

log = logging.getLogger(__name__)


@dataclass
class ImportResult:
    imported: list[str]                        # image ids whose masks were replaced
    added_classes: list[str]
    skipped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)   # imported, but changed (e.g. clipped)


@dataclass(frozen=True)
class ImportPreview:
    """What an import would do, for a class-mapping dialog: nothing is written."""

    images: list[str]                  # image ids that would get a mask
    source_classes: list[str]          # class names used in the source
    unknown_classes: list[str]         # of those, names matching no project class (after mapping)
    skipped: list[str]
    warnings: list[str] = field(default_factory=list)
    object_classes: list[str] = field(default_factory=list)   # source classes that hold objects


def preview_import(project: Project, src: Path | str, options: ImportOptions | None = None, *,
                   cancel: CancelToken | None = None) -> ImportPreview:
    """Read and check `src` completely (same errors as an import) without writing anything."""
    options = options or ImportOptions()
    plans, names, found = _plan(project, Path(src), options, cancel or CancelToken())
    mapping = _mapping(options, names, found)
    known = {c.name.casefold() for c in project.classes} | {UNLABELED_TARGET}
    unknown = sorted(n for n in names if _target(project, n, mapping).casefold() not in known)
    return ImportPreview([p.entry.id for p in plans], sorted(names), unknown, found.skipped,
                         found.warnings, sorted(found.object_names))


def import_annotations(project: Project, src: Path | str, options: ImportOptions | None = None, *,
                       on_progress: ProgressFn | None = None,
                       cancel: CancelToken | None = None) -> ImportResult:
    """Read annotations from `src` into `project`'s masks; raises AnnotationImportError."""
    options = options or ImportOptions()
    cancel = cancel or CancelToken()
    src = Path(src)
    plans, names, found = _plan(project, src, options, cancel)
    class_of, new = _resolve_classes(project, names, options, src, found)
    result = _write(project, plans, class_of, new, found, on_progress, cancel)
    result.warnings = list(found.warnings)
    return result


def _plan(project: Project, src: Path, options: ImportOptions,
          cancel: CancelToken) -> tuple[list[Planned], set[str], Found]:
    if options.format not in READERS:
        raise AnnotationImportError(f"unknown import format {options.format!r}; known: "
                                    f"{list(READERS)}")
    if options.unannotated not in ("background", "ignore"):
        raise AnnotationImportError(f"unannotated must be 'background' or 'ignore', got "
                                    f"{options.unannotated!r}")
    if not src.exists():
        raise AnnotationImportError(f"{src}: not found")
    fill = BACKGROUND if options.unannotated == "background" else UNLABELED
    found = Found()
    try:
        plans, names = READERS[options.format].make(project, src, fill, options, found, cancel)
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


def _check_duplicates(plans: list[Planned]) -> None:
    seen: dict[str, str] = {}
    for p in plans:
        if p.entry.id in seen:
            raise AnnotationImportError(f"{seen[p.entry.id]} and {p.source} are both for image "
                                        f"'{p.entry.display_name}'")
        seen[p.entry.id] = p.source


def _mapping(options: ImportOptions, names: set[str], found: Found) -> dict[str, str]:
    """options.mapping keyed by source names: a numeric key that is no source name maps the
    raw mask value (folder imports: `--map 7=cell` for pixels of value 7)."""
    out: dict[str, str] = {}
    for old, new in (options.mapping or {}).items():
        key = old if old in names or old not in found.raw_ids else found.raw_ids[old]
        if key != old and key in (options.mapping or {}):
            continue                    # the name itself is mapped too: the name wins
        out[key] = new
    return out


UNLABELED_TARGET = "unlabeled"      # map a source class to this: its pixels become 255
_DEFAULT_TARGETS = {"__ignore__": UNLABELED_TARGET}   # labelme's convention (labelme2voc: -1)


def _target(project: Project, name: str, mapping: dict[str, str]) -> str:
    """The project class name (or UNLABELED_TARGET) a source class goes to."""
    if name in mapping:
        return mapping[name]
    if name == "_background_":             # labelme2voc's class 0
        bg = project.class_by_id(BACKGROUND)
        return bg.name if bg is not None else name
    return _DEFAULT_TARGETS.get(name, name)


def _resolve_classes(project: Project, names: set[str], options: ImportOptions,
                     src: Path, found: Found) -> tuple[dict[str, int], dict[str, str]]:
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
        target = _target(project, name, mapping)
        if target.casefold() == UNLABELED_TARGET:
            class_of[name] = UNLABELED
        elif target.casefold() in by_name:
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


def _raise_unnamed(found: Found, lacking: set[str]) -> None:
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
        f"(255 stays unlabeled)" + (
            "; so many ids look like object ids: if it is an instance label image (each "
            "value one object), import it as 'instances' (--format instances)"
            if len(ids) > 10 else ""))


def _mark_object_classes(project: Project, class_of: dict[str, int], found: Found) -> list[str]:
    """Turns the classes the source holds objects of into object classes (instance images
    always, COCO / labelme with as_objects); returns the names of those that were not."""
    ids = {class_of[n] for n in found.object_names if n in class_of} - {BACKGROUND, UNLABELED}
    changed = [c for c in project.classes if c.id in ids and not c.objects]
    if changed:
        project.set_classes([replace(c, objects=True) if c in changed else c
                             for c in project.classes])
    return [c.name for c in changed]


def _objects_for(plan: Planned, class_of: dict[str, int], mask: np.ndarray,
                 object_ids: frozenset[int]) -> np.ndarray | None:
    """The plan's object ids where the mask holds an object class, renumbered 1..n; None when
    the source has no objects there."""
    if plan.objects is None or not object_ids:
        return None
    ids = np.asarray(plan.objects(class_of))
    keep = np.zeros(256, bool)
    keep[list(object_ids)] = True
    ids = np.where(keep[mask], ids, 0)
    if not ids.any():
        return None
    return renumber(ids)[0]


def _write_layers(project: Project, image_id: str, mask: np.ndarray, objects: np.ndarray | None,
                  had_objects: bool) -> None:
    """The mask and its objects; a mask without objects removes the layer it replaces (old
    objects go with the old mask)."""
    if objects is None and not had_objects:
        project.masks.write(image_id, mask)
    else:
        project.masks.write(image_id, mask, objects)


def _write(project: Project, plans: list[Planned], class_of: dict[str, int], new: dict[str, str],
           found: Found, on_progress: ProgressFn | None,
           cancel: CancelToken) -> ImportResult:
    cancel.raise_if_cancelled()
    old_classes = list(project.classes)
    old_entries = list(project.images)
    previous: list[tuple[str, bytes | None, np.ndarray | None]] = []
    added: dict[str, int] = {}
    try:
        for source, target in new.items():
            if target.casefold() not in added:
                added[target.casefold()] = project.add_class(target).id
            class_of[source] = added[target.casefold()]
        made_objects = _mark_object_classes(project, class_of, found)
        object_ids = object_class_ids(project.classes)
        for i, plan in enumerate(plans):
            cancel.raise_if_cancelled()
            try:
                mask = plan.build(class_of)
                objects = _objects_for(plan, class_of, mask, object_ids)
            except (FormatError, ValueError, TypeError, KeyError, IndexError, zlib.error) as e:
                # planning checked the source; this is the net for what it missed
                log.exception("building the mask of %s", plan.source)
                raise AnnotationImportError(f"{plan.source}: cannot be turned into a mask "
                                            f"({type(e).__name__}: {e})") from None
            e = plan.entry
            before, before_objects = None, None
            if project.masks.has_mask(e.id):
                info = project.probe(e)
                old_mask, before_objects = project.masks.load_layers(e.id, (info.height, info.width))
                before = encode_mask_png(old_mask)
            previous.append((e.id, before, before_objects))
            _write_layers(project, e.id, mask, objects, before_objects is not None)
            project.update_entry(e.id, labelled=labelled_fraction(mask))
            if on_progress:
                on_progress(Progress(i + 1, len(plans), e.id))
        project.save()
    except BaseException:
        for image_id, before, before_objects in reversed(previous):
            try:
                if before is None:
                    project.masks.png_path(image_id).unlink(missing_ok=True)
                    for path in project.masks.objects_paths(image_id):
                        path.unlink(missing_ok=True)
                else:
                    _write_layers(project, image_id,
                                  decode_mask_png(before, project.masks.png_path(image_id)),
                                  before_objects, project.masks.has_objects(image_id))
            except Exception:      # keep undoing the rest; the original error is what matters
                log.exception("could not restore the mask of %s", image_id)
        project.images[:] = old_entries
        project.classes = old_classes
        project.save()
        raise
    result = ImportResult([p.entry.id for p in plans], sorted(set(new.values())), found.skipped)
    if made_objects:
        found.warnings.append(f"class(es) {made_objects} now hold objects (one id per object "
                              f"beside the class), as the imported annotations do")
    return result
