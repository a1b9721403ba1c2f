"""Ultralytics YOLO segmentation labels: one text line per object, plus data.yaml.

A line is `class x1 y1 x2 y2 ...`: the class index (0-based over the exported classes,
background is not a class) then the outline through the centres of the edge pixels, each
coordinate divided by the image width or height (so within 0..1). Ultralytics draws these
back with cv2.fillPoly, which fills the same pixels.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segstudio.io.formats import FormatError
from segstudio.io.formats.polygons import centre_polygon, fill_centre_polygon, instances

log = logging.getLogger(__name__)


def label_lines(mask: np.ndarray, class_index: dict[int, int]) -> list[str]:
    """One line per 8-connected object; `class_index` maps class id -> YOLO index."""
    h, w = mask.shape
    lines = []
    for inst in instances(mask, list(class_index)):
        pts = centre_polygon(inst) / (w, h)
        coords = " ".join(f"{v:.6f}" for v in pts.reshape(-1))
        lines.append(f"{class_index[inst.class_id]} {coords}")
    return lines


def _yaml_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def data_yaml(root: Path, splits: list[str], names: list[str]) -> str:
    """data.yaml text; written by hand (no PyYAML needed to export), quoted so any name is safe."""
    lines = [f"path: {_yaml_str(str(root))}"]
    for split in ("train", "val", "test"):
        if split in splits:
            lines.append(f"{split}: images/{split}")
    if "val" not in splits and "train" in splits:
        lines.append("val: images/train  # no validation split was exported")
    lines.append(f"nc: {len(names)}")
    lines.append("names:")
    lines += [f"  {i}: {_yaml_str(n)}" for i, n in enumerate(names)]
    return "\n".join(lines) + "\n"


# -- reading ---------------------------------------------------------------------------------
def read_names(root: Path) -> list[str]:
    """Class names from data.yaml (or classes.txt) in a YOLO dataset folder."""
    for name in ("data.yaml", "dataset.yaml", "data.yml"):
        path = root / name
        if path.exists():
            try:
                import yaml
            except ImportError:
                raise ImportError("reading data.yaml needs PyYAML: `pip install pyyaml`") from None
            try:
                data = yaml.safe_load(path.read_text(encoding="utf-8"))
            except yaml.YAMLError as e:
                raise FormatError(f"{path}: not valid YAML ({e})") from None
            names = data.get("names") if isinstance(data, dict) else None
            if isinstance(names, dict):
                try:
                    keys = sorted(int(k) for k in names)
                except (TypeError, ValueError):
                    raise FormatError(f"{path}: 'names' keys must be class indices") from None
                if keys != list(range(len(keys))):
                    raise FormatError(f"{path}: 'names' indices must be 0..{len(keys) - 1}")
                return [str(names.get(k, names.get(str(k)))) for k in keys]
            if isinstance(names, list):
                return [str(n) for n in names]
            raise FormatError(f"{path}: has no 'names' list or mapping")
    path = root / "classes.txt"
    if path.exists():
        return [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    raise FormatError(f"{root}: no data.yaml (or classes.txt) naming the classes")


@dataclass(frozen=True)
class YoloObject:
    class_index: int
    points: np.ndarray     # (n, 2) normalised x, y
    line: int


def read_label_file(path: Path, n_classes: int, tolerance: float = 1e-3) -> list[YoloObject]:
    """Parse and check one label file; raises FormatError naming the file and line."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise FormatError(f"{path}: cannot be read ({e})") from None
    objects = []
    for no, raw in enumerate(text.splitlines(), 1):
        parts = raw.split()
        if not parts:
            continue
        where = f"{path}, line {no}"
        try:
            cls = int(parts[0])
            vals = np.array([float(v) for v in parts[1:]], np.float64)
        except ValueError:
            raise FormatError(f"{where}: expected a class index then numbers, got {raw.strip()[:60]!r}") from None
        if not 0 <= cls < n_classes:
            raise FormatError(f"{where}: class index {cls} outside 0..{n_classes - 1}")
        if len(vals) == 4:
            raise FormatError(f"{where}: 4 values is a detection box, not a segmentation polygon")
        if len(vals) % 2:
            raise FormatError(f"{where}: odd number of coordinates ({len(vals)}); a polygon "
                              f"needs x y pairs")
        if len(vals) < 6:
            raise FormatError(f"{where}: {len(vals) // 2} point(s); a polygon needs at least 3")
        if not np.isfinite(vals).all() or vals.min() < -tolerance or vals.max() > 1 + tolerance:
            raise FormatError(f"{where}: coordinates must be normalised to 0..1 (found "
                              f"{vals.min():g}..{vals.max():g}); the polygon is outside the image")
        objects.append(YoloObject(cls, np.clip(vals, 0, 1).reshape(-1, 2), no))
    return objects


def rasterize(objects: list[YoloObject], shape: tuple[int, int], class_of: list[int],
              fill: int) -> np.ndarray:
    """Objects painted in line order: YOLO index -> class id via `class_of`."""
    h, w = shape
    out = np.full((h, w), fill, np.uint8)
    for obj in objects:
        fill_centre_polygon(out, obj.points * (w, h), class_of[obj.class_index])
    return out
