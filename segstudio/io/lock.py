"""One writer per project: an OS lock on `.segstudio/lock`, which also says who holds it.

The lock is `flock` (POSIX) or `msvcrt.locking` (Windows) on an open file, so the OS drops it
when the holder dies: a crashed or killed SegStudio never leaves a stale lock behind. The
file's text (host, pid, program, start time) only serves the message a second writer reads.
A second window, or the CLI, in the same process or another, gets `ProjectLockedError` and
opens the project read-only (the window) or refuses to write (the CLI).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

LOCK_FILE = "lock"


class ProjectLockedError(Exception):
    """The project is open for writing elsewhere; the message says where and what to do."""


def _try_lock(fd: int) -> bool:
    try:
        if sys.platform == "win32":
            import msvcrt

            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


def _unlock(fd: int) -> None:
    try:
        if sys.platform == "win32":
            import msvcrt

            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_UN)
    except OSError:
        pass


def describe_holder(path: Path) -> str:
    try:
        info = json.loads(Path(path).read_text(encoding="utf-8"))
        since = time.strftime("%Y-%m-%d %H:%M", time.localtime(float(info["since"])))
        return f"{info.get('program', 'SegStudio')} (pid {int(info['pid'])} on {info['host']}, since {since})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another SegStudio"


class ProjectLock:
    """Held while a window or a writing CLI command works on the project."""

    def __init__(self, state_dir: Path, program: str = "SegStudio") -> None:
        self.path = Path(state_dir) / LOCK_FILE
        self.program = program
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> ProjectLock:
        """Take the lock or raise ProjectLockedError (OSError if the folder cannot be written)."""
        if self._fd is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if not _try_lock(fd):
            os.close(fd)
            root = self.path.parent.parent
            raise ProjectLockedError(
                f"{root} is open for writing in {describe_holder(self.path)}; close it there "
                f"first (this copy opens read-only)")
        info = {"host": socket.gethostname(), "pid": os.getpid(), "program": self.program,
                "since": time.time()}
        try:
            data = json.dumps(info).encode()
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, data)
        except OSError:
            pass            # the lock holds even if its description could not be written
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        _unlock(fd)
        os.close(fd)

    def __enter__(self) -> ProjectLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()
