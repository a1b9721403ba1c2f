"""Indexed (palette) PNG masks, VOC style: pixel values are class ids, the palette shows them.

OpenCV encodes a grey 8-bit PNG several times faster than Pillow encodes a palette one, and
the two hold the same bytes per pixel, so we encode grey and patch the header: colour type 3
(indexed) in IHDR plus a PLTE chunk before the first IDAT.
"""

from __future__ import annotations

import logging
import struct
import zlib
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class LabelImageError(ValueError):
    """A label image that cannot be read as class ids; the message names the file."""


def voc_palette() -> np.ndarray:
    """The 256-entry Pascal VOC colour map (bit-interleaved), as (256, 3) uint8."""
    pal = np.zeros((256, 3), np.uint8)
    for i in range(256):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal[i] = (r, g, b)
    return pal


def class_palette(colors: dict[int, tuple[int, int, int]]) -> np.ndarray:
    """VOC palette with the given ids recoloured (class colours); 255 stays VOC's near-white."""
    pal = voc_palette()
    for cid, rgb in colors.items():
        if 0 <= cid < 255:
            pal[cid] = rgb
    return pal


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_indexed_png(mask: np.ndarray, palette: np.ndarray, compression: int | None = None) -> bytes:
    """PNG bytes of a (h, w) uint8 mask with a 256-colour palette.

    compression None keeps OpenCV's default (fast level with run-length strategy), which for
    label masks is both about twice as fast and smaller than any explicit zlib level.
    """
    import cv2

    if mask.ndim != 2 or mask.dtype != np.uint8:
        raise ValueError(f"an indexed PNG needs a (h, w) uint8 mask, got {mask.shape} {mask.dtype}")
    params = [] if compression is None else [cv2.IMWRITE_PNG_COMPRESSION, int(compression)]
    ok, buf = cv2.imencode(".png", mask, params)
    if not ok:
        raise OSError("OpenCV could not encode the mask as PNG")
    data = buf.tobytes()
    # IHDR is always first: signature(8) + length(4) + 'IHDR'(4) + 13 bytes + crc(4)
    ihdr = bytearray(data[16:29])
    if ihdr[8] != 8 or ihdr[9] != 0:
        raise OSError(f"unexpected PNG from OpenCV (bit depth {ihdr[8]}, colour type {ihdr[9]})")
    ihdr[9] = 3
    plte = _chunk(b"PLTE", np.ascontiguousarray(palette, np.uint8).reshape(-1).tobytes())
    return _SIGNATURE + _chunk(b"IHDR", bytes(ihdr)) + plte + data[33:]


def write_indexed_png(path: Path, mask: np.ndarray, palette: np.ndarray) -> None:
    Path(path).write_bytes(encode_indexed_png(mask, palette))


def read_label_image(path: Path) -> np.ndarray:
    """Class ids from a label image: indexed or grey 8-bit PNG/TIFF/BMP (not colour masks)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            mode = im.mode
            if mode in ("P", "L"):
                return np.array(im, dtype=np.uint8)     # P: the indices, never the colours
            if mode == "1":
                return np.array(im, dtype=np.uint8)
            if mode in ("I", "I;16", "I;16B"):
                arr = np.array(im)
                if arr.size and int(arr.max()) > 255:
                    raise LabelImageError(f"{path}: holds value {int(arr.max())}; class ids "
                                          f"must be 0..254 (255 = unlabeled). If its values "
                                          f"are object ids (an instance label image), import "
                                          f"it as 'instances' (--format instances)")
                return arr.astype(np.uint8)
    except UnidentifiedImageError:
        raise LabelImageError(f"{path}: not a readable image") from None
    except OSError as e:
        raise LabelImageError(f"{path}: cannot be read ({e})") from None
    raise LabelImageError(f"{path}: is a {mode} image; a label mask must be single-channel "
                          f"class ids (grey or indexed PNG), not colours")
