"""Image embeddings on disk: one .npz per (model, tile content), bounded in bytes, oldest out first.

Keys are content hashes (the encoder file's hash + how the window was prepared + the window's
pixels), never image ids or paths: a renamed or re-imported image finds its embedding again, an
edited one does not get a stale one, and the cache survives an app restart.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from segstudio.io.atomic import atomic_write_bytes, atomic_write_json

log = logging.getLogger(__name__)

DEFAULT_CACHE_BYTES = 2 << 30     # a SAM ViT embedding is 4 MiB: ~500 tiles or images
MEMORY_ENTRIES = 6                # last embeddings kept in RAM: clicks never wait on the disk


def default_cache_dir() -> Path:
    """The per-user cache folder (SEGSTUDIO_DATA_DIR moves it, tests use that)."""
    from segstudio.io.userdirs import data_dir

    return data_dir() / "cache" / "sam-embeddings"


def content_key(*parts: bytes | str | np.ndarray) -> str:
    h = hashlib.blake2b(digest_size=20)
    for part in parts:
        if isinstance(part, np.ndarray):
            a = np.ascontiguousarray(part)
            h.update(f"{a.dtype.str}{a.shape}".encode())
            h.update(memoryview(a).cast("B"))
        else:
            h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\x00")
    return h.hexdigest()


def file_hash(path: Path, cache_root: Path) -> str:
    """blake2b of a model file, remembered by (path, size, mtime) so a restart does not re-read it."""
    path = Path(path).resolve()
    st = path.stat()
    stamp = f"{path}|{st.st_size}|{st.st_mtime_ns}"
    index_path = cache_root / "model-hashes.json"
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
        if not isinstance(index, dict):
            index = {}
    except (OSError, ValueError):
        index = {}
    if stamp in index:
        return str(index[stamp])
    h = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    digest = h.hexdigest()
    index = {k: v for k, v in index.items() if not k.startswith(f"{path}|")}
    index[stamp] = digest
    try:
        atomic_write_json(index_path, index)
    except OSError as e:   # a read-only cache still works, it just hashes again next time
        log.warning("cannot remember the hash of %s: %s", path.name, e)
    return digest


class EmbeddingCache:
    """Arrays by key, in RAM (a few) and on disk (up to max_bytes); thread-safe."""

    def __init__(self, root: Path, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.root = Path(root)
        self.max_bytes = int(max_bytes)
        self._memory: OrderedDict[str, dict[str, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    def _path(self, key: str) -> Path:
        return self.root / f"{key}.npz"

    def __contains__(self, key: str) -> bool:
        with self._lock:
            if key in self._memory:
                return True
        return self._path(key).is_file()

    def get(self, key: str) -> dict[str, np.ndarray] | None:
        with self._lock:
            hit = self._memory.get(key)
            if hit is not None:
                self._memory.move_to_end(key)
                return hit
        path = self._path(key)
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {name: z[name] for name in z.files}
        except FileNotFoundError:
            return None
        except Exception as e:  # a truncated or foreign file: drop it, embed again
            log.warning("dropping unreadable cached embedding %s: %s", path.name, e)
            path.unlink(missing_ok=True)
            return None
        try:
            os.utime(path)      # least recently *used* goes first when the cache is full
        except OSError:
            pass
        self._remember(key, arrays)
        return arrays

    def put(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        self._remember(key, arrays)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        try:
            atomic_write_bytes(self._path(key), buf.getvalue())
            self._evict(keep=key)
        except OSError as e:   # disk full / read-only: the embedding still serves this session
            log.warning("cannot cache the embedding on disk in %s: %s", self.root, e)

    def _remember(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        with self._lock:
            self._memory[key] = arrays
            self._memory.move_to_end(key)
            while len(self._memory) > MEMORY_ENTRIES:
                self._memory.popitem(last=False)

    def disk_bytes(self) -> int:
        return sum(size for _p, size, _t in self._entries())

    def _entries(self) -> list[tuple[Path, int, float]]:
        out = []
        for p in self.root.glob("*.npz"):
            try:
                st = p.stat()
            except FileNotFoundError:
                continue
            out.append((p, st.st_size, st.st_mtime))
        return out

    def _evict(self, keep: str) -> None:
        entries = sorted(self._entries(), key=lambda e: e[2])
        total = sum(size for _p, size, _t in entries)
        for p, size, _t in entries:
            if total <= self.max_bytes:
                break
            if p.stem == keep:
                continue
            p.unlink(missing_ok=True)
            total -= size
            with self._lock:
                self._memory.pop(p.stem, None)
            log.info("SAM cache over %d bytes: dropped %s", self.max_bytes, p.name)
