"""One prediction path: the runs table's validation score is what Measure shows.

The run is trained by the real trainer (tiny preset, CPU, seed 0) on images larger than a
prediction tile, so tiling and blending are part of what must agree.
"""

import math

import numpy as np
import pytest

from segstudio.io.project import Project
from segstudio.ml.cards import list_run_cards
from segstudio.ml.runs import read_card


def test_recorded_validation_dice_equals_measure_on_the_same_images(trained_project):
    from segstudio.ml.session import measure

    root, run_dir = trained_project
    card = read_card(run_dir)
    best = card["metrics"]["best"]
    assert card["data"]["val_images"] == ["im4", "im5"]
    # what the runs table shows for this run
    row = next(c for c in list_run_cards(root / "runs") if c["run_dir"] == str(run_dir))
    table_dice = row["metrics"]["best"]["mean_dice"]
    assert math.isfinite(table_dice) and 0.0 < table_dice <= 1.0

    report = measure(root, run_dir, "val")               # the Metrics panel's job
    assert sorted(r.image_id for r in report.images) == ["im4", "im5"]
    assert report.means["dice"] == pytest.approx(table_dice, abs=1e-6)
    assert report.means["iou"] == pytest.approx(best["mean_iou"], abs=1e-6)
    for c in ("background", "cell", "debris"):
        cid = report.class_names.index(c)
        assert report.scores.dice[cid] == pytest.approx(best[f"dice:{c}"], abs=1e-6, nan_ok=True)


def test_cli_evaluate_agrees_with_the_runs_table(trained_project, capsys):
    import json

    from segstudio.cli import main

    root, run_dir = trained_project
    assert main(["evaluate", str(root), "--run", run_dir.name, "--json",
                 "--exclude-background"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["mean"]["dice"] == pytest.approx(
        read_card(run_dir)["metrics"]["best"]["mean_dice"], abs=1e-6)


def test_validation_loss_is_the_cross_entropy_of_the_predictor(trained_project):
    """val_loss is -log p(true class) of the blended probabilities Predict shows."""
    from segstudio.core.classes import UNLABELED
    from segstudio.ml.predict import predict_probabilities
    from segstudio.ml.runs import load_run_model

    root, run_dir = trained_project
    loaded = load_run_model(root, run_dir)
    project = Project.open(root)
    total, n = 0.0, 0
    for e in project.images:
        if e.split != "val":
            continue
        image = project.read_image(e).data
        mask = project.load_mask(e, image.shape[:2])
        probs = predict_probabilities(loaded.model, image, loaded.normalise)
        keep = mask != UNLABELED
        picked = np.take_along_axis(probs, mask.astype(np.int64)[None] * keep, 0)[0][keep]
        total -= float(np.log(np.maximum(picked.astype(np.float64), 1e-12)).sum())
        n += int(keep.sum())
    assert read_card(run_dir)["metrics"]["best"]["val_loss"] == pytest.approx(total / n,
                                                                              rel=1e-5)


def test_at_a_working_scale_validation_and_measure_still_agree_at_full_size(tmp_path):
    """A run trained at half scale: Measure predicts at that scale, brings the masks back to
    the images' own size, and shows the runs table's number."""
    import torch

    from segstudio.ml.runs import load_run_model
    from segstudio.ml.session import measure
    from segstudio.ml.train import TrainConfig, train
    from tests.ml.conftest import TINY_RUN, make_blob_project

    torch.manual_seed(0)
    root = make_blob_project(tmp_path, np.random.default_rng(1))
    result = train(Project.open(root), TrainConfig(**{**TINY_RUN, "working_scale": 0.5}))
    card = read_card(result.run_dir)
    assert card["plan"]["working"] == {"mode": "factor", "factor": 0.5}
    assert card["plan"]["reasons"]["working"] == "set by you"
    loaded = load_run_model(root, result.run_dir)
    assert loaded.normalise.working_shape(300, 200) == (150, 100)
    project = Project.open(root)
    entry = project.images[0]
    image = project.read_image(entry).data
    from segstudio.ml.predict import predict_tiled
    assert predict_tiled(loaded.model, image, loaded.normalise).labels.shape == image.shape[:2]
    report = measure(root, result.run_dir, "val")
    assert report.means["dice"] == pytest.approx(card["metrics"]["best"]["mean_dice"], abs=1e-6)
