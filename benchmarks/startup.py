"""Start-up time: process start to the main window shown with the sample project's first image,
and on to the first prediction overlay drawn on it.

Prints one JSON line: median of N cold runs (a new interpreter each time) of SegStudio and,
as a baseline in the same run, of a bare PySide6 window (QApplication + empty QMainWindow):
`ratio` = ours / bare (to the first image). The same runs go on until the sample's active run
(the bundled starter) has predicted the first image and the overlay is painted:
`to_prediction_median_s`, and the process's peak RSS then (`peak_rss_mb`, median). Runs
offscreen unless QT_QPA_PLATFORM is set (e.g. xcb under Xvfb).
usage: python benchmarks/startup.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

OURS = """
import sys, time
t0 = float(sys.argv[1])
from PySide6.QtWidgets import QApplication
from segstudio.ui.app import build_main_window, choose_project
app = QApplication(sys.argv[:1])
project, problem = choose_project(None, True)
assert problem is None, problem
w = build_main_window(project)
from PySide6.QtCore import QTimer
import resource
marks = []
def shown(_id):
    if not marks:
        w.canvas.repaint()
        marks.append(time.time() - t0)
def poll():
    if marks and w.canvas.prediction.labels is not None:
        w.canvas.repaint()
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(marks[0], time.time() - t0, rss, flush=True)
        app.quit()
w.image_shown.connect(shown)
timer = QTimer(); timer.timeout.connect(poll); timer.start(5)
QTimer.singleShot(60000, app.quit)
w.show()
app.exec()
"""

BARE = """
import sys, time
t0 = float(sys.argv[1])
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMainWindow
app = QApplication(sys.argv[:1])
w = QMainWindow(); w.resize(1280, 820); w.show()
def shown():
    w.repaint(); print(time.time() - t0, flush=True); app.quit()
QTimer.singleShot(0, shown)
app.exec()
"""


def run(code: str, env: dict) -> list[float]:
    t0 = time.time()
    out = subprocess.run([sys.executable, "-c", code, repr(t0)], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        raise SystemExit(out.stderr or "no prediction overlay within 60 s")
    return [float(v) for v in lines[-1].split()]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "SEGSTUDIO_DATA_DIR": tmp, "SEGSTUDIO_CONFIG_DIR": tmp,
               "PYTHONPATH": str(REPO)}
        env.setdefault("QT_QPA_PLATFORM", "offscreen")
        run(OURS, env)   # first run copies the sample project; not timed
        ours, bare = [], []
        for _ in range(args.runs):     # alternate, so drift hits both alike
            ours.append(run(OURS, env))
            bare.append(run(BARE, env)[0])
    m, b = statistics.median(o[0] for o in ours), statistics.median(bare)
    print(json.dumps({"benchmark": "startup", "median_s": round(m, 3),
                      "runs": [round(o[0], 3) for o in ours],
                      "bare_pyside6_median_s": round(b, 3), "ratio": round(m / b, 2),
                      "to_prediction_median_s": round(statistics.median(o[1] for o in ours), 3),
                      "to_prediction_runs": [round(o[1], 3) for o in ours],
                      "peak_rss_mb": round(statistics.median(o[2] for o in ours), 1),
                      "target_s": 1.5, "platform": env["QT_QPA_PLATFORM"]}))


if __name__ == "__main__":
    main()
