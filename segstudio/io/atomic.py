"""Crash-safe writes: temporary file, flush, fsync, atomic rename, fsync of the folder."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

TMP_SUFFIX = ".tmp"


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """After a crash at any moment `path` holds either its old bytes or all of `data`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(path.parent)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


STALE_AFTER_S = 600.0


def remove_stale_temporaries(folder: Path, older_than_s: float = STALE_AFTER_S) -> int:
    """Delete temporaries a killed writer left behind; returns how many.

    Only old ones: a fresh temporary may belong to a writer at work right now (another thread
    opening the same project must never pull a file from under a save in progress).
    """
    n = 0
    if folder.is_dir():
        now = time.time()
        for p in folder.glob(f".*{TMP_SUFFIX}"):
            try:
                if now - p.stat().st_mtime > older_than_s:
                    p.unlink()
                    n += 1
            except OSError:
                pass
    return n


def same_file(a: Path, b: Path) -> bool:
    """The same file, or two files with the same bytes."""
    try:
        return os.path.samefile(a, b) or (a.stat().st_size == b.stat().st_size
                                          and a.read_bytes() == b.read_bytes())
    except OSError:
        return False
