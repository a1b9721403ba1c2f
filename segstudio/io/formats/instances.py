"""Instance label images: one integer per pixel, 0 = background, each other value one object.

What Cellpose, StarDist, the Cell Tracking Challenge (`man_seg*.tif`) and DSB2018's merged
masks write: 8-, 16- or 32-bit PNG or TIFF, signed or not. Reading is liberal about the
container (grey PNG of any depth, an RGB PNG whose channels are equal, TIFF of any integer
type, a float TIFF of whole numbers, singleton axes) and strict about the meaning: negative
or fractional ids, colour images and stacks are refused with what they are. Ids are
renumbered 1..n in their own order, so the values a tool happened to use
(sparse, or up to 2^31) never matter.

Writing: 16-bit grey PNG while the ids fit (every reader above and ImageJ open it), a
uint32 TIFF above 65535 objects.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from segstudio.io.formats import FormatError

INSTANCE_EXTS = (".png", ".tif", ".tiff")
PNG_MAX = 65535


def read_instance_image(path: Path | str) -> np.ndarray:
    """The (h, w) object ids of an instance label image, as uint32 (values as in the file)."""
    path = Path(path)
    if path.suffix.lower() in (".tif", ".tiff"):
        arr = _read_tiff(path)
    else:
        arr = _read_other(path)
    arr = np.squeeze(arr)
    if arr.ndim == 3 and arr.shape[2] in (3, 4) and _grey(arr):
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise FormatError(f"{path}: is {' x '.join(map(str, arr.shape))}; an instance label "
                          f"image is one 2-D plane of object ids (not colours, not a stack)")
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or not np.array_equal(arr, np.round(arr)):
            raise FormatError(f"{path}: holds fractional or non-finite values; object ids "
                              f"are whole numbers (0 = background)")
    elif arr.dtype.kind not in "iub":
        raise FormatError(f"{path}: holds {arr.dtype} values; object ids are whole numbers")
    if arr.size and arr.min() < 0:
        raise FormatError(f"{path}: holds the negative value {arr.min()}; object ids are "
                          f"0 (background) or positive")
    if arr.size and float(arr.max()) > np.iinfo(np.uint32).max:
        raise FormatError(f"{path}: holds {arr.max()}, more than 32 bits of object ids")
    return arr.astype(np.uint32)


def _grey(arr: np.ndarray) -> bool:
    return bool((arr[..., 0] == arr[..., 1]).all() and (arr[..., 0] == arr[..., 2]).all())


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tf:
            if len(tf.series) == 0:
                raise FormatError(f"{path}: a TIFF with no image in it")
            return tf.series[0].asarray()
    except FormatError:
        raise
    except Exception as e:      # tifffile raises many kinds for a damaged file
        raise FormatError(f"{path}: cannot be read as TIFF ({type(e).__name__}: {e})") from None


def _read_other(path: Path) -> np.ndarray:
    import cv2

    try:
        data = np.fromfile(path, np.uint8)
    except OSError as e:
        raise FormatError(f"{path}: cannot be read ({e})") from None
    arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if arr is None:
        raise FormatError(f"{path}: not a readable image (damaged, empty or not PNG/TIFF)")
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        arr = arr[..., [2, 1, 0] + ([3] if arr.shape[2] == 4 else [])]    # BGR -> RGB
    if arr.ndim == 3 and arr.shape[2] == 4 and not _grey(arr[..., :3]):
        raise FormatError(f"{path}: is a colour image; an instance label image is one grey "
                          f"plane of object ids")
    return arr


def renumber(ids: np.ndarray) -> tuple[np.ndarray, int]:
    """Ids 1..n keeping their order (ids already 1..n stay as they are), 0 stays 0; and n."""
    values, inverse = np.unique(ids.ravel(), return_inverse=True)
    offset = 0 if values.size and values[0] == 0 else 1          # rank 0 is background
    new = (np.arange(values.size, dtype=np.uint32) + offset)
    return new[inverse].reshape(ids.shape), int(values.size - (1 - offset))


def instance_suffix(objects: np.ndarray) -> str:
    """'.png' while the ids fit in 16 bits, else '.tif' (uint32)."""
    return ".png" if objects.size == 0 or int(objects.max()) <= PNG_MAX else ".tif"


def write_instance_image(folder: Path, stem: str, objects: np.ndarray) -> str:
    """Writes <stem>.png (16-bit) or <stem>.tif (uint32) into folder; returns the file name."""
    import cv2

    suffix = instance_suffix(objects)
    dest = Path(folder) / f"{stem}{suffix}"
    if suffix == ".png":
        ok, buf = cv2.imencode(".png", np.ascontiguousarray(objects, np.uint16))
        if not ok:
            raise OSError(f"could not encode {dest.name}")
        dest.write_bytes(buf.tobytes())
    else:
        import tifffile

        tifffile.imwrite(dest, np.ascontiguousarray(objects, np.uint32), compression="zlib")
    return dest.name


# suffixes tools add to the image's name: Cellpose `_cp_masks`, `_masks`, `_labels`, ...
_TAILS = re.compile(r"^(.+?)[_-](cp_masks|masks?|labels?|instances?|seg|gt|label_image)$",
                    re.IGNORECASE)


def match_keys(path: Path) -> list[str]:
    """Names to find the image of an instance file by: its stem, its name, the stem without a
    tool's suffix (`img_cp_masks`), and the Cell Tracking Challenge's `man_seg13` -> `t13`."""
    stem = path.name.split(".")[0]
    keys = [path.stem, path.name, stem]
    m = _TAILS.match(stem)
    if m:
        keys.append(m[1])
    ctc = re.match(r"^man_seg_?(\d+)$", stem, re.IGNORECASE)
    if ctc:
        keys.append(f"t{ctc[1]}")
    return list(dict.fromkeys(keys))
