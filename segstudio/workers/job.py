"""Job: fn(*args, on_progress=..., cancel=...) on QThreadPool, reported through signals."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from functools import partial
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from segstudio.core.jobs import Cancelled, CancelToken

log = logging.getLogger(__name__)


class JobSignals(QObject):
    progress = Signal(object)     # Progress
    succeeded = Signal(object)    # the function's return value
    failed = Signal(str)          # formatted traceback
    cancelled = Signal()
    finished = Signal()           # always last


class Job(QRunnable):
    """Runs on the global thread pool; signals are created on the GUI thread so slots run there."""

    def __init__(self, fn: Callable[..., Any], *args: Any, name: str = "", **kwargs: Any) -> None:
        super().__init__()
        self.setAutoDelete(False)
        self.name = name or getattr(fn, "__name__", "job")
        self.signals = JobSignals()
        self.token = CancelToken()
        # True once the function has returned, just before `finished` is emitted: a slot
        # connected later gets no queued `finished`, so it can look here first
        self.ended = False
        self._call = partial(fn, *args, on_progress=self._progress, cancel=self.token, **kwargs)

    def _emit(self, signal_name: str, *args: Any) -> None:
        # the window may already be gone (closed while this job ran): nobody is left to tell
        try:
            getattr(self.signals, signal_name).emit(*args)
        except RuntimeError:
            self.token.cancel()

    def _progress(self, progress: Any) -> None:
        self._emit("progress", progress)

    def run(self) -> None:            # worker thread: no widgets, no documents
        try:
            result = self._call()
        except Cancelled:
            self._emit("cancelled")
        except Exception:
            log.exception("job %s failed", self.name)
            self._emit("failed", traceback.format_exc())
        else:
            self._emit("succeeded", result)
        finally:
            self.ended = True
            self._emit("finished")

    def start(self, pool: QThreadPool | None = None) -> Job:
        (pool or QThreadPool.globalInstance()).start(self)
        return self


def plain_error(details: str) -> str:
    """The sentence of a traceback's last line, without the exception's dotted class name.

    `segstudio.ml.train.TrainingError: the loss became nan ...` -> `the loss became nan ...`;
    built-in errors keep their name (`MemoryError: ...` says something to a user).
    """
    lines = details.strip().splitlines()
    if not lines:
        return "unknown error"
    kind, sep, message = lines[-1].partition(": ")
    if sep and message and kind not in _TELLING_ERRORS:
        return message
    return lines[-1]


_TELLING_ERRORS = {"MemoryError", "PermissionError", "FileNotFoundError", "OSError"}
