"""Saves finished strokes on a background thread, coalescing bursts into one fsync.

Nothing submitted is dropped: a write that fails (a full disk, a folder gone read-only) keeps
its strokes, and every later one, in memory in their order; the saver retries every few seconds
and on `flush()` (File ▸ Save), and reports one state change ("not saved: why") instead of
one error per stroke. `pending(image_id)` hands the strokes not yet on disk to whoever reloads
that image, so switching images while the disk is full loses nothing either.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from segstudio.io.masks import MaskStore

log = logging.getLogger(__name__)

COMPACT_AFTER_BYTES = 8 * 1024 * 1024
RETRY_AFTER_S = 3.0


@dataclass(frozen=True)
class SaveState:
    """What is not on disk yet, and why (`error` is None while saves succeed)."""

    unsaved: int                # strokes (and compactions) waiting
    error: str | None
    disk_full: bool = False     # the failure is ENOSPC: freeing space (caches) helps

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class _Op:
    kind: str                   # "append" | "compact"
    image_id: str
    shape: tuple[int, int]
    tiles: tuple | None


class Autosaver:
    """`submit` from the GUI thread; records reach disk `delay` seconds later at most.

    `on_saved(image_id, n_records)` and `on_state(SaveState)` run on the saver's thread;
    `on_state` is called when saving starts failing, when the reason changes, and when
    everything is on disk again.
    """

    def __init__(self, store: MaskStore, *, delay: float = 0.05,
                 on_saved: Callable[[str, int], None] | None = None,
                 on_error: Callable[[str], None] | None = None,
                 on_state: Callable[[SaveState], None] | None = None,
                 compact_after: int = COMPACT_AFTER_BYTES,
                 retry_after: float = RETRY_AFTER_S) -> None:
        self.store = store
        self.delay = delay
        self.on_saved = on_saved
        self.on_error = on_error            # once per failure episode, with the reason
        self.on_state = on_state
        self.compact_after = compact_after
        self.retry_after = retry_after
        self._ops: deque[_Op] = deque()     # in order; an op leaves only once it is on disk
        self._cond = threading.Condition()
        self._error: str | None = None
        self._disk_full = False
        self._attempts = 0                  # write attempts finished (flush waits on one)
        self._retry_now = False
        self._retry_at = 0.0
        self._busy = False
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="segstudio-autosave", daemon=True)
        self._thread.start()

    # -- GUI side ------------------------------------------------------------------------
    def submit(self, image_id: str, shape: tuple[int, int], tiles) -> None:
        self._put(_Op("append", image_id, tuple(shape), tuple(tiles)))

    def compact(self, image_id: str, shape: tuple[int, int]) -> None:
        self._put(_Op("compact", image_id, tuple(shape), None))

    def _put(self, op: _Op) -> None:
        with self._cond:
            self._ops.append(op)
            self._cond.notify_all()

    def pending(self, image_id: str) -> list[tuple]:
        """The image's strokes not confirmed on disk, oldest first (each a tuple of tiles)."""
        with self._cond:
            return [op.tiles for op in self._ops if op.kind == "append" and op.image_id == image_id]

    @property
    def state(self) -> SaveState:
        with self._cond:
            return SaveState(sum(op.kind == "append" for op in self._ops), self._error,
                             self._disk_full)

    def has_unsaved(self, image_id: str | None = None) -> bool:
        with self._cond:
            return any(op.kind == "append" and (image_id is None or op.image_id == image_id)
                       for op in self._ops)

    def flush(self, timeout: float = 30.0) -> bool:
        """Write everything submitted so far (retrying at once after a failure); True if on disk."""
        deadline = time.monotonic() + timeout
        with self._cond:
            if self._error is not None:
                self._retry_now = True
                self._cond.notify_all()
            start = self._attempts
            while self._ops or self._busy:
                if self._error is not None and self._attempts > start and not self._busy:
                    return False            # tried again and it still fails
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    return False
                self._cond.wait(min(left, 0.5))
            return True

    def close(self, timeout: float = 30.0) -> bool:
        """Flush and stop; returns False if strokes could not be saved (they are lost then)."""
        ok = self.flush(timeout)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)
        return ok

    # -- saver thread --------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closing:
                    if self._ops and (self._error is None or self._retry_now):
                        break
                    if self._ops and time.monotonic() >= self._retry_at:
                        break               # retry time came
                    self._cond.wait(None if self._error is None or not self._ops
                                    else max(0.01, self._retry_at - time.monotonic()))
                if self._closing:
                    return
                self._retry_now = False
            if self._error is None:
                time.sleep(self.delay)      # debounce: gather a burst into one fsync
            with self._cond:
                batch = list(self._ops)
                self._busy = True
            done, failure = self._write(batch)
            error, disk_full = failure if failure is not None else (None, False)
            with self._cond:
                for _ in range(done):
                    self._ops.popleft()
                was, self._error, self._disk_full = self._error, error, disk_full
                self._retry_at = time.monotonic() + self.retry_after
                state = SaveState(sum(op.kind == "append" for op in self._ops), error, disk_full)
            if error != was:                # reported before flush() returns: callers see it
                if error is not None:
                    log.error("autosave: %s (%d stroke(s) kept in memory)", error, state.unsaved)
                    if self.on_error and was is None:
                        self.on_error(error)
                else:
                    log.info("autosave: everything is on disk again")
                if self.on_state:
                    self.on_state(state)
            with self._cond:
                self._attempts += 1
                self._busy = False
                self._cond.notify_all()

    def _write(self, batch: list[_Op]) -> tuple[int, tuple[str, bool] | None]:
        """Write ops in order; returns (how many are on disk, (why it stopped, disk full?))."""
        done = 0
        while done < len(batch):
            op = batch[done]
            if op.kind == "compact":
                try:
                    self.store.compact(op.image_id, op.shape)
                except Exception as e:      # a full disk must not kill the saver
                    return done, _describe(e, op.image_id)
                done += 1
                continue
            run = [op]                      # consecutive appends for one image: one fsync
            while done + len(run) < len(batch) and batch[done + len(run)].kind == "append" \
                    and batch[done + len(run)].image_id == op.image_id:
                run.append(batch[done + len(run)])
            try:
                self.store.append(op.image_id, [r.tiles for r in run])
            except Exception as e:
                return done, _describe(e, op.image_id)
            done += len(run)
            if self.on_saved:
                self.on_saved(op.image_id, len(run))
            if self.store.journal_bytes(op.image_id) > self.compact_after:
                try:
                    self.store.compact(op.image_id, op.shape)
                except Exception as e:      # the strokes are in the journal: only log it
                    log.warning("compacting %s failed: %s", op.image_id, e)
        return done, None


def _describe(e: Exception, image_id: str) -> tuple[str, bool]:
    import errno

    full = isinstance(e, OSError) and e.errno == errno.ENOSPC
    if full:
        why = "the disk is full"
    elif isinstance(e, OSError) and e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        why = "the project folder cannot be written (read-only or no permission)"
    else:
        why = str(e) or type(e).__name__
    where = getattr(e, "filename", None)
    return f"could not save the mask of '{image_id}': {why}" + (f" ({where})" if where else ""), full
