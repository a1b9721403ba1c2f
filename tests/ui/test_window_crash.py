"""kill -9 of the real window while it paints with real mouse events: every stroke the window
acknowledged as saved is on disk when the project is reopened."""

import os
import random
import select
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from segstudio.io.project import Project
from tests.conftest import REPO
from tests.ui.window_crash_child import IMAGE, STROKES, stroke_row

TRIALS = 4


@pytest.mark.slow
def test_sigkill_of_the_painting_window_loses_no_acknowledged_stroke(sample_copy):
    rnd = random.Random(7)
    env = {**os.environ, "PYTHONPATH": str(REPO), "QT_QPA_PLATFORM": "offscreen"}
    done, kills = 0, 0
    for trial in range(TRIALS):
        if done >= STROKES:
            break
        proc = subprocess.Popen([sys.executable, "-m", "tests.ui.window_crash_child",
                                 str(sample_copy), str(done)], cwd=REPO, env=env,
                                stdout=subprocess.PIPE, text=True)
        ready, _, _ = select.select([proc.stdout], [], [], 90)   # never hang the suite
        if not ready:
            proc.kill()
            pytest.fail(f"trial {trial}: the window child saved no stroke within 90 s")
        first = proc.stdout.readline()          # painting has started and one stroke is saved
        assert first.startswith("acked"), f"child did not start painting: {first!r}"
        time.sleep(rnd.uniform(0.05, 0.4))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        kills += proc.returncode == -signal.SIGKILL
        words = (first + out).split()
        acked = max(int(n) for w, n in zip(words, words[1:]) if w == "acked")
        project = Project.open(sample_copy)      # reopen as the app would after the crash
        mask = project.masks.load(IMAGE, (256, 256))
        # widget coordinates are whole pixels: a stroke lands within a row or two of its aim
        missing = [k for k in range(done, done + acked) if not
                   (mask[stroke_row(k) - 2:stroke_row(k) + 2, 60:180] == 1).all(axis=1).any()]
        assert not missing, f"trial {trial}: acknowledged strokes {missing[:5]} were lost"
        done += acked
    assert kills >= 2 and done > 5
