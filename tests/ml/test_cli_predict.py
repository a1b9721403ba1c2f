"""`segstudio-cli predict` / `evaluate` and the run loader, on runs the real trainer saved.

The run comes from `trained_project` (tests/ml/conftest.py): the tiny preset trained for a few
steps once per session; tests that change it work on a copy (`project_copy`).
"""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from segstudio.cli import main  # noqa: E402
from segstudio.core.metrics import confusion_matrix  # noqa: E402
from segstudio.io.masks import read_mask_file  # noqa: E402
from segstudio.io.project import Project  # noqa: E402
from segstudio.ml.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from segstudio.ml.normalise import Normalisation  # noqa: E402
from segstudio.ml.predict import TileOptions, predict_tiled  # noqa: E402
from segstudio.ml.runs import RunError, load_run_model, read_card  # noqa: E402


def _edit_checkpoint(path, **config):
    ckpt = load_checkpoint(path)
    save_checkpoint(path, {**ckpt["config"], **config}, ckpt["state_dict"])


def test_load_run_model_reads_what_the_trainer_saved(trained_project):
    root, run_dir = trained_project
    card = read_card(run_dir)
    loaded = load_run_model(root, run_dir.name)
    assert type(loaded.model).__name__ == "TinyFCN" and not loaded.model.training
    assert [c.name for c in loaded.classes] == ["background", "cell", "debris"]
    assert loaded.classes[1].color == card["classes"][1]["color"]
    assert loaded.normalise == Normalisation("percentile", in_channels=1)
    assert loaded.checkpoint == run_dir / "best.pt" and loaded.card["run_id"] == card["run_id"]
    assert load_run_model(root, "latest").run_dir == run_dir
    assert load_run_model(None, run_dir).classes == loaded.classes     # no project: the card's
    # best.pt and last.pt differ (the best epoch is not the last): "which" picks
    last = load_run_model(root, run_dir, which="last")
    assert last.checkpoint.name == "last.pt"
    if card["metrics"]["best_epoch"] != card["epochs"]:
        x = torch.zeros(1, 1, 32, 32)
        with torch.no_grad():
            assert not torch.equal(loaded.model(x), last.model(x))


def test_load_run_errors_teach(project_copy):
    root, run_dir = project_copy
    with pytest.raises(RunError, match=rf"known runs: \['{run_dir.name}'\]"):
        load_run_model(root, "nope")
    (root / "runs" / "empty").mkdir()
    with pytest.raises(RunError, match="no checkpoint"):
        load_run_model(root, "empty")
    _edit_checkpoint(run_dir / "best.pt", model={"name": "unet9"})
    with pytest.raises(RunError, match="unknown model 'unet9'"):
        load_run_model(root, run_dir.name)
    _edit_checkpoint(run_dir / "last.pt", num_classes=5)
    with pytest.raises(RunError, match="does not fit"):
        load_run_model(root, run_dir.name, which="last")
    (root / "runs" / "junk").mkdir()
    (root / "runs" / "junk" / "last.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(RunError, match=r"is not a SegStudio checkpoint \(not a PyTorch file\)"):
        load_run_model(root, "junk")


def test_evaluate_json_matches_a_direct_computation(trained_project, capsys):
    """The CLI's report is the predictor's labels scored image by image (labelled ones only)."""
    root, run_dir = trained_project
    assert main(["evaluate", str(root), "--run", run_dir.name, "--json", "--split", "all"]) == 0
    report = json.loads(capsys.readouterr().out)
    project = Project.open(root)
    loaded = load_run_model(root, run_dir)
    cm = np.zeros((3, 3), np.int64)
    for e in project.images:
        image = project.read_image(e).data
        mask = project.load_mask(e, image.shape[:2])
        cm += confusion_matrix(mask, predict_tiled(loaded.model, image, loaded.normalise).labels, 3)
    assert cm.sum() > 0 and report["confusion"] == cm.tolist()
    assert sorted(r["image_id"] for r in report["images"]) == [f"im{i}" for i in range(6)]
    assert [c["name"] for c in report["classes"]] == ["background", "cell", "debris"]
    assert report["classes"][1]["support"] == int(cm[1].sum())
    tp = cm[1, 1]
    assert report["classes"][1]["iou"] == pytest.approx(tp / (cm[1].sum() + cm[:, 1].sum() - tp))
    assert report["instances"] == {}                      # three classes: no objects counted


def test_evaluate_table_and_empty_split(trained_project, capsys):
    root, run_dir = trained_project
    assert main(["evaluate", str(root), "--run", run_dir.name]) == 0
    out = capsys.readouterr().out
    assert "debris" in out and "IoU" in out and "objects" not in out
    assert main(["evaluate", str(root), "--run", run_dir.name, "--split", "test"]) == 1
    assert "nothing was measured" in capsys.readouterr().err
    assert main(["evaluate", str(root), "--run", run_dir.name, "--objects", "1",
                 "--exclude-background"]) == 0
    out = capsys.readouterr().out
    assert "objects 'cell'" in out and "mean (excl. 0)" in out
    assert main(["evaluate", str(root), "--run", run_dir.name, "--objects", "x"]) == 2


def test_predict_project_writes_masks_and_probabilities(trained_project, tmp_path):
    root, run_dir = trained_project
    out = tmp_path / "out"
    assert main(["predict", str(root), "--run", run_dir.name, "--out", str(out),
                 "--probabilities", "--tile", "128"]) == 0
    project = Project.open(root)
    loaded = load_run_model(root, run_dir)
    summary = json.loads((out / "predictions.json").read_text())
    assert [r["id"] for r in summary["images"]] == [e.id for e in project.images]
    assert [c["name"] for c in summary["classes"]] == ["background", "cell", "debris"]
    for e in project.images[:2]:
        image = project.read_image(e).data
        mask = read_mask_file(out / f"{e.id}.png")
        expected = predict_tiled(loaded.model, image, loaded.normalise, TileOptions(tile=128))
        assert np.array_equal(mask, expected.labels)
        assert (mask == 1).any()                          # the run learnt the bright cells
        probs = np.load(out / f"{e.id}.probs.npy")
        assert probs.shape == (3, *image.shape[:2]) and probs.dtype == np.float16
        assert (probs.astype(np.float32).argmax(0) == mask).mean() > 0.99   # float16 ties
    row = summary["images"][0]
    assert 0.0 <= row["mean_entropy"] <= 1.0 and 0.0 <= row["mean_margin"] <= 1.0


def test_predict_folder_with_a_run_folder(trained_project, tmp_path):
    root, run_dir = trained_project
    src = tmp_path / "imgs"
    src.mkdir()
    project = Project.open(root)
    for e in project.images[:3]:
        path = project.image_path(e)
        (src / path.name).write_bytes(path.read_bytes())
    out = tmp_path / "out"
    assert main(["predict", str(src), "--run", str(run_dir), "--out", str(out)]) == 0
    first = sorted(src.iterdir())[0]
    assert (out / f"{first.stem}.png").is_file() and not (out / f"{first.stem}.probs.npy").exists()
    assert main(["predict", str(src), "--run", run_dir.name, "--out", str(out)]) == 2  # no project
    inside = src / "predicted"                  # masks written into the folder being read
    for _ in range(2):
        assert main(["predict", str(src), "--run", str(run_dir), "--out", str(inside)]) == 0
    summary = json.loads((inside / "predictions.json").read_text())
    assert len(summary["images"]) == 3          # the first run's masks were not predicted


def test_predict_reports_unreadable_files_and_goes_on(trained_project, tmp_path, capsys):
    root, run_dir = trained_project
    src = tmp_path / "imgs"
    src.mkdir()
    project = Project.open(root)
    (src / "a.png").write_bytes(project.image_path(project.images[0]).read_bytes())
    (src / "broken.png").write_bytes(b"\x89PNG nope")
    assert main(["predict", str(src), "--run", str(run_dir), "--out", str(tmp_path / "o")]) == 1
    assert (tmp_path / "o" / "a.png").is_file()
    assert "broken.png" in capsys.readouterr().err


def test_a_run_copied_by_hand_without_card_or_classes(project_copy):
    """A checkpoint copied without its card: classes from the project, else 'class N'."""
    root, run_dir = project_copy
    (run_dir / "model_card.json").unlink()
    _edit_checkpoint(run_dir / "best.pt", classes=[])
    assert [c.name for c in load_run_model(root, run_dir).classes] == [
        "background", "cell", "debris"]
    assert load_run_model(None, run_dir).classes[2].name == "class 2"


def test_predicted_masks_are_named_like_the_project_names_the_image(trained_project, tmp_path):
    """One naming rule: the CLI's mask for a file is named by the id a project gives it."""
    root, run_dir = trained_project
    src = tmp_path / "imgs"
    src.mkdir()
    source = Project.open(root)
    (src / "Zellkern é 01.png").write_bytes(source.image_path(source.images[0]).read_bytes())
    project = Project.create(tmp_path / "other")
    (entry,) = project.add_images([src / "Zellkern é 01.png"])
    assert main(["predict", str(src), "--run", str(run_dir), "--out", str(tmp_path / "o")]) == 0
    assert entry.id == "Zellkern_e_01" and (tmp_path / "o" / f"{entry.id}.png").is_file()
