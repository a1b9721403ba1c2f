"""A project with an object class trains a model with a boundary output; Predict, Measure and
the CLI read it out into objects, and count objects from the stored object ids."""

import json

import cv2
import numpy as np
import pytest

from segstudio.core.classes import LabelClass
from segstudio.io.project import Project
from segstudio.ml.objects import SEED_MARGIN


def touching_pairs_project(root, rng, n=5, size=128):
    """Each image: 3 pairs of touching bright discs (one object id each) on a dark ground,
    with a darker seam where the two discs of a pair meet; the last image is 'val'."""
    src = root / "src"
    src.mkdir(parents=True)
    masks, ids = [], []
    for i in range(n):
        mask = np.zeros((size, size), np.uint8)
        obj = np.zeros((size, size), np.uint32)
        image = np.full((size, size), 30.0)
        next_id = 1
        for k in range(3):
            r = int(rng.integers(7, 11))
            cy = 20 + 40 * k
            cx = int(rng.integers(r + 2, size - 3 * r - 2))
            for dx in (0, 2 * r):
                disc = np.zeros((size, size), np.uint8)
                cv2.circle(disc, (cx + dx, cy), r, 1, -1)
                disc = disc.astype(bool) & (obj == 0)
                mask[disc] = 1
                obj[disc] = next_id
                image[disc] = 200
                next_id += 1
            image[cy - r:cy + r, cx + r] = 110          # the seam
        image += rng.normal(0, 8, image.shape)
        cv2.imwrite(str(src / f"im{i}.png"), image.clip(0, 255).astype(np.uint8))
        masks.append(mask)
        ids.append(obj)
    project = Project.create(root / "proj", classes=[
        LabelClass(0, "background", "#000000"),
        LabelClass(1, "nucleus", "#ff0000", objects=True)])
    entries = project.add_images(sorted(src.glob("*.png")))
    for i, (e, m, o) in enumerate(zip(entries, masks, ids)):
        project.update_entry(e.id, split="val" if i == n - 1 else "train")
        project.masks.write(e.id, m)
        project.masks.write_objects(e.id, o)
    project.save()
    return root / "proj"


@pytest.fixture(scope="module")
def object_run(tmp_path_factory):
    import torch

    from segstudio.ml.train import TrainConfig, train
    from tests.ml.conftest import TINY_RUN

    torch.manual_seed(0)
    root = touching_pairs_project(tmp_path_factory.mktemp("objects"), np.random.default_rng(3))
    result = train(Project.open(root), TrainConfig(**TINY_RUN))
    return root, result.run_dir


def test_the_run_has_a_boundary_output_and_says_so(object_run):
    from segstudio.ml.runs import load_run_model, read_card

    root, run_dir = object_run
    card = read_card(run_dir)
    assert card["objects"] == {"boundary": 2, "classes": [1], "seed_margin": SEED_MARGIN}
    loaded = load_run_model(root, run_dir)
    assert loaded.objects is not None and loaded.objects.boundary == 2
    # the boundary is an output, not a class the user sees
    assert [c.id for c in loaded.classes] == [0, 1]
    head = [m for m in loaded.model.modules() if isinstance(m, __import__("torch").nn.Conv2d)][-1]
    assert head.out_channels == 3


def test_prediction_gives_project_classes_and_object_ids(object_run):
    from segstudio.ml.predict import predict_tiled
    from segstudio.ml.runs import load_run_model

    root, run_dir = object_run
    loaded = load_run_model(root, run_dir)
    project = Project.open(root)
    image = project.read_image(project.images[0]).data
    pred = predict_tiled(loaded.model, image, loaded.normalise, objects=loaded.objects)
    assert pred.labels.max() <= 1 and pred.num_classes == 2
    assert pred.objects is not None and pred.objects.dtype == np.uint32
    assert pred.objects.shape == image.shape[:2]
    # every object pixel is a nucleus pixel
    assert (pred.labels[pred.objects > 0] == 1).all()


def test_measure_counts_the_stored_objects_and_matches_the_runs_table(object_run):
    from segstudio.ml.runs import read_card
    from segstudio.ml.session import measure

    root, run_dir = object_run
    report = measure(root, run_dir, "val")
    counts = report.instances[1]
    # 6 discs in touching pairs: the stored ids say 6; connected regions would say 3
    assert counts.true == 6
    best = read_card(run_dir)["metrics"]["best"]
    assert report.means["dice"] == pytest.approx(best["mean_dice"], abs=1e-6)
    # the runs table scores objects as Measure does: from the stored ids, not the regions
    assert best["object_ap50"] == pytest.approx(counts.ap(0.5), abs=1e-9)
    assert best["object_pq"] == pytest.approx(counts.panoptic_quality, abs=1e-9)


def test_early_stopping_follows_the_objects_as_well_as_the_pixels():
    from segstudio.ml.cards import describe_score
    from segstudio.ml.validate import score

    pixels_only = {"mean_dice": 0.9, "val_loss": 0.2}
    assert score(pixels_only) == pytest.approx(0.9)
    # same Dice, objects better apart: a better epoch
    worse, better = ({**pixels_only, "object_ap50": ap} for ap in (0.6, 0.7))
    assert score(better) > score(worse)
    assert score(better) == pytest.approx(0.8)
    assert describe_score(better) == "mean Dice 0.900, object AP@0.5 0.700"
    assert score({"mean_dice": float("nan"), "object_ap50": float("nan"), "val_loss": 0.3}) \
        == pytest.approx(-0.3)


def test_cli_evaluate_and_predict_with_objects(object_run, tmp_path, capsys):
    from segstudio.cli import main

    root, run_dir = object_run
    assert main(["evaluate", str(root), "--run", run_dir.name, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["instances"]["1"]["true"] == 6
    assert main(["evaluate", str(root), "--run", run_dir.name]) == 0
    text = capsys.readouterr().out
    assert "mean AP 0.5:0.95" in text and "IoU>=" in text
    out = tmp_path / "pred"
    assert main(["predict", str(root), "--run", run_dir.name, "--out", str(out)]) == 0
    summary = json.loads((out / "predictions.json").read_text())
    row = summary["images"][0]
    ids = cv2.imread(str(out / row["objects"]), cv2.IMREAD_UNCHANGED)
    assert ids.dtype == np.uint16 and int(ids.max()) == row["object_count"]


def test_predict_for_the_window_caches_and_returns_objects(object_run, tmp_path):
    import shutil

    from segstudio.ml.session import predict_images

    root, run_dir = object_run
    copy = tmp_path / "proj"
    shutil.copytree(root, copy)
    run = copy / "runs" / run_dir.name
    image_id = Project.open(copy).images[0].id
    first = predict_images(copy, run, [image_id])[0]
    assert first.objects is not None and first.objects.shape == first.labels.shape
    cached = list((copy / ".segstudio" / "predictions" / run.name).glob("*.prediction.objects.*"))
    assert len(cached) == 1
    again = predict_images(copy, run, [image_id])[0]             # from the cache
    np.testing.assert_array_equal(again.objects, first.objects)
    np.testing.assert_array_equal(again.labels, first.labels)


def test_the_plan_says_which_classes_are_trained_as_objects(object_run, capsys):
    from segstudio.cli import main

    root, _run = object_run
    assert main(["plan", str(root)]) == 0
    out = capsys.readouterr().out
    assert "objects: 'nucleus' learnt with an object-boundary output" in out
