"""Label masks on disk: one lossless PNG per image plus an append-only journal of strokes.

Each finished stroke appends its changed tiles to `<id>.journal` (length + CRC32 framed,
fsynced), so saving a stroke costs a few KiB even on a 16k x 16k image. Compaction rewrites
`<id>.png` atomically, then drops the journal. Replaying a journal is idempotent (it holds
absolute tile contents), so a crash between the two steps loses nothing.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import zlib
from pathlib import Path

import numpy as np

from segstudio.core.classes import UNLABELED
from segstudio.core.geometry import Rect
from segstudio.io.atomic import atomic_write_bytes, fsync_dir, remove_stale_temporaries

log = logging.getLogger(__name__)

_MAGIC = b"SSJ1"
_HEAD = struct.Struct("<4sII")      # magic, payload length, crc32(payload)
_TILE = struct.Struct("<IIII")      # y0, x0, height, width


class MaskError(Exception):
    """A mask file that cannot be used; the message names the file and says why."""


def decode_mask_png(data: bytes, where: Path) -> np.ndarray:
    import cv2

    if not data:
        raise MaskError(f"{where}: mask file is empty (0 bytes)")
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise MaskError(f"{where}: mask file is truncated or not a PNG")
    if arr.ndim != 2 or arr.dtype != np.uint8:
        raise MaskError(f"{where}: a mask must be single-channel 8-bit class ids, "
                        f"got shape {arr.shape} of {arr.dtype}")
    return arr


def encode_mask_png(mask: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", mask, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise MaskError("could not encode the mask as PNG")
    return buf.tobytes()


def read_mask_file(path: Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    arr = decode_mask_png(Path(path).read_bytes(), Path(path))
    if shape is not None and arr.shape != tuple(shape):
        raise MaskError(f"{path}: mask is {arr.shape[1]} x {arr.shape[0]} but its image is "
                        f"{shape[1]} x {shape[0]}")
    return arr


def encode_record(tiles) -> bytes:
    parts = []
    for rect, values in tiles:
        parts.append(_TILE.pack(rect.y0, rect.x0, rect.height, rect.width))
        parts.append(np.ascontiguousarray(values, np.uint8).tobytes())
    payload = zlib.compress(struct.pack("<I", len(tiles)) + b"".join(parts), 1)
    return _HEAD.pack(_MAGIC, len(payload), zlib.crc32(payload)) + payload


def replay_journal(data: bytes, mask: np.ndarray) -> tuple[int, bool]:
    """Apply every complete record to `mask`; returns (records applied, torn tail found)."""
    pos, n = 0, 0
    while pos < len(data):
        if len(data) - pos < _HEAD.size:
            return n, True
        magic, length, crc = _HEAD.unpack_from(data, pos)
        payload = data[pos + _HEAD.size: pos + _HEAD.size + length]
        if magic != _MAGIC or len(payload) != length or zlib.crc32(payload) != crc:
            return n, True      # a write cut short by a crash: everything before it is intact
        raw = zlib.decompress(payload)
        (count,), off = struct.unpack_from("<I", raw), 4
        for _ in range(count):
            y0, x0, h, w = _TILE.unpack_from(raw, off)
            off += _TILE.size
            tile = np.frombuffer(raw, np.uint8, h * w, off).reshape(h, w)
            off += h * w
            if y0 + h > mask.shape[0] or x0 + w > mask.shape[1]:
                raise MaskError(f"journal record {n} writes outside a {mask.shape} mask")
            mask[y0:y0 + h, x0:x0 + w] = tile
        pos += _HEAD.size + length
        n += 1
    return n, False


class MaskStore:
    """The masks folder of a project. Thread-safe: the autosave thread writes, the GUI reads."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._lock = threading.RLock()
        remove_stale_temporaries(self.folder)

    def png_path(self, image_id: str) -> Path:
        return self.folder / f"{image_id}.png"

    def journal_path(self, image_id: str) -> Path:
        return self.folder / f"{image_id}.journal"

    def has_mask(self, image_id: str) -> bool:
        return self.png_path(image_id).exists() or self.journal_path(image_id).exists()

    def load(self, image_id: str, shape: tuple[int, int]) -> np.ndarray:
        """The saved mask (PNG plus journal), or an all-unlabeled one; raises MaskError."""
        with self._lock:
            png = self.png_path(image_id)
            if png.exists():
                mask = read_mask_file(png, shape).copy()
            else:
                mask = np.full(shape, UNLABELED, np.uint8)
            jpath = self.journal_path(image_id)
            if jpath.exists():
                n, torn = replay_journal(jpath.read_bytes(), mask)
                if torn:
                    log.warning("%s: ignored an incomplete last record after %d strokes", jpath, n)
            return mask

    def append(self, image_id: str, records: list) -> None:
        """Append one journal record per stroke and fsync once."""
        if not records:
            return
        data = b"".join(encode_record(tiles) for tiles in records)
        with self._lock:
            self.folder.mkdir(parents=True, exist_ok=True)
            jpath = self.journal_path(image_id)
            new = not jpath.exists()
            with open(jpath, "ab") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            if new:
                fsync_dir(self.folder)

    def journal_bytes(self, image_id: str) -> int:
        try:
            return self.journal_path(image_id).stat().st_size
        except FileNotFoundError:
            return 0

    def compact(self, image_id: str, shape: tuple[int, int]) -> None:
        """Fold the journal into the PNG (atomically), then drop the journal."""
        with self._lock:
            if not self.journal_path(image_id).exists():
                return
            mask = self.load(image_id, shape)
            self.write(image_id, mask)

    def write(self, image_id: str, mask: np.ndarray) -> None:
        """Replace the whole mask (import, accept-all); clears the journal."""
        with self._lock:
            atomic_write_bytes(self.png_path(image_id), encode_mask_png(mask))
            try:
                self.journal_path(image_id).unlink()
            except FileNotFoundError:
                pass
            fsync_dir(self.folder)


def tiles_of(mask: np.ndarray, rect: Rect) -> tuple[tuple[Rect, np.ndarray], ...]:
    """A rect of a mask as one journal record (for edits made outside strokes)."""
    return ((rect, mask[rect.slices].copy()),)
