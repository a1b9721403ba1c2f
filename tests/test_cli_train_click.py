"""`segstudio-cli train-click`: a click model from a project's labels, and clear refusals."""

import json
import shutil
from pathlib import Path

from segstudio.cli import main

SAMPLE = Path(__file__).resolve().parents[1] / "resources" / "sample_project"


def test_train_click_writes_a_click_run_the_backend_loads(tmp_path, capsys):
    from segstudio.ml.click_backend import OursBackend, click_runs

    root = tmp_path / "p"
    shutil.copytree(SAMPLE, root)
    assert main(["train-click", str(root), "--steps", "12", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    runs = click_runs(root)
    assert runs and runs[0].parent == root / "runs" / "click" and runs[0].name in out
    card = json.loads((runs[0] / "model_card.json").read_text())
    assert card["kind"] == "click" and card["steps"] == 12 and card["data"]["objects"] > 0
    assert OursBackend(runs[0]).name == f"ours: {runs[0].name}"


def test_train_click_without_labels_or_project_says_why(tmp_path, capsys):
    assert main(["train-click", str(tmp_path / "missing"), "--steps", "2"]) == 2
    assert "segstudio: error:" in capsys.readouterr().err
    raw = tmp_path / "raw"
    raw.mkdir()
    import cv2
    import numpy as np

    cv2.imwrite(str(raw / "a.png"), np.zeros((40, 40), np.uint8))
    assert main(["new", str(raw), "--out", str(tmp_path / "empty")]) == 0
    capsys.readouterr()
    assert main(["train-click", str(tmp_path / "empty"), "--steps", "2"]) == 2
    assert "label a few objects" in capsys.readouterr().err
