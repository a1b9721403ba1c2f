"""The instance layer on disk: one object id per pixel, beside the class mask.

`masks/<id>.objects.png` holds the ids as a single-channel 16-bit PNG while the largest id is
at most 65535 (the usual form of an instance label image); past that the layer is
`masks/<id>.objects.tif`, a single-page uint32 TIFF (zlib-compressed), and the PNG is removed.
0 means "no object". Both are written atomically (temporary file, fsync, rename); strokes in
between live in the mask's journal (see masks.py), which holds the object tiles of every step
that changed ids, so the layer is as crash-safe as the mask.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

PNG_SUFFIX = ".objects.png"
TIFF_SUFFIX = ".objects.tif"
PNG_MAX_ID = 65535


class InstanceFileError(Exception):
    """An instance layer file that cannot be used; the message names the file and says why."""


def encode_objects(objects: np.ndarray) -> tuple[str, bytes]:
    """(suffix, file bytes) for the layer: 16-bit PNG when the ids fit, else uint32 TIFF."""
    if objects.ndim != 2:
        raise InstanceFileError(f"an instance layer is 2-D, got shape {objects.shape}")
    top = int(objects.max()) if objects.size else 0
    if top <= PNG_MAX_ID:
        import cv2

        ok, buf = cv2.imencode(".png", objects.astype(np.uint16), [cv2.IMWRITE_PNG_COMPRESSION, 3])
        if not ok:
            raise InstanceFileError("could not encode the instance layer as a 16-bit PNG")
        return PNG_SUFFIX, buf.tobytes()
    import tifffile

    out = io.BytesIO()
    tifffile.imwrite(out, np.ascontiguousarray(objects, np.uint32), compression="zlib")
    return TIFF_SUFFIX, out.getvalue()


def decode_objects(data: bytes, where: Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """The uint32 layer stored in `data` (a PNG or TIFF written by encode_objects)."""
    if not data:
        raise InstanceFileError(f"{where}: instance layer file is empty (0 bytes)")
    if Path(where).name.endswith(TIFF_SUFFIX):
        import tifffile

        try:
            arr = tifffile.imread(io.BytesIO(data))
        except Exception as e:          # tifffile raises many kinds on a torn file
            raise InstanceFileError(f"{where}: instance layer is truncated or not a TIFF ({e})") \
                from None
    else:
        import cv2

        arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if arr is None:
            raise InstanceFileError(f"{where}: instance layer is truncated or not a PNG")
    if arr.ndim != 2 or arr.dtype not in (np.uint8, np.uint16, np.uint32):
        raise InstanceFileError(f"{where}: an instance layer is one channel of unsigned object "
                                f"ids, got shape {arr.shape} of {arr.dtype}")
    if shape is not None and arr.shape != tuple(shape):
        raise InstanceFileError(f"{where}: instance layer is {arr.shape[1]} x {arr.shape[0]} "
                                f"but its mask is {shape[1]} x {shape[0]}")
    return arr.astype(np.uint32)
