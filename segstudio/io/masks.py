"""Label masks on disk: one lossless PNG per image plus an append-only journal of strokes.

Each finished stroke appends its changed tiles to `<id>.journal` (length + CRC32 framed,
fsynced), so saving a stroke costs a few KiB even on a 16k x 16k image. Compaction rewrites
`<id>.png` atomically, then drops the journal. Replaying a journal is idempotent (it holds
absolute tile contents), so a crash between the two steps loses nothing.

Images with object classes also have an instance layer (`<id>.objects.png` or `.tif`, see
instance_files.py). A step that changed object ids is one "SSJ2" record holding, per tile, the
mask and, where ids changed, the uint32 ids too; steps without objects stay "SSJ1" records, so
projects without object classes write exactly what they always did. One step = one record.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from segstudio.core.classes import UNLABELED
from segstudio.core.geometry import Rect
from segstudio.io.atomic import atomic_write_bytes, fsync_dir, remove_stale_temporaries
from segstudio.io.instance_files import (PNG_SUFFIX, TIFF_SUFFIX, InstanceFileError,
                                         decode_objects, encode_objects)

log = logging.getLogger(__name__)

_MAGIC = b"SSJ1"                    # tiles of the mask
_MAGIC2 = b"SSJ2"                   # tiles of the mask, each with a flag and maybe its object ids
_MAGICS = (_MAGIC, _MAGIC2)
_HEAD = struct.Struct("<4sII")      # magic, payload length, crc32(payload)
_TILE = struct.Struct("<IIII")      # y0, x0, height, width
_FLAGS = struct.Struct("<I")        # SSJ2 only: bit 0 = uint32 object ids follow the mask bytes
_IDS = np.dtype("<u4")


class _Keep:
    def __repr__(self) -> str:
        return "KEEP"


KEEP = _Keep()   # MaskStore.write: leave the saved instance layer as it is


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
    """One journal record of a step: tiles are (rect, mask) or (rect, mask, object ids)."""
    with_ids = any(len(t) > 2 and t[2] is not None for t in tiles)
    parts = []
    for tile in tiles:
        rect, values = tile[0], tile[1]
        parts.append(_TILE.pack(rect.y0, rect.x0, rect.height, rect.width))
        ids = tile[2] if len(tile) > 2 else None
        if with_ids:
            parts.append(_FLAGS.pack(0 if ids is None else 1))
        parts.append(np.ascontiguousarray(values, np.uint8).tobytes())
        if ids is not None:
            parts.append(np.ascontiguousarray(ids, _IDS).tobytes())
    payload = zlib.compress(struct.pack("<I", len(tiles)) + b"".join(parts), 1)
    return _HEAD.pack(_MAGIC2 if with_ids else _MAGIC, len(payload), zlib.crc32(payload)) + payload


class _BadRecord(Exception):
    """A CRC-valid journal record whose contents do not parse (crafted or from a bug)."""


def _decode_record(payload: bytes, shape: tuple[int, int], with_ids: bool = False
                   ) -> list[tuple[int, int, np.ndarray, np.ndarray | None]]:
    """The tiles of one record (y0, x0, mask tile, id tile or None), checked against the mask
    shape before anything is written."""
    try:
        raw = zlib.decompress(payload)
        (count,) = struct.unpack_from("<I", raw)
        off, tiles = 4, []
        for _ in range(count):
            y0, x0, h, w = _TILE.unpack_from(raw, off)
            off += _TILE.size
            flags = 0
            if with_ids:
                (flags,) = _FLAGS.unpack_from(raw, off)
                off += _FLAGS.size
            need = h * w * (5 if flags & 1 else 1)
            if off + need > len(raw):
                raise _BadRecord(f"a {w} x {h} tile runs past the end of its record")
            if y0 + h > shape[0] or x0 + w > shape[1]:
                raise _BadRecord(f"writes a {w} x {h} tile at (y {y0}, x {x0}) outside the "
                                 f"{shape[1]} x {shape[0]} mask")
            values = np.frombuffer(raw, np.uint8, h * w, off).reshape(h, w)
            off += h * w
            ids = None
            if flags & 1:
                ids = np.frombuffer(raw, _IDS, h * w, off).reshape(h, w)
                off += 4 * h * w
            tiles.append((y0, x0, values, ids))
        return tiles
    except (zlib.error, struct.error, ValueError) as e:
        raise _BadRecord(f"does not decode ({e})") from None


@dataclass
class JournalScan:
    """What a journal holds: the records that can be applied and what had to be skipped."""

    records: list[tuple[int, int]] = field(default_factory=list)   # (start, end) byte offsets
    good_end: int = 0           # end of the last intact record: appends go here
    skipped_bytes: int = 0      # torn or damaged bytes passed over (a crash mid-append)
    bad_records: list[str] = field(default_factory=list)           # framed but unreadable


def _frame_at(data: bytes, pos: int) -> int | None:
    """End offset of an intact (CRC-valid) record starting at `pos`, else None."""
    if len(data) - pos < _HEAD.size:
        return None
    magic, length, crc = _HEAD.unpack_from(data, pos)
    end = pos + _HEAD.size + length
    if magic not in _MAGICS or end > len(data) or zlib.crc32(data[pos + _HEAD.size:end]) != crc:
        return None
    return end


def scan_journal(data: bytes) -> JournalScan:
    """Find every intact record, resynchronising after torn or damaged bytes.

    A crash mid-append leaves a torn record; older versions then appended after it, so intact
    records may follow garbage: they are found again by their magic and CRC, never dropped.
    """
    scan, pos = JournalScan(), 0
    while pos < len(data):
        end = _frame_at(data, pos)
        if end is not None:
            scan.records.append((pos, end))
            scan.good_end = end
            pos = end
            continue
        nxt = data.find(_MAGIC[:3], pos + 1)        # "SSJ": either kind of record
        while nxt != -1 and _frame_at(data, nxt) is None:
            nxt = data.find(_MAGIC[:3], nxt + 1)
        stop = len(data) if nxt == -1 else nxt
        scan.skipped_bytes += stop - pos
        pos = stop
    return scan


def replay_journal(data: bytes, mask: np.ndarray, scan: JournalScan | None = None
                   ) -> tuple[int, bool]:
    """Apply every intact record to `mask`; returns (records applied, damage found).

    Records that are framed correctly but do not parse are skipped and listed in
    `scan.bad_records`; nothing outside the mask is ever written.
    """
    n, damaged, _objects = replay_layers(data, mask, None, scan)
    return n, damaged


def replay_layers(data: bytes, mask: np.ndarray, objects: np.ndarray | None,
                  scan: JournalScan | None = None) -> tuple[int, bool, np.ndarray | None]:
    """replay_journal for both layers: returns (records applied, damage found, objects), the
    instance layer created (zeros) when a record holds ids and there was none."""
    scan = scan or scan_journal(data)
    n = 0
    for k, (start, end) in enumerate(scan.records):
        with_ids = data[start:start + 4] == _MAGIC2
        try:
            tiles = _decode_record(data[start + _HEAD.size:end], mask.shape[:2], with_ids)
        except _BadRecord as e:
            scan.bad_records.append(f"record {k} (byte {start}) {e}")
            continue
        for y0, x0, tile, ids in tiles:
            slices = slice(y0, y0 + tile.shape[0]), slice(x0, x0 + tile.shape[1])
            mask[slices] = tile
            if ids is not None:
                if objects is None:
                    objects = np.zeros(mask.shape[:2], np.uint32)
                objects[slices] = ids
        n += 1
    return n, bool(scan.skipped_bytes or scan.bad_records), objects


def apply_tiles(tiles, mask: np.ndarray, objects: np.ndarray | None) -> np.ndarray | None:
    """Write a step's tiles ((rect, mask) or (rect, mask, ids)) into the layers, like a journal
    record; returns the instance layer (created if the tiles hold ids and there was none)."""
    for tile in tiles:
        rect, values = tile[0], tile[1]
        mask[rect.slices] = values
        ids = tile[2] if len(tile) > 2 else None
        if ids is not None:
            if objects is None:
                objects = np.zeros(mask.shape[:2], np.uint32)
            objects[rect.slices] = ids
    return objects


def _write_all(fd: int, data: bytes) -> None:
    """os.write until every byte is written (a full disk raises OSError(ENOSPC) part-way)."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


class MaskStore:
    """The masks folder of a project. Thread-safe: the autosave thread writes, the GUI reads."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._lock = threading.RLock()
        self._good_end: dict[str, int] = {}     # verified end of each journal we append to
        self._problems: dict[str, list[str]] = {}
        try:
            remove_stale_temporaries(self.folder)
        except OSError:
            pass

    def png_path(self, image_id: str) -> Path:
        return self.folder / f"{image_id}.png"

    def journal_path(self, image_id: str) -> Path:
        return self.folder / f"{image_id}.journal"

    def has_mask(self, image_id: str) -> bool:
        return self.png_path(image_id).exists() or self.journal_path(image_id).exists()

    def objects_paths(self, image_id: str) -> tuple[Path, Path]:
        """(16-bit PNG, uint32 TIFF) paths of the image's instance layer; at most one is used."""
        return (self.folder / f"{image_id}{PNG_SUFFIX}", self.folder / f"{image_id}{TIFF_SUFFIX}")

    def objects_path(self, image_id: str) -> Path | None:
        """The instance layer's file, or None. Both exist only after a crash between writing
        one and removing the other: the newer is the one written last."""
        found = [p for p in self.objects_paths(image_id) if p.exists()]
        if len(found) > 1:
            found.sort(key=lambda p: p.stat().st_mtime_ns)
        return found[-1] if found else None

    def has_objects(self, image_id: str) -> bool:
        """Whether the image has an instance layer (a file, or object ids in its journal)."""
        with self._lock:
            if self.objects_path(image_id) is not None:
                return True
            jpath = self.journal_path(image_id)
            if not jpath.exists():
                return False
            data = jpath.read_bytes()
            if _MAGIC2 not in data:
                return False
            return any(data[a:a + 4] == _MAGIC2 for a, _ in scan_journal(data).records)

    def take_problems(self, image_id: str) -> list[str]:
        """What the last load of this image had to skip (torn or damaged journal records)."""
        with self._lock:
            return self._problems.pop(image_id, [])

    def load(self, image_id: str, shape: tuple[int, int]) -> np.ndarray:
        """The saved mask (PNG plus journal), or an all-unlabeled one; raises MaskError."""
        return self._load(image_id, shape)[0]

    def load_layers(self, image_id: str, shape: tuple[int, int]
                    ) -> tuple[np.ndarray, np.ndarray | None]:
        """The saved mask and instance layer (None when the image has none); raises MaskError."""
        mask, objects, _scan = self._load(image_id, shape)
        return mask, objects

    def _read_objects(self, image_id: str, shape: tuple[int, int]) -> np.ndarray | None:
        path = self.objects_path(image_id)
        if path is None:
            return None
        try:
            return decode_objects(path.read_bytes(), path, shape)
        except InstanceFileError as e:
            raise MaskError(str(e)) from None

    def _load(self, image_id: str, shape: tuple[int, int]
              ) -> tuple[np.ndarray, np.ndarray | None, JournalScan]:
        with self._lock:
            png = self.png_path(image_id)
            if png.exists():
                mask = read_mask_file(png, shape).copy()
            else:
                mask = np.full(shape, UNLABELED, np.uint8)
            objects = self._read_objects(image_id, shape)
            jpath = self.journal_path(image_id)
            scan = JournalScan()
            if jpath.exists():
                data = jpath.read_bytes()
                scan = scan_journal(data)
                n, damaged, objects = replay_layers(data, mask, objects, scan)
                if damaged:
                    self._note_damage(image_id, jpath, n, scan)
            return mask, objects, scan

    def _note_damage(self, image_id: str, jpath: Path, n: int, scan: JournalScan) -> None:
        parts = []
        if scan.skipped_bytes:
            parts.append(f"skipped {scan.skipped_bytes} byte(s) of an incomplete write "
                         f"(a crash or a full disk)")
        if scan.bad_records:
            parts.append(f"{len(scan.bad_records)} unreadable record(s): "
                         + "; ".join(scan.bad_records[:3]))
        message = f"{jpath}: {', '.join(parts)}; the {n} intact stroke(s) were applied"
        log.warning("%s", message)
        if scan.bad_records:    # real damage, not just a torn tail: the user should know
            self._problems.setdefault(image_id, []).append(message)

    def _verified_end(self, image_id: str, fd: int) -> int:
        """Where the intact records end; the file is rescanned when its size is unexpected."""
        size = os.fstat(fd).st_size
        end = self._good_end.get(image_id)
        if end is None or end != size:
            with os.fdopen(os.dup(fd), "rb") as f:
                end = scan_journal(f.read()).good_end
        return end

    def append(self, image_id: str, records: list) -> None:
        """Append one journal record per stroke and fsync once.

        A torn tail (a crash or a full disk cut the last write short) is cut off first: records
        appended behind torn bytes would otherwise be invisible to a reader that stops there.
        """
        if not records:
            return
        data = b"".join(encode_record(tiles) for tiles in records)
        with self._lock:
            self.folder.mkdir(parents=True, exist_ok=True)
            jpath = self.journal_path(image_id)
            new = not jpath.exists()
            fd = os.open(jpath, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                end = self._verified_end(image_id, fd)
                if os.fstat(fd).st_size != end:
                    log.warning("%s: cutting %d byte(s) of an incomplete write before appending",
                                jpath, os.fstat(fd).st_size - end)
                    os.ftruncate(fd, end)
                os.lseek(fd, end, os.SEEK_SET)
                try:
                    _write_all(fd, data)
                    os.fsync(fd)
                except OSError:
                    self._good_end.pop(image_id, None)   # rescan next time
                    try:
                        os.ftruncate(fd, end)            # do not leave a torn record behind
                        self._good_end[image_id] = end
                    except OSError:
                        pass
                    raise
                self._good_end[image_id] = end + len(data)
            finally:
                os.close(fd)
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
            jpath = self.journal_path(image_id)
            if not jpath.exists():
                return
            mask, objects, scan = self._load(image_id, shape)
            if scan.bad_records:
                # never destroy what could not be read: keep it beside the mask for a look
                keep = jpath.with_name(f"{jpath.name}.damaged-{int(time.time())}")
                os.replace(jpath, keep)
                log.warning("%s: kept as %s (it holds records that could not be read)",
                            jpath, keep.name)
            self.write(image_id, mask, objects)

    def rewrite(self, image_id: str, shape: tuple[int, int], edit) -> bool:
        """Load, `edit(mask) -> changed?` in place, write back: one step under the lock, so an
        append from the autosave thread lands before or after, never in between. Pixels whose
        class the edit changed lose their object ids (a deleted class takes its objects)."""
        with self._lock:
            mask, objects, _scan = self._load(image_id, shape)
            before = mask.copy() if objects is not None else None
            if not edit(mask):
                return False
            if objects is not None:
                objects[mask != before] = 0
            self.write(image_id, mask, objects)
            return True

    def write(self, image_id: str, mask: np.ndarray, objects=KEEP) -> None:
        """Replace the whole mask (import, accept-all); clears the journal.

        `objects`: the new instance layer, None to remove it, or KEEP (the default) to keep
        the saved one, with the ids still in the journal folded in first.
        """
        if isinstance(objects, np.ndarray) and objects.shape != mask.shape:
            raise MaskError(f"{image_id}: the instance layer is {objects.shape[1]} x "
                            f"{objects.shape[0]} but the mask is {mask.shape[1]} x {mask.shape[0]}")
        with self._lock:
            if objects is KEEP and self.journal_path(image_id).exists() \
                    and self.has_objects(image_id):
                objects = self._load(image_id, mask.shape)[1]
            if objects is not KEEP:
                self._write_objects_file(image_id, objects)
            atomic_write_bytes(self.png_path(image_id), encode_mask_png(mask))
            try:
                self.journal_path(image_id).unlink()
            except FileNotFoundError:
                pass
            self._good_end.pop(image_id, None)
            fsync_dir(self.folder)

    def write_objects(self, image_id: str, objects: np.ndarray) -> None:
        """Replace the image's instance layer (uint32 ids, 0 = none) beside its saved mask;
        the journal is folded in first, so no older stroke's ids can come back over it."""
        if objects.ndim != 2:
            raise MaskError(f"{image_id}: an instance layer is 2-D, got shape {objects.shape}")
        if objects.dtype.kind not in "ui" or (objects.size and int(objects.min()) < 0):
            raise MaskError(f"{image_id}: object ids are whole numbers >= 0, got {objects.dtype}")
        with self._lock:
            mask = self.load(image_id, objects.shape)
            self.write(image_id, mask, objects.astype(np.uint32))

    def _write_objects_file(self, image_id: str, objects: np.ndarray | None) -> None:
        """The layer's file atomically (None: none), then the other format's file removed."""
        keep = None
        if objects is not None:
            suffix, data = encode_objects(objects)
            keep = self.folder / f"{image_id}{suffix}"
            atomic_write_bytes(keep, data)
        for path in self.objects_paths(image_id):
            if path != keep:
                try:
                    path.unlink()
                except FileNotFoundError:
                    pass


def tiles_of(mask: np.ndarray, rect: Rect) -> tuple[tuple[Rect, np.ndarray], ...]:
    """A rect of a mask as one journal record (for edits made outside strokes)."""
    return ((rect, mask[rect.slices].copy()),)


def labelled_fraction(mask: np.ndarray) -> float:
    """Share of pixels that carry a class (not 255); sampled on huge masks to stay cheap."""
    sample = mask if mask.size <= 1 << 24 else mask[::4, ::4]
    if sample.size == 0:
        return 0.0
    n = int(np.count_nonzero(sample != UNLABELED))
    return 1.0 if n == sample.size else n / sample.size


def clear_class_in_place(mask: np.ndarray, class_id: int) -> bool:
    hit = mask == class_id
    mask[hit] = UNLABELED
    return bool(hit.any())
