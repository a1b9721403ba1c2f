from pathlib import Path

import pytest

from segstudio.io.project import Project
from segstudio.ml.evaluate import evaluate_project
from segstudio.ml.runs import load_run_model

REPO = Path(__file__).resolve().parents[2]
STARTER = REPO / "models" / "starter-nuclei"


def test_starter_model_is_small_and_segments_the_sample_nuclei():
    if not (STARTER / "best.pt").exists():
        pytest.fail("models/starter-nuclei/best.pt is missing: run scripts/train_starter_model.py")
    assert sum(f.stat().st_size for f in STARTER.iterdir()) < 5_000_000
    loaded = load_run_model(None, STARTER)
    assert loaded.card["classes"][1]["name"] == "nucleus"
    project = Project.open(REPO / "resources" / "sample_project")
    report = evaluate_project(project, loaded.model, loaded.normalise, loaded.classes)
    assert report.scores.pixels > 0
    assert report.scores.dice[1] > 0.8
