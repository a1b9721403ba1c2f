"""The prediction/metrics modules in core and io load without torch, OpenCV or Qt."""

import subprocess
import sys

from tests.conftest import REPO


def test_core_and_io_prediction_modules_stay_light():
    code = ("import sys\n"
            "import segstudio.core.metrics, segstudio.core.ranking, segstudio.core.prediction\n"
            "import segstudio.io.prediction_cache\n"
            "bad = [m for m in ('torch', 'cv2', 'PySide6', 'segstudio.ml') if m in sys.modules]\n"
            "print(bad)\n"
            "sys.exit(1 if bad else 0)\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_ml_prediction_modules_load_without_qt():
    code = ("import sys\n"
            "import segstudio.ml.predict, segstudio.ml.runs, segstudio.ml.evaluate\n"
            "import segstudio.ml.suggest\n"
            "sys.exit(1 if 'PySide6' in sys.modules else 0)\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
