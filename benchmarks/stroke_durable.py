"""From mouse release to the stroke on disk: how long a finished stroke stays only in memory.

The real main window (offscreen unless QT_QPA_PLATFORM says otherwise) opens a copy of the
sample project; `--strokes` brush strokes (20 dabs each, real mouse events) are drawn one
after another, each once the previous one is on disk. For each stroke: the time the release
handler takes on the GUI thread (history compression, hand-off to the autosaver), and the
time from the release until the autosaver reports the stroke's journal record written and
fsynced (`ProjectSaver.saved`, delivered to the GUI thread). Baseline in the same run: an
append of the same record size to a file in the same folder followed by `os.fsync`, the floor
for any crash-safe save on this disk. Prints ONE JSON line with p50 / p95 / max of each.

    python benchmarks/stroke_durable.py [--strokes 40]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from PySide6.QtCore import QPoint, Qt  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402


def stats(ms: list[float]) -> dict:
    a = np.asarray(ms)
    return {"p50_ms": round(float(np.percentile(a, 50)), 2),
            "p95_ms": round(float(np.percentile(a, 95)), 2), "max_ms": round(float(a.max()), 2)}


def wait(app: QApplication, seconds: float, until=None) -> bool:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        if until is not None and until():
            return True
        time.sleep(0.001)
    return until is None


def fsync_floor(folder: Path, size: int, n: int) -> list[float]:
    data = os.urandom(size)
    out = []
    with open(folder / "fsync_probe.bin", "ab") as f:
        for _ in range(n):
            t = time.perf_counter()
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
            out.append((time.perf_counter() - t) * 1000)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--strokes", type=int, default=40)
    args = ap.parse_args()

    from segstudio.io.project import Project
    from segstudio.ui.app import build_main_window

    app = QApplication.instance() or QApplication(sys.argv[:1])
    tmp = Path(tempfile.mkdtemp())
    shutil.copytree(REPO / "resources" / "sample_project", tmp / "project")
    w = build_main_window(Project.open(tmp / "project"))
    w.resize(1280, 820)
    w.show()
    if not wait(app, 30, lambda: w.canvas.document is not None and w.canvas.loading is None):
        raise SystemExit("the first image did not open")
    saved: list[float] = []
    w.saver.saved.connect(lambda _id, _n: saved.append(time.perf_counter()))
    canvas = w.canvas
    canvas.setFocus()
    w.set_brush_radius(6)
    journal = w.project.root / "masks"
    release_ms, durable_ms, sizes = [], [], []
    cx, cy = canvas.width() // 2, canvas.height() // 2
    for k in range(args.strokes):
        y = cy - 150 + (k * 7) % 300
        pts = [QPoint(cx - 200 + 20 * i, y) for i in range(20)]
        before = sum(p.stat().st_size for p in journal.glob("*.journal"))
        QTest.mousePress(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pts[0])
        for p in pts[1:]:
            QTest.mouseMove(canvas, p)
        n = len(saved)
        t = time.perf_counter()
        QTest.mouseRelease(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                           pts[-1])
        release_ms.append((time.perf_counter() - t) * 1000)
        if not wait(app, 10, lambda n=n: len(saved) > n):
            raise SystemExit(f"stroke {k} was not reported saved within 10 s")
        durable_ms.append((saved[n] - t) * 1000)
        sizes.append(sum(p.stat().st_size for p in journal.glob("*.journal")) - before)
        wait(app, 0.05)
    errors = list(w.errors)
    record = int(np.median([s for s in sizes if s > 0])) if any(s > 0 for s in sizes) else 4096
    floor = fsync_floor(tmp, record, args.strokes)
    delay_ms = w.saver.autosave_delay * 1000
    w.close()
    shutil.rmtree(tmp, ignore_errors=True)
    ours, base = stats(durable_ms), stats(floor)
    print(json.dumps({
        "benchmark": "stroke_durable", "strokes": args.strokes,
        "platform": os.environ.get("QT_QPA_PLATFORM", ""),
        "release_handler": stats(release_ms), "release_to_fsynced": ours,
        "autosave_debounce_ms": delay_ms, "journal_record_bytes_median": record,
        "baseline": "append the same bytes + os.fsync in the same folder",
        "baseline_fsync": base,
        "ratio_p95_minus_debounce": round((ours["p95_ms"] - delay_ms) / base["p95_ms"], 2)
        if base["p95_ms"] > 0 else None,
        "errors": errors}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
