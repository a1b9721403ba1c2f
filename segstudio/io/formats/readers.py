"""Import readers, one per format: folder of label images, COCO JSON, YOLO-seg, labelme JSON.

Each registers itself with `@register_reader` (io.formats.base) and follows the contract in
io.formats.import_base: read and check everything, write nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from segstudio.core.classes import UNLABELED, ClassError, source_class_name
from segstudio.core.jobs import CancelToken
from segstudio.io.formats import FormatError, read_name_lines
from segstudio.io.formats.base import register_reader
from segstudio.io.formats.import_base import (AnnotationImportError, Found, ImportOptions, Matcher,
                                              Planned, check_shape, image_shape, list_files,
                                              unmatched)
from segstudio.io.project import Project

LABEL_EXTS = (".png", ".tif", ".tiff", ".bmp")


def class_list(folder: Path) -> tuple[dict[int, str], str] | None:
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
        names = read_name_lines(path)[:UNLABELED]
        return {i: n for i, n in enumerate(names)
                if n is not None and not n.startswith("_unused_")}, str(path)
    return None


@register_reader("folder", label="folder of label images", description="Folder of mask images (matched by file name)")
def plan_folder(project: Project, src: Path, fill: int, options: ImportOptions,
                 found: Found, cancel: CancelToken) -> tuple[list[Planned], set[str]]:
    from segstudio.io.formats.indexed_png import LabelImageError, read_label_image

    if not src.is_dir():
        raise FormatError(f"{src}: expected a folder of label images")
    folder = next((src / s for s in ("SegmentationClass", "VOCdevkit/VOC2012/SegmentationClass",
                                      "masks") if (src / s).is_dir()), src)
    listed = class_list(src)
    if listed is not None:
        by_value, found.listing = dict(listed[0]), listed[1]
    else:
        by_value = {c.id: c.name for c in project.classes}
    # a value no class has is the source class "class <v>": mapped (--map 7=cell, see
    # _mapping) or added (new classes) like any other name; named later in this dict
    names_of = dict(by_value)
    matcher = Matcher(project)
    plans, used = [], set()
    for path in list_files(folder, LABEL_EXTS):
        cancel.raise_if_cancelled()
        entry = matcher.find(path.stem, path.name)
        if entry is None:
            unmatched(str(path), options, found)
            continue
        shape = image_shape(project, entry)
        try:
            arr = read_label_image(path)
        except LabelImageError as e:
            raise FormatError(str(e)) from None
        check_shape(path, arr.shape[:2], entry, shape)
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
        plans.append(Planned(entry, str(path), build))
    found.raw_ids.update({str(v): names_of[v] for v in used})
    return plans, {names_of[v] for v in used}


@register_reader("coco", label="COCO", description="COCO JSON",
                 options=("unannotated", "as_objects"),
                 file_filter="JSON (*.json)")
def plan_coco(project: Project, src: Path, fill: int, options: ImportOptions,
               found: Found, cancel: CancelToken) -> tuple[list[Planned], set[str]]:
    from segstudio.io.formats.coco import read_coco, require_pycocotools

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
    matcher = Matcher(project)
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
                unmatched(what, options, found)
                continue
            shape = image_shape(project, entry)
            if (img.height, img.width) != shape:
                raise FormatError(f"{what} is declared {img.width} x {img.height} but the "
                                  f"project's image is {shape[1]} x {shape[0]}")
            used |= {coco.categories[a["category_id"]] for a in img.anns}

            plans.append(_coco_plan(entry, what, img, coco.categories, fill))
            if options.as_objects:
                found.object_names |= {coco.categories[a["category_id"]] for a in img.anns
                                       if a.get("iscrowd") not in (1, True)}
    return plans, used


def _coco_plan(entry, what: str, img, cats: dict[int, str], fill: int) -> Planned:
    from segstudio.io.formats.coco import rasterize_objects

    last: dict[str, np.ndarray] = {}        # one decoding gives the mask and the objects

    def paint(class_of: dict[str, int]):
        return rasterize_objects(img, {cid: class_of[n] for cid, n in cats.items()
                                       if n in class_of}, fill)

    def build(class_of: dict[str, int]) -> np.ndarray:
        mask, last["ids"] = paint(class_of)
        return mask

    def objects(class_of: dict[str, int]) -> np.ndarray:
        return last.pop("ids") if "ids" in last else paint(class_of)[1]
    return Planned(entry, what, build, objects)


@register_reader("yolo", label="YOLO-seg", description="YOLO segmentation labels",
                 options=("unannotated", "as_objects"))
def plan_yolo(project: Project, src: Path, fill: int, options: ImportOptions,
               found: Found, cancel: CancelToken) -> tuple[list[Planned], set[str]]:
    from segstudio.io.formats.yolo import (class_names, label_files, match_keys, rasterize,
                                           rasterize_objects, read_label_file)

    if not src.is_dir():
        raise FormatError(f"{src}: expected a YOLO dataset folder (with data.yaml and labels/)")
    try:
        names, names_from = class_names(src)
    except ImportError as e:
        raise AnnotationImportError(str(e)) from None
    matcher = Matcher(project)
    plans, used = [], set()
    for path in label_files(src):     # only labels/ folders: never README.txt beside them
        cancel.raise_if_cancelled()
        entry = matcher.find(*match_keys(path))
        if entry is None:
            unmatched(str(path), options, found)
            continue
        shape = image_shape(project, entry)
        objects = read_label_file(path, len(names), shape, found.warnings, names_from)
        used |= {names[o.class_index] for o in objects}

        if options.as_objects:
            found.object_names |= {names[o.class_index] for o in objects}

        def build(class_of: dict[str, int], objects=objects, shape=shape) -> np.ndarray:
            return rasterize(objects, shape, [class_of.get(n, fill) for n in names], fill)

        def object_ids(class_of: dict[str, int], objects=objects, shape=shape) -> np.ndarray:
            return rasterize_objects(objects, shape)
        plans.append(Planned(entry, str(path), build, object_ids))
    return plans, used


@register_reader("labelme", label="labelme", description="labelme JSON files",
                 options=("unannotated", "as_objects"))
def plan_labelme(project: Project, src: Path, fill: int, options: ImportOptions,
                  found: Found, cancel: CancelToken) -> tuple[list[Planned], set[str]]:
    from segstudio.io.formats.labelme import rasterize, rasterize_objects, read_labelme

    files = [src] if src.is_file() else list_files(src, (".json",))
    if not files:
        raise FormatError(f"{src}: no labelme .json files")
    matcher = Matcher(project)
    plans, used, bad = [], set(), []
    for path in files:
        cancel.raise_if_cancelled()
        try:       # a bad file is reported and left out; the others are imported
            first = read_labelme(path)
            image_name = Path(first.image_path.replace("\\", "/")).name
            keys = [k for k in (image_name, image_name.split(".")[0], path.stem) if k]
            entry = matcher.find(*keys)
            if entry is None:
                unmatched(str(path), options, found)
                continue
            parsed = read_labelme(path, image_shape(project, entry))
        except FormatError as e:
            bad.append(str(e))
            continue
        shape = image_shape(project, entry)
        found.warnings += parsed.warnings
        used |= {s.label for s in parsed.shapes}

        if options.as_objects:
            found.object_names |= {s.label for s in parsed.shapes}

        def build(class_of: dict[str, int], parsed=parsed, shape=shape) -> np.ndarray:
            return rasterize(parsed, shape, class_of, fill)

        def objects(class_of: dict[str, int], parsed=parsed, shape=shape) -> np.ndarray:
            return rasterize_objects(parsed, shape)
        plans.append(Planned(entry, str(path), build, objects))
    if bad and not plans:
        raise FormatError(bad[0] + (f" (and {len(bad) - 1} more file(s) could not be read)"
                                    if len(bad) > 1 else ""))
    found.skipped += [f"{b}; the file was left out" for b in bad]
    return plans, used


@register_reader("instances", label="instance label images",
                 description="Folder of instance label images (each value one object)")
def plan_instances(project: Project, src: Path, fill: int, options: ImportOptions,
                   found: Found, cancel: CancelToken) -> tuple[list[Planned], set[str]]:
    """Instance label images (io.formats.instances): pixels of an object get its class, the
    object layer its id. Beside class masks and a class list (our PNG export: masks/,
    instances/, classes.json) each object takes its class from the mask; otherwise every
    object is of one class (options.object_class). A file that cannot be read or whose size
    differs from its image is reported and left out; the others are imported."""
    from segstudio.io.formats.instances import INSTANCE_EXTS, match_keys, read_instance_image

    folder = src / "instances" if src.is_dir() and (src / "instances").is_dir() else src
    files = [src] if src.is_file() else list_files(folder, INSTANCE_EXTS)
    if not files:
        raise FormatError(f"{src}: no instance label images (.png, .tif) in it or in instances/")
    listed = class_list(src) if folder != src and (src / "masks").is_dir() else None
    target = None if listed is not None else _object_target(project, options)
    matcher = Matcher(project)
    plans, used, bad = [], set(), []
    for path in files:
        cancel.raise_if_cancelled()
        entry = matcher.find(*match_keys(path))
        if entry is None:
            unmatched(str(path), options, found)
            continue
        try:
            ids = read_instance_image(path)
            check_shape(path, ids.shape, entry, image_shape(project, entry), "instance image")
            if listed is None:
                names_of, mask_path = {1: target}, None
                classes = {target} if ids.any() else set()
            else:
                names_of, mask_path = listed[0], _class_mask_beside(src, folder, path)
                classes = _classes_of_objects(mask_path, ids, names_of, entry, project)
        except FormatError as e:
            bad.append(str(e))
            continue
        used |= classes
        found.object_names |= classes
        plans.append(_instance_plan(entry, path, names_of, mask_path))
    if bad and not plans:
        raise FormatError(bad[0] + (f" (and {len(bad) - 1} more file(s) could not be used)"
                                    if len(bad) > 1 else ""))
    found.skipped += [f"{b}; the file was left out" for b in bad]
    return plans, used


def _object_target(project: Project, options: ImportOptions) -> str:
    if options.object_class is not None:
        try:
            return source_class_name(options.object_class)
        except ClassError as e:
            raise FormatError(f"object class: {e}") from None
    objects = [c for c in project.classes if getattr(c, "objects", False)]
    if len(objects) == 1:
        return objects[0].name
    foreground = [c for c in project.classes if c.id != 0]
    return foreground[0].name if len(foreground) == 1 else "object"


def _class_mask_beside(src: Path, folder: Path, path: Path) -> Path:
    rel = path.relative_to(folder)
    for ext in LABEL_EXTS:
        mask_path = (src / "masks" / rel).with_suffix(ext)
        if mask_path.is_file():
            return mask_path
    raise FormatError(f"{path}: no class mask beside it (looked for "
                      f"{(src / 'masks' / rel).with_suffix('.png')}), which the class list "
                      f"{src / 'classes.json'} says should be there")


def _classes_of_objects(mask_path: Path, ids: np.ndarray, names_of: dict[int, str], entry,
                        project: Project) -> set[str]:
    from segstudio.io.formats.indexed_png import LabelImageError, read_label_image

    try:
        mask = read_label_image(mask_path)
    except LabelImageError as e:
        raise FormatError(str(e)) from None
    check_shape(mask_path, mask.shape[:2], entry, ids.shape)
    values = set(np.unique(mask).tolist()) - {UNLABELED}
    unnamed = sorted(values - set(names_of))
    if unnamed:
        raise FormatError(f"{mask_path}: holds class id(s) {unnamed} that the class list "
                          f"does not name")
    return {names_of[v] for v in np.unique(mask[ids > 0]).tolist() if v != UNLABELED}


def _instance_plan(entry, path: Path, names_of: dict[int, str],
                   mask_path: Path | None) -> Planned:
    from segstudio.io.formats.indexed_png import read_label_image
    from segstudio.io.formats.instances import read_instance_image

    last: dict[str, np.ndarray] = {}       # build reads the file, objects takes what it read

    def build(class_of: dict[str, int]) -> np.ndarray:
        ids = last["ids"] = read_instance_image(path)
        if mask_path is None:
            out = np.zeros(ids.shape, np.uint8)       # 0 is background in an instance image
            out[ids > 0] = class_of[names_of[1]]
            return out
        lut = np.full(256, UNLABELED, np.uint8)
        for v, name in names_of.items():
            if name in class_of:
                lut[v] = class_of[name]
        return lut[read_label_image(mask_path)]

    def objects(class_of: dict[str, int]) -> np.ndarray:
        return last.pop("ids") if "ids" in last else read_instance_image(path)
    return Planned(entry, str(path), build, objects)
