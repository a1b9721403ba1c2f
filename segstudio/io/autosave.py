"""Saves finished strokes on a background thread, coalescing bursts into one fsync."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from segstudio.io.masks import MaskStore

log = logging.getLogger(__name__)

COMPACT_AFTER_BYTES = 8 * 1024 * 1024


class Autosaver:
    """`submit` from the GUI thread; records reach disk `delay` seconds later at most.

    `on_saved(image_id, n_records)` and `on_error(message)` run on the saver's thread.
    """

    def __init__(self, store: MaskStore, *, delay: float = 0.05,
                 on_saved: Callable[[str, int], None] | None = None,
                 on_error: Callable[[str], None] | None = None,
                 compact_after: int = COMPACT_AFTER_BYTES) -> None:
        self.store = store
        self.delay = delay
        self.on_saved = on_saved
        self.on_error = on_error
        self.compact_after = compact_after
        self._queue: queue.Queue = queue.Queue()
        self._idle = threading.Event()
        self._idle.set()
        self._pending = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="segstudio-autosave", daemon=True)
        self._thread.start()

    def submit(self, image_id: str, shape: tuple[int, int], tiles) -> None:
        self._put(("append", image_id, tuple(shape), tiles))

    def compact(self, image_id: str, shape: tuple[int, int]) -> None:
        self._put(("compact", image_id, tuple(shape), None))

    def _put(self, item) -> None:
        with self._lock:
            self._pending += 1
            self._idle.clear()
        self._queue.put(item)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything submitted so far is on disk."""
        return self._idle.wait(timeout)

    def close(self, timeout: float = 30.0) -> None:
        self.flush(timeout)
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            deadline = time.monotonic() + self.delay   # debounce: gather a burst
            while True:
                try:
                    nxt = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                batch.append(nxt)
            self._write(batch)
            with self._lock:
                self._pending -= len(batch)
                if self._pending == 0:
                    self._idle.set()

    def _write(self, batch) -> None:
        # keep order per image; appends for one image become one write + one fsync
        runs: list[tuple[str, str, tuple, list]] = []
        for op, image_id, shape, tiles in batch:
            if op == "append" and runs and runs[-1][0] == "append" and runs[-1][1] == image_id:
                runs[-1][3].append(tiles)
            else:
                runs.append((op, image_id, shape, [tiles] if tiles is not None else []))
        for op, image_id, shape, records in runs:
            try:
                if op == "append":
                    self.store.append(image_id, records)
                    if self.on_saved:
                        self.on_saved(image_id, len(records))
                    if self.store.journal_bytes(image_id) > self.compact_after:
                        self.store.compact(image_id, shape)
                else:
                    self.store.compact(image_id, shape)
            except Exception as e:  # a full disk must not kill the saver: report and go on
                log.exception("autosave of %s failed", image_id)
                if self.on_error:
                    self.on_error(f"Could not save the mask of '{image_id}': {e}")
