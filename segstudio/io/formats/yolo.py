"""Ultralytics YOLO segmentation labels: one text line per object, plus data.yaml.

A line is `class x1 y1 x2 y2 ...`: the class index (0-based over the exported classes,
background is not a class) then the outline through the centres of the edge pixels, each
coordinate divided by the image width or height (so within 0..1). Ultralytics draws these
back with cv2.fillPoly after scaling by the width / height and casting to int32, which
truncates: a vertex written as 136.9999 / w lands on pixel 136, not 137. So every vertex is
written NUDGE px past its pixel centre, with enough decimals that the written value times the
size (in float32, as Ultralytics reads it) stays within [v, v + 2 * NUDGE): truncation gives v
and our own reader (1/16 px rounding) gives v too.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segstudio.core.classes import ClassError, source_class_name
from segstudio.io.formats import FormatError, read_name_lines
from segstudio.io.formats.polygons import centre_polygon, edge_slack, fill_centre_polygon, instances

log = logging.getLogger(__name__)


NUDGE = 0.004      # px past the pixel centre; with the rounding below a vertex stays < 0.01 px off


def coordinate_decimals(width: int, height: int) -> int:
    """Decimals that keep the written rounding (and float32 reading) under NUDGE / 2 px."""
    side = max(width, height, 1)
    # rounding to d decimals moves a normalised value by <= 0.5e-d, i.e. 0.5e-d * side px;
    # float32 adds ~6e-8 relative (0.0003 px at 5000 px), inside the remaining half
    return max(6, math.ceil(math.log10(side / NUDGE)))


def label_lines(mask: np.ndarray, class_index: dict[int, int], objects: np.ndarray | None = None,
                object_classes: frozenset[int] | set[int] = frozenset()) -> list[str]:
    """One line per object (`objects` ids of the classes in `object_classes`) or, for the
    other classes, per 8-connected region; `class_index` maps class id -> YOLO index.

    A line holds one outline without holes: an object's holes are filled, and of an object
    in several parts only the largest is written (YOLO-seg has one polygon per line)."""
    h, w = mask.shape
    d = coordinate_decimals(w, h)
    lines = []
    for inst in instances(mask, list(class_index), objects, object_classes):
        pts = (centre_polygon(inst) + NUDGE) / (w, h)
        coords = " ".join(f"{v:.{d}f}" for v in pts.reshape(-1))
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
MAX_YAML_BYTES = 1 << 20     # a data.yaml is a few lines; 1 MiB is generous


def _load_yaml(path: Path, text: str) -> object:
    """yaml.safe_load, refusing aliases: a data.yaml never needs one, and nested aliases
    ("billion laughs") expand a few hundred bytes into gigabytes of names."""
    import yaml

    class NoAliasLoader(yaml.SafeLoader):
        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise FormatError(
                    f"{path}: uses the YAML alias *{event.anchor} (line {event.start_mark.line + 1}); "
                    f"a data.yaml never needs aliases and they can expand without bound, so it "
                    f"is refused: write the names out")
            return super().compose_node(parent, index)

    loader = NoAliasLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _names_from(path: Path, names: object) -> list[str]:
    if isinstance(names, dict):
        keys = [k for k in names if isinstance(k, int) and not isinstance(k, bool)
                or isinstance(k, str) and k.isdigit()]
        if len(keys) != len(names):
            raise FormatError(f"{path}: 'names' keys must be class indices 0, 1, 2, ...")
        by_index = {int(k): v for k, v in names.items()}
        if sorted(by_index) != list(range(len(by_index))):
            raise FormatError(f"{path}: 'names' indices must be 0..{len(by_index) - 1}, each once")
        items = [by_index[i] for i in range(len(by_index))]
    elif isinstance(names, list):
        items = names
    else:
        raise FormatError(f"{path}: has no 'names' list or mapping")
    out = []
    for i, n in enumerate(items):
        try:
            out.append(source_class_name(n))
        except ClassError as e:
            raise FormatError(f"{path}: names[{i}]: {e}") from None
    return out


BACKGROUND_NAMES = ("background", "_background_", "__background__")


def read_names(root: Path) -> list[str]:
    """Class names from data.yaml (or classes.txt) in a YOLO dataset folder."""
    return class_names(root)[0]


def class_names(root: Path) -> tuple[list[str], Path]:
    """(names by YOLO index, the file they came from): data.yaml, else classes.txt.

    A classes.txt only counts when it is in YOLO order: one that begins with a background
    line or holds `_unused_<n>` lines lists mask values (other formats' classes.txt, or an
    export before YOLO got its own), and reading it as YOLO indices would shift every class,
    so it is refused with what to do."""
    for name in ("data.yaml", "dataset.yaml", "data.yml"):
        path = root / name
        if path.exists():
            try:
                import yaml
            except ImportError:
                raise ImportError("reading data.yaml needs PyYAML: `pip install pyyaml`") from None
            try:
                if path.stat().st_size > MAX_YAML_BYTES:
                    raise FormatError(f"{path}: {path.stat().st_size} bytes is too large for a "
                                      f"data.yaml (at most {MAX_YAML_BYTES})")
                data = _load_yaml(path, path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError) as e:
                raise FormatError(f"{path}: cannot be read ({e})") from None
            except yaml.YAMLError as e:
                mark, problem = getattr(e, "problem_mark", None), getattr(e, "problem", None)
                at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
                why = " ".join(str(problem or e).split())     # one line, whatever PyYAML wrote
                raise FormatError(f"{path}: not valid YAML ({at}{why})") from None
            except RecursionError:
                raise FormatError(f"{path}: nested too deeply to be a data.yaml") from None
            return _names_from(path, data.get("names") if isinstance(data, dict) else None), path
    path = root / "classes.txt"
    if path.exists():
        return _yolo_name_lines(path), path
    raise FormatError(f"{root}: no data.yaml (or classes.txt) naming the classes")


def _yolo_name_lines(path: Path) -> list[str]:
    lines = read_name_lines(path)
    while lines and lines[-1] is None:
        lines.pop()
    if None in lines:
        raise FormatError(f"{path}, line {lines.index(None) + 1}: blank line between class "
                          f"names; line n names YOLO class n - 1, so a gap would shift the "
                          f"classes after it: remove it or put a name there")
    if not lines:
        raise FormatError(f"{path}: names no classes")
    fix = ("add a data.yaml with `names:` (index: name) to say which is which, or make "
           "classes.txt list the YOLO classes only, in index order")
    if lines[0].casefold() in BACKGROUND_NAMES:
        then = f" (class 0 would then be '{lines[1]}')" if len(lines) > 1 else ""
        raise FormatError(f"{path}: line 1 is '{lines[0]}', but YOLO class 0 is the first real "
                          f"class (background has no index): this looks like a list by mask "
                          f"value, which would shift every class by one. Delete that line if "
                          f"it does not name a YOLO class{then}, or {fix}")
    unused = [i for i, n in enumerate(lines, 1) if n.startswith("_unused_")]
    if unused:
        raise FormatError(f"{path}, line {unused[0]}: '{lines[unused[0] - 1]}' is a gap in a "
                          f"list by mask value, not a YOLO class; {fix}")
    return lines


def label_files(src: Path) -> list[Path]:
    """The label files of a YOLO dataset: .txt files in folders named `labels` (Ultralytics
    finds a label by replacing /images/ with /labels/ in the image's path), so README.txt,
    README.roboflow.txt or notes beside them are never read as labels. Covers our layout
    (labels/<split>/), Roboflow's (train|valid|test/labels/) and a `labels` folder itself."""
    src = Path(src)
    if src.name == "labels":
        folders = [src]
    else:
        folders = sorted(p for p in src.rglob("labels") if p.is_dir())
        folders = [f for f in folders if not any(g in f.parents for g in folders)]
    files = {p for f in folders for p in f.rglob("*.txt")
             if p.is_file() and p.name != "classes.txt" and not p.name.startswith(".")}
    if not folders:
        raise FormatError(f"{src}: no labels/ folder; YOLO label files live in labels/ beside "
                          f"images/ (labels/train/, or train/labels/ as Roboflow writes them)")
    return sorted(files)


_IMAGE_SUFFIX = re.compile(r"^(.*)_(jpe?g|png|tiff?|bmp|webp)$", re.IGNORECASE)


def match_keys(path: Path) -> list[str]:
    """Names to match a label file to its image by: the stem, and for Roboflow's renamed files
    (`cells_01_png.rf.5f3c....txt`) the original name `cells_01.png` and stem `cells_01`."""
    keys = [path.stem]
    if ".rf." in path.stem:
        base = path.stem.split(".rf.")[0]
        m = _IMAGE_SUFFIX.match(base)
        keys += [f"{m[1]}.{m[2]}", m[1]] if m else [base]
    return keys


@dataclass(frozen=True)
class YoloObject:
    class_index: int
    points: np.ndarray     # (n, 2) normalised x, y
    line: int


def read_label_file(path: Path, n_classes: int, shape: tuple[int, int] | None = None,
                    warnings: list[str] | None = None,
                    names_from: Path | None = None) -> list[YoloObject]:
    """Parse and check one label file; raises FormatError naming the file and line.

    Coordinates a little outside 0..1 (polygons.edge_slack for an image of `shape` (h, w),
    1 % without one) are clipped, with a line in `warnings`; further out they are refused.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise FormatError(f"{path}: cannot be read ({e})") from None
    h, w = shape if shape is not None else (1, 1)
    slack = (np.array([edge_slack(w) / w, edge_slack(h) / h]) if shape is not None
             else np.array([0.01, 0.01]))                        # normalised, per axis
    objects, clipped = [], []
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
            named = (f" ({names_from.name} names {n_classes} class(es): a name missing there, "
                     f"or the wrong class list?)" if names_from is not None else "")
            raise FormatError(f"{where}: class index {cls} outside 0..{n_classes - 1}{named}")
        if len(vals) == 4:
            raise FormatError(f"{where}: 4 values is a detection box, not a segmentation polygon")
        if len(vals) % 2:
            raise FormatError(f"{where}: odd number of coordinates ({len(vals)}); a polygon "
                              f"needs x y pairs")
        if len(vals) < 6:
            raise FormatError(f"{where}: {len(vals) // 2} point(s); a polygon needs at least 3")
        if not np.isfinite(vals).all():
            raise FormatError(f"{where}: holds the coordinate {vals[~np.isfinite(vals)][0]}, "
                              f"which is not a finite number; the polygon was refused")
        pts = vals.reshape(-1, 2)
        past = np.maximum(-pts.min(0), pts.max(0) - 1)
        if (past > slack).any():
            raise FormatError(f"{where}: coordinates must be normalised to 0..1 (found "
                              f"{vals.min():g}..{vals.max():g}); the polygon is outside the image")
        if (past > 0).any():
            clipped.append((no, float((past * (w, h)).max())))
        objects.append(YoloObject(cls, np.clip(pts, 0, 1), no))
    if clipped and warnings is not None:
        lines = ", ".join(str(n) for n, _ in clipped[:5]) + (", ..." if len(clipped) > 5 else "")
        warnings.append(f"{path}: {len(clipped)} polygon(s) reach up to "
                        f"{max(o for _, o in clipped):.2f} px past the image edge (line(s) "
                        f"{lines}); clipped to the image")
    return objects


def rasterize(objects: list[YoloObject], shape: tuple[int, int], class_of: list[int],
              fill: int) -> np.ndarray:
    """Objects painted in line order: YOLO index -> class id via `class_of`."""
    h, w = shape
    out = np.full((h, w), fill, np.uint8)
    for obj in objects:
        fill_centre_polygon(out, obj.points * (w, h), class_of[obj.class_index])
    return out


def rasterize_objects(objects: list[YoloObject], shape: tuple[int, int]) -> np.ndarray:
    """One object per line (uint32 1..n), painted as `rasterize` paints the classes."""
    h, w = shape
    out = np.zeros((h, w), np.int32)            # OpenCV draws into int32, not uint32
    for k, obj in enumerate(objects, 1):
        fill_centre_polygon(out, obj.points * (w, h), k)
    return out.astype(np.uint32)
