"""Cancel tokens and progress reports shared by the CLI, the workers and ml."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable


class Cancelled(Exception):
    """Raised inside a job when its token was cancelled."""


class CancelToken:
    """threading.Event underneath: safe to set from any thread."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    message: str = ""
    metrics: dict[str, float] | None = None


ProgressFn = Callable[[Progress], None]
