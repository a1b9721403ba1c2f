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

from segstudio.io.formats import FormatError
from segstudio.io.formats.polygons import edge_polygon, instances

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
                    mode: str = "polygon") -> list[dict[str, Any]]:
    """COCO annotations (one per 8-connected object) of the classes in `class_ids`."""
    if mode not in COCO_MODES:
        raise ValueError(f"unknown COCO mode {mode!r}; known: {list(COCO_MODES)}")
    mu = require_pycocotools() if mode == "rle" else None
    out = []
    for inst in instances(mask, class_ids):
        ann: dict[str, Any] = {"id": first_id + len(out), "image_id": image_id,
                               "category_id": inst.class_id, "bbox": list(inst.bbox),
                               "area": inst.area, "iscrowd": 0}
        if mode == "polygon":
            ann["segmentation"] = [edge_polygon(inst)]
        else:
            rle = mu.encode(inst.full_mask(mask.shape, order="F"))   # pycocotools wants F order
            ann["segmentation"] = {"size": [int(mask.shape[0]), int(mask.shape[1])],
                                   "counts": rle["counts"].decode("ascii")}
        out.append(ann)
    return out


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


def _where(path: Path, i: int, ann: Any) -> str:
    aid = ann.get("id") if isinstance(ann, dict) else None
    return f"{path}: annotations[{i}]" + (f" (id {aid})" if aid is not None else "")


def read_coco(path: Path, tolerance: float = 1.0) -> CocoFile:
    """Parse and check a COCO instances file completely; raises FormatError naming the place."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise FormatError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: "
                          f"{e.msg})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise FormatError(f"{path}: cannot be read ({e})") from None
    if not isinstance(raw, dict) or not all(k in raw for k in ("images", "annotations", "categories")):
        raise FormatError(f"{path}: not a COCO instances file (needs 'images', 'annotations' "
                          f"and 'categories')")
    cats: dict[int, str] = {}
    for i, c in enumerate(raw["categories"]):
        try:
            cats[int(c["id"])] = str(c["name"])
        except (KeyError, TypeError, ValueError):
            raise FormatError(f"{path}: categories[{i}] needs an 'id' and a 'name'") from None
    images: dict[int, CocoImage] = {}
    for i, im in enumerate(raw["images"]):
        try:
            img = CocoImage(int(im["id"]), str(im["file_name"]), int(im["height"]), int(im["width"]))
        except (KeyError, TypeError, ValueError):
            raise FormatError(f"{path}: images[{i}] needs 'id', 'file_name', 'height' and "
                              f"'width'") from None
        if img.coco_id in images:
            raise FormatError(f"{path}: images[{i}] repeats image id {img.coco_id}")
        images[img.coco_id] = img
    for i, ann in enumerate(raw["annotations"]):
        where = _where(path, i, ann)
        if not isinstance(ann, dict) or "image_id" not in ann or "segmentation" not in ann:
            raise FormatError(f"{where}: needs 'image_id', 'category_id' and 'segmentation'")
        img = images.get(ann["image_id"]) if isinstance(ann["image_id"], int) else None
        if img is None:
            raise FormatError(f"{where}: image_id {ann['image_id']!r} is not in 'images'")
        if ann.get("category_id") not in cats:
            raise FormatError(f"{where}: category_id {ann.get('category_id')!r} is not in "
                              f"'categories' (known: {sorted(cats)})")
        _check_segmentation(ann["segmentation"], img, where, tolerance)
        img.anns.append(ann)
    return CocoFile(path, cats, images)


def _check_segmentation(seg: Any, img: CocoImage, where: str, tolerance: float) -> None:
    if isinstance(seg, dict):
        size = seg.get("size")
        if not isinstance(size, list) or len(size) != 2 or "counts" not in seg:
            raise FormatError(f"{where}: RLE segmentation needs 'size' [h, w] and 'counts'")
        if [int(s) for s in size] != [img.height, img.width]:
            raise FormatError(f"{where}: RLE size {size} differs from its image "
                              f"'{img.file_name}' ({img.height} x {img.width}, h x w)")
        return
    if not isinstance(seg, list) or not seg:
        raise FormatError(f"{where}: segmentation must be a list of polygons or an RLE object")
    for k, poly in enumerate(seg):
        if not isinstance(poly, list) or len(poly) < 6 or len(poly) % 2:
            n = len(poly) if isinstance(poly, list) else type(poly).__name__
            raise FormatError(f"{where}: polygon {k} has {n} coordinates; expected an even "
                              f"number, at least 6 (x0, y0, x1, y1, ...)")
        try:
            pts = np.asarray(poly, np.float64).reshape(-1, 2)
        except (TypeError, ValueError):
            raise FormatError(f"{where}: polygon {k} holds values that are not numbers") from None
        lo = pts.min(0)
        hi = pts.max(0)
        if (lo < -tolerance).any() or hi[0] > img.width + tolerance or hi[1] > img.height + tolerance:
            raise FormatError(f"{where}: polygon {k} reaches ({lo[0]:g}, {lo[1]:g})-({hi[0]:g}, "
                              f"{hi[1]:g}), outside its image '{img.file_name}' "
                              f"({img.width} x {img.height})")


def rasterize(img: CocoImage, class_of: dict[int, int], fill: int) -> np.ndarray:
    """The image's annotations painted in file order: category -> class id via `class_of`."""
    mu = require_pycocotools()
    h, w = img.height, img.width
    out = np.full((h, w), fill, np.uint8)
    for ann in img.anns:
        seg = ann["segmentation"]
        if isinstance(seg, dict):
            rle = mu.frPyObjects(seg, h, w) if isinstance(seg["counts"], list) else \
                {"size": seg["size"], "counts": seg["counts"].encode("ascii")
                 if isinstance(seg["counts"], str) else seg["counts"]}
            m = mu.decode(rle)
        else:
            polys = [np.clip(np.asarray(p, np.float64).reshape(-1, 2), 0, (w, h)).reshape(-1).tolist()
                     for p in seg]
            m = mu.decode(mu.merge(mu.frPyObjects(polys, h, w)))
        out[m.astype(bool)] = class_of[int(ann["category_id"])]
    return out
