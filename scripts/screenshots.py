"""Regenerates the README's Quick tour screenshots from the bundled sample project.

usage: python scripts/screenshots.py [--out docs/images]
Runs offscreen (or on the display in QT_QPA_PLATFORM); writes main_window.png, training.png,
prediction.png and metrics.png. Training uses the small "tiny" preset for a few epochs so the
script finishes in about a minute on a laptop CPU.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "images")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    os.environ["SEGSTUDIO_DATA_DIR"] = str(tmp / "data")
    os.environ["SEGSTUDIO_CONFIG_DIR"] = str(tmp / "config")
    from PySide6.QtWidgets import QApplication

    from segstudio.io.project import Project
    from segstudio.io.userdirs import sample_project
    from segstudio.ui.app import build_main_window

    app = QApplication.instance() or QApplication([])

    def wait(cond, timeout: float = 300.0, settle: float = 0.3) -> None:
        end = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > end:
                raise SystemExit("timed out waiting for the window")
            app.processEvents()
            time.sleep(0.01)
        end = time.monotonic() + settle
        while time.monotonic() < end:
            app.processEvents()
            time.sleep(0.01)

    def shot(name: str) -> None:
        args.out.mkdir(parents=True, exist_ok=True)
        w.grab().save(str(args.out / name))
        print(f"wrote {args.out / name}")

    w = build_main_window(Project.open(sample_project()))
    w.resize(1600, 980)
    w.show()
    loop = w.model_loop
    idle = lambda: w.canvas.document is not None and not w._jobs  # noqa: E731
    wait(idle, settle=1.0)
    w.model_loop.docks[0].raise_()
    shot("main_window.png")

    tp = loop.train_panel
    tp.preset.setCurrentIndex(tp.preset.findData("tiny"))
    tp.epochs.setValue(6)
    tp.minutes.setValue(0)
    loop.start_training()
    wait(lambda: loop.train_job is None and idle())
    loop.docks[0].raise_()
    shot("training.png")

    starter = REPO / "models" / "starter-nuclei"
    loop.set_active_run(starter)
    w.hint.hide()
    w.show_image("nuclei_09")
    wait(lambda: loop.prediction is not None and loop.prediction.image_id == "nuclei_09" and idle())
    loop.docks[1].raise_()
    pp = loop.predict_panel
    pp.view.setCurrentIndex(pp.view.findData("prediction"))
    loop.rank()
    wait(lambda: pp.ranking.count() > 0 and idle())
    shot("prediction.png")

    loop.measure("val")
    wait(lambda: loop.metrics_panel.report is not None and idle())
    loop.docks[2].raise_()
    shot("metrics.png")
    w.close()
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
