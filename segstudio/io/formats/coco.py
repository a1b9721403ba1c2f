"""COCO instance annotations: writing objects from masks, reading them back into masks.

Needs pycocotools (`pip install segstudio[coco]`) for RLE and for decoding polygons the
way COCO's own tools do.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segstudio.core.classes import ClassError, source_class_name
from segstudio.io.formats import FormatError
from segstudio.io.formats.polygons import (Instance, edge_polygon, edge_polygons, edge_slack,
                                           has_holes, instances, is_number)

log = logging.getLogger(__name__)

COCO_MODES = ("polygon", "rle")


def require_pycocotools():
    try:
        from pycocotools import mask as mask_utils
    except ImportError:
        raise ImportError("COCO needs pycocotools, which is not installed; install it with "
                          "`pip install pycocotools` (or `pip install segstudio[coco]`)") from None
    return mask_utils


def annotations_for(mask: np.ndarray, image_id: int, class_ids: list[int], first_id: int,
                    mode: str = "polygon", objects: np.ndarray | None = None,
                    object_classes: frozenset[int] | set[int] = frozenset()) -> list[dict[str, Any]]:
    """COCO annotations of the classes in `class_ids`: one per object of the classes in
    `object_classes` (ids in `objects`), one per 8-connected region of the others.

    An object is never merged with the object it touches, and is written without loss: in
    polygon mode as its outlines (one per part), as RLE when it has holes (a polygon would
    fill them) or when its outlines would not decode back to its own pixels."""
    if mode not in COCO_MODES:
        raise ValueError(f"unknown COCO mode {mode!r}; known: {list(COCO_MODES)}")
    mu = require_pycocotools() if mode == "rle" or object_classes else None
    out = []
    for inst in instances(mask, class_ids, objects, object_classes):
        ann: dict[str, Any] = {"id": first_id + len(out), "image_id": image_id,
                               "category_id": inst.class_id, "bbox": list(inst.bbox),
                               "area": inst.area, "iscrowd": 0}
        polys = None
        if mode == "polygon" and not inst.object_id:
            polys = [edge_polygon(inst)]
        elif mode == "polygon":
            polys = _exact_polygons(inst, mu)
        if polys is not None:
            ann["segmentation"] = polys
        else:
            ann["segmentation"] = instance_rle(inst, mask.shape, mu)
        out.append(ann)
    return out


def instance_rle(inst: Instance, shape: tuple[int, int], mu) -> dict[str, Any]:
    """The instance as compressed COCO RLE of the whole image, from its own columns only:
    encoding a full-size copy per object costs h * w each (seconds for thousands of nuclei)."""
    h, w = int(shape[0]), int(shape[1])
    x0, y0, bw, bh = inst.bbox
    band = np.zeros((h, bw), np.uint8)             # the object's columns, full height
    band[y0:y0 + bh] = inst.crop
    flat = band.ravel(order="F")                   # COCO runs go down the columns
    edges = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
    if flat[0]:
        runs.insert(0, 0)                          # runs start with a (maybe empty) zero run
    runs[0] += x0 * h
    tail = (w - x0 - bw) * h
    if tail:
        if len(runs) % 2:                          # ends on zeros: lengthen that run
            runs[-1] += tail
        else:
            runs.append(tail)
    rle = mu.frPyObjects({"size": [h, w], "counts": runs}, h, w)
    return {"size": [h, w], "counts": rle["counts"].decode("ascii")}


def _exact_polygons(inst: Instance, mu) -> list[list[float]] | None:
    """An object's outlines when they decode (as pycocotools does) to exactly its pixels."""
    if has_holes(inst):
        return None
    polys = edge_polygons(inst)
    x0, y0, w, h = inst.bbox
    local = [[v - (x0 if k % 2 == 0 else y0) for k, v in enumerate(p)] for p in polys]
    # decoded in the object's own box: cheap, and what lies outside it is not the object
    got = mu.decode(mu.merge(mu.frPyObjects(local, h, w))).astype(bool)
    return polys if np.array_equal(got, inst.crop) else None


def categories(names: dict[int, str]) -> list[dict[str, Any]]:
    return [{"id": cid, "name": name, "supercategory": "object"} for cid, name in names.items()]


# -- reading ---------------------------------------------------------------------------------
@dataclass
class CocoImage:
    coco_id: int
    file_name: str
    height: int
    width: int
    anns: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class CocoFile:
    path: Path
    categories: dict[int, str]
    images: dict[int, CocoImage]
    warnings: list[str] = field(default_factory=list)   # what was clipped, for the user


def _where(path: Path, i: int, ann: Any) -> str:
    aid = ann.get("id") if isinstance(ann, dict) else None
    shown = aid if isinstance(aid, (int, str)) and not isinstance(aid, bool) else None
    return f"{path}: annotations[{i}]" + (f" (id {shown})" if shown is not None else "")


def _whole(v: Any) -> int | None:
    """v as an int when it is a whole JSON number (3 or 3.0), else None."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    if isinstance(v, float) and not v.is_integer():
        return None
    return int(v)


def _kind(v: Any) -> str:
    return {dict: "an object", list: "a list", str: "text", type(None): "null",
            bool: "true/false"}.get(type(v), type(v).__name__)


def read_coco(path: Path) -> CocoFile:
    """Parse and check a COCO instances file completely; raises FormatError naming the place."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise FormatError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: "
                          f"{e.msg})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise FormatError(f"{path}: cannot be read ({e})") from None
    except RecursionError:
        raise FormatError(f"{path}: nested too deeply to be a COCO file") from None
    if not isinstance(raw, dict) or not all(k in raw for k in ("images", "annotations", "categories")):
        raise FormatError(f"{path}: not a COCO instances file (needs 'images', 'annotations' "
                          f"and 'categories')")
    for key in ("images", "annotations", "categories"):
        if not isinstance(raw[key], list):
            raise FormatError(f"{path}: '{key}' must be a list, got {_kind(raw[key])}")
    cats: dict[int, str] = {}
    for i, c in enumerate(raw["categories"]):
        cid = _whole(c.get("id")) if isinstance(c, dict) else None
        if cid is None or "name" not in c:
            raise FormatError(f"{path}: categories[{i}] needs a whole-number 'id' and a 'name'")
        try:
            cats[cid] = source_class_name(c["name"])
        except ClassError as e:
            raise FormatError(f"{path}: categories[{i}].name: {e}") from None
    images: dict[int, CocoImage] = {}
    for i, im in enumerate(raw["images"]):
        fields = [im.get(k) if isinstance(im, dict) else None
                  for k in ("id", "file_name", "height", "width")]
        iid, h, w = _whole(fields[0]), _whole(fields[2]), _whole(fields[3])
        if iid is None or not isinstance(fields[1], str) or h is None or w is None:
            raise FormatError(f"{path}: images[{i}] needs 'id', 'file_name', 'height' and "
                              f"'width' (whole numbers, the name as text)")
        if h <= 0 or w <= 0:
            raise FormatError(f"{path}: images[{i}] has size {w} x {h}; both must be positive")
        if iid in images:
            raise FormatError(f"{path}: images[{i}] repeats image id {iid}")
        images[iid] = CocoImage(iid, fields[1], h, w)
    clipped: list[tuple[str, float]] = []
    for i, ann in enumerate(raw["annotations"]):
        where = _where(path, i, ann)
        if not isinstance(ann, dict) or "image_id" not in ann or "segmentation" not in ann:
            raise FormatError(f"{where}: needs 'image_id', 'category_id' and 'segmentation'")
        iid, cid = _whole(ann["image_id"]), _whole(ann.get("category_id"))
        img = images.get(iid) if iid is not None else None
        if img is None:
            raise FormatError(f"{where}: image_id {ann['image_id']!r} is not in 'images'")
        if cid not in cats:
            raise FormatError(f"{where}: category_id {ann.get('category_id')!r} is not in "
                              f"'categories' (known: {sorted(cats)})")
        ann = {**ann, "image_id": iid, "category_id": cid}
        over = _check_segmentation(ann["segmentation"], img, where)
        if over > 0:
            clipped.append((f"annotations[{i}]", over))
        img.anns.append(ann)
    warnings = []
    if clipped:
        places = ", ".join(p for p, _ in clipped[:5]) + (", ..." if len(clipped) > 5 else "")
        warnings.append(f"{path}: {len(clipped)} annotation(s) reach up to "
                        f"{max(o for _, o in clipped):.2f} px past the image edge ({places}); "
                        f"clipped to the image")
    return CocoFile(path, cats, images, warnings)


def rle_runs(counts: str) -> np.ndarray | None:
    """The run lengths of a compressed COCO RLE string, or None if it is not one.

    Same decoding as pycocotools' rleFrString (5 bits per character from '0', bit 0x20 =
    more to come, 0x10 in the last = negative, runs from the third on are deltas to the one
    two before), done here first because pycocotools trusts the string: runs that do not
    add up to h * w leave part of its output uninitialised.
    """
    try:
        c = np.frombuffer(counts.encode("ascii"), np.uint8).astype(np.int64) - 48
    except UnicodeEncodeError:
        return None
    if c.size == 0 or c.min() < 0 or c.max() > 63 or c[-1] & 0x20:
        return None
    ends = np.flatnonzero((c & 0x20) == 0)
    starts = np.concatenate([[0], ends[:-1] + 1])
    if (ends - starts).max() >= 12:        # more than 60 bits: no image is that large
        return None
    pos = np.arange(c.size) - np.repeat(starts, ends - starts + 1)
    x = np.add.reduceat((c & 0x1F) << (5 * pos), starts)
    negative = (c[ends] & 0x10) != 0
    x[negative] -= np.left_shift(1, 5 * (ends - starts + 1)[negative])
    runs = x.copy()
    runs[1::2] = np.cumsum(x[1::2])
    if len(x) > 2:
        runs[2::2] = np.cumsum(x[2::2])
    return runs


def _check_segmentation(seg: Any, img: CocoImage, where: str) -> float:
    """Raises FormatError for a segmentation that is not sound; returns how far (px) its
    polygons reach past the image edge (0 if not), within the slack that is clipped."""
    if isinstance(seg, dict):
        _check_rle(seg, img, where)
        return 0.0
    if not isinstance(seg, list) or not seg:
        raise FormatError(f"{where}: segmentation must be a list of polygons or an RLE object, "
                          f"got {_kind(seg) if seg != [] else 'an empty list'}")
    over = 0.0
    slack = (edge_slack(img.width), edge_slack(img.height))
    for k, poly in enumerate(seg):
        if not isinstance(poly, list) or len(poly) < 6 or len(poly) % 2:
            n = len(poly) if isinstance(poly, list) else _kind(poly)
            raise FormatError(f"{where}: polygon {k} has {n} coordinates; expected an even "
                              f"number, at least 6 (x0, y0, x1, y1, ...)")
        if not all(is_number(v) for v in poly):
            bad = next(v for v in poly if not is_number(v))
            raise FormatError(f"{where}: polygon {k} holds {bad!r}, which is not a number")
        pts = np.asarray(poly, np.float64).reshape(-1, 2)
        if not np.isfinite(pts).all():
            bad = pts[~np.isfinite(pts)][0]
            raise FormatError(f"{where}: polygon {k} holds the coordinate {bad}, which is not a "
                              f"finite number; the annotation was refused")
        lo, hi = pts.min(0), pts.max(0)
        past = np.maximum(-lo, hi - (img.width, img.height))     # per axis, px past an edge
        if (past > slack).any():
            raise FormatError(f"{where}: polygon {k} reaches ({lo[0]:g}, {lo[1]:g})-({hi[0]:g}, "
                              f"{hi[1]:g}), outside its image '{img.file_name}' "
                              f"({img.width} x {img.height}) by more than the "
                              f"{slack[0]:g} x {slack[1]:g} px that are clipped")
        over = max(over, float(past.max()))
    return over


def _check_rle(seg: dict[str, Any], img: CocoImage, where: str) -> None:
    size, counts = seg.get("size"), seg.get("counts")
    if not isinstance(size, list) or len(size) != 2 or "counts" not in seg:
        raise FormatError(f"{where}: RLE segmentation needs 'size' [h, w] and 'counts'")
    if [_whole(s) for s in size] != [img.height, img.width]:
        raise FormatError(f"{where}: RLE size {size} differs from its image "
                          f"'{img.file_name}' ({img.height} x {img.width}, h x w)")
    pixels = img.height * img.width
    if isinstance(counts, str):
        runs = rle_runs(counts)
        if runs is None:
            raise FormatError(f"{where}: segmentation.counts is not a COCO RLE string (expected "
                              f"the characters '0'..'o' that pycocotools writes)")
    elif isinstance(counts, list) and all(_whole(v) is not None for v in counts):
        runs = np.array([_whole(v) for v in counts], dtype=object)
    else:
        raise FormatError(f"{where}: segmentation.counts must be a list of whole numbers or an "
                          f"RLE string, got {_kind(counts)}"
                          + (" holding other values" if isinstance(counts, list) else ""))
    if len(runs) and min(runs) < 0:
        raise FormatError(f"{where}: segmentation.counts holds a negative run length")
    total = int(sum(int(r) for r in runs))
    if total != pixels:
        raise FormatError(f"{where}: segmentation.counts covers {total} pixels but its image "
                          f"'{img.file_name}' has {img.height} x {img.width} = {pixels}")


def _decoded(img: CocoImage):
    """(annotation, its (h, w) uint8 pixels) in file order, decoded as pycocotools does."""
    mu = require_pycocotools()
    h, w = img.height, img.width
    for ann in img.anns:
        seg = ann["segmentation"]
        if isinstance(seg, dict):
            if isinstance(seg["counts"], list):
                rle = mu.frPyObjects({"size": [h, w], "counts": [int(v) for v in seg["counts"]]},
                                     h, w)
            else:
                rle = {"size": [h, w], "counts": seg["counts"].encode("ascii")}
            m = mu.decode(rle)
        else:
            # unclipped: pycocotools crops what lies outside the image itself (annToMask's
            # pixels); moving the vertices first would change the edges' slopes
            polys = [[float(v) for v in p] for p in seg]
            m = mu.decode(mu.merge(mu.frPyObjects(polys, h, w)))
        yield ann, m.astype(bool)


def rasterize(img: CocoImage, class_of: dict[int, int], fill: int) -> np.ndarray:
    """The image's annotations painted in file order: category -> class id via `class_of`."""
    return rasterize_objects(img, class_of, fill, objects=False)[0]


def rasterize_objects(img: CocoImage, class_of: dict[int, int], fill: int,
                      objects: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """The class mask of `rasterize` and one object per annotation (uint32 1..n, painted in
    the same order), from one decoding.

    A crowd annotation (iscrowd 1) is a group of objects nobody separated: its pixels keep
    their class but no object id (and clear the id of what they cover)."""
    out = np.full((img.height, img.width), fill, np.uint8)
    ids = np.zeros((img.height, img.width), np.uint32) if objects else None
    for k, (ann, m) in enumerate(_decoded(img), 1):
        out[m] = class_of[int(ann["category_id"])]
        if ids is not None:
            ids[m] = 0 if ann.get("iscrowd") in (1, True) else k
    return out, ids
