"""Undo cost and history memory on a 16384² mask.

Prints one JSON line: time to undo (and redo) one stroke drawn corner to corner across a
16384² image (radius 20; the median of 25 undo / redo pairs), the bytes 100 strokes of 200
dabs hold in the history, and the
history and RSS growth over 1000 strokes with the default 256 MiB bound. Baseline in the same
run: undo by restoring a whole-mask copy (what a snapshot-per-step history does), as a ratio.
Targets: undo < 20 ms; 100 strokes < 50 MB; 1000 strokes stay within the bound.
"""

from __future__ import annotations

import json
import resource
import statistics
import time

import numpy as np

from segstudio.core.document import ImageDocument

SIZE = 16384
REPEATS = 25          # undo / redo pairs of the same stroke; medians are reported


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def stroke(doc: ImageDocument, y0: float, x0: float, y1: float, x1: float, dabs: int = 200,
           radius: float = 20, value: int = 1) -> None:
    doc.begin_stroke()
    for k in range(dabs):
        a, b = k / dabs, (k + 1) / dabs
        doc.paint_segment((y0 + (y1 - y0) * a, x0 + (x1 - x0) * a),
                          (y0 + (y1 - y0) * b, x0 + (x1 - x0) * b), radius, value)
    doc.end_stroke()


def main() -> None:
    doc = ImageDocument.blank(SIZE, SIZE)
    stroke(doc, 10, 10, SIZE - 10, SIZE - 10, dabs=2000)
    undos, redos = [], []
    for _ in range(REPEATS):                 # the same stroke undone and redone again
        t = time.perf_counter()
        doc.undo()
        undos.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        doc.redo()
        redos.append((time.perf_counter() - t) * 1000)
    undo_ms, redo_ms = statistics.median(undos), statistics.median(redos)
    tiles = len(doc.history._undo[-1].patches)

    snapshot = doc.mask.copy()               # baseline: a whole-mask snapshot per step
    snaps = []
    for _ in range(REPEATS):
        t = time.perf_counter()
        np.copyto(doc.mask, snapshot)
        snaps.append((time.perf_counter() - t) * 1000)
    snapshot_ms = statistics.median(snaps)
    del snapshot

    doc.history.clear()
    for i in range(100):                     # 200 dabs, 10 px apart, radius 20
        y = 200 + (i * 157) % (SIZE - 400)
        stroke(doc, y, 200, y + 300, 2190, value=1 + i % 3)
    hundred_mb = doc.history.nbytes / 2**20

    rss0 = rss_mb()
    for i in range(900):
        y = 200 + (i * 263) % (SIZE - 400)
        x = 200 + (i * 911) % (SIZE - 2400)
        stroke(doc, y, x, y + 300, x + 1990, value=1 + i % 3)
    thousand_mb = doc.history.nbytes / 2**20
    print(json.dumps({
        "benchmark": "undo_memory", "size": SIZE,
        "repeats": REPEATS, "undo_ms": round(undo_ms, 2), "redo_ms": round(redo_ms, 2),
        "undo_ms_max": round(max(undos), 2), "tiles_in_stroke": tiles,
        "baseline": "restore a whole-mask snapshot", "baseline_undo_ms": round(snapshot_ms, 2),
        "ratio": round(undo_ms / snapshot_ms, 3),
        "history_mb_100_strokes": round(hundred_mb, 2), "history_mb_1000_strokes": round(thousand_mb, 2),
        "history_steps_kept": len(doc.history), "history_bound_mb": doc.history.max_bytes / 2**20,
        "rss_growth_mb_last_900_strokes": round(rss_mb() - rss0, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "targets": {"undo_ms": 20, "history_mb_100_strokes": 50}}))


if __name__ == "__main__":
    main()
