"""kill -9 at random moments: the project reopens and holds every stroke saved before the kill,
also when the journal it appends to ends in a record torn by an earlier crash."""

import os
import random
import signal
import subprocess
import sys
import time

import cv2
import numpy as np

from segstudio.io.project import Project
from tests.conftest import REPO
from tests.io.crash_child import stroke_centre

TRIALS = 24


def _project(tmp_path):
    (tmp_path / "raw").mkdir()
    ok, buf = cv2.imencode(".png", np.zeros((480, 480), np.uint8))
    (tmp_path / "raw" / "a.png").write_bytes(buf.tobytes())
    return Project.from_folder(tmp_path / "raw", tmp_path / "proj").root


def test_sigkill_at_random_moments_loses_no_saved_stroke(tmp_path):
    root = _project(tmp_path)
    rnd = random.Random(1234)
    total_acked, kills = 0, 0
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for trial in range(TRIALS):
        proc = subprocess.Popen([sys.executable, "-m", "tests.io.crash_child", str(root)],
                                cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
        # wait for the first ack (imports done), then kill somewhere in the next stretch
        first = proc.stdout.readline()
        time.sleep(rnd.uniform(0.0, 0.6))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        lines = (first + out).split()
        kills += proc.returncode == -signal.SIGKILL
        acked = max((int(n) for w, n in zip(lines, lines[1:]) if w == "acked"), default=0)
        # reopen exactly as the app would after the crash
        project = Project.open(root)
        mask = project.load_mask(project.images[0], (480, 480))
        missing = [k for k in range(acked) if mask[stroke_centre(k)] != 1 + k % 2]
        assert not missing, f"trial {trial}: strokes {missing[:5]} were acknowledged but lost"
        total_acked = max(total_acked, acked)
        # the next trial starts from what is on disk: clear it for a fresh run of strokes
        project.masks.write(project.images[0].id, np.full((480, 480), 255, np.uint8))
        if trial % 2:   # and, every other trial, a torn tail that the next strokes follow
            with open(project.masks.journal_path(project.images[0].id), "ab") as f:
                f.write(b"SSJ1\x40\x00\x00\x00torn-by-a-crash")
    assert kills >= TRIALS - 2          # the kills really landed mid-run
    assert total_acked > 10             # and strokes were being saved when they did
