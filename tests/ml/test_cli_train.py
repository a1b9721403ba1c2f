import json
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

from segstudio import cli
from segstudio.io.project import Project

from .conftest import blobs

REPO = Path(__file__).resolve().parents[2]


def make_project(root: Path, rng) -> Path:
    """A 6-image project with full masks on the train images, one labelled val image."""
    src = root / "src"
    src.mkdir(parents=True)
    pairs = blobs(rng, 6)
    for i, (img, _m) in enumerate(pairs):
        cv2.imwrite(str(src / f"im{i}.png"), img)
    project = Project.create(root / "proj")
    entries = project.add_images(sorted(src.glob("*.png")))
    for i, (e, (_img, m)) in enumerate(zip(entries, pairs)):
        project.update_entry(e.id, split="val" if i == 5 else "train")
        project.masks.write(e.id, m)
    project.save()
    return project.root


def test_cli_train_writes_run_folder(tmp_path, rng, capsys):
    root = make_project(tmp_path, rng)
    rc = cli.main(["train", str(root), "--preset", "tiny", "--epochs", "2",
                   "--steps-per-epoch", "3", "--batch-size", "2", "--patch-size", "32",
                   "--device", "cpu"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    runs = list((root / "runs").iterdir())
    assert len(runs) == 1 and f"run: {runs[0]}" in out.out
    card = json.loads((runs[0] / "model_card.json").read_text())
    assert card["status"] in ("finished", "early-stopped") and card["data"]["val_images"] == ["im5"]
    assert "validation: mean Dice" in out.out and "epoch 2/2" in out.err

    rc = cli.main(["train", str(root), "--epochs", "3", "--resume", runs[0].name, "--quiet"])
    assert rc == 0 and json.loads((runs[0] / "model_card.json").read_text())["epochs"] == 3
    assert cli.main(["train", str(root), "--resume", "no-such-run"]) == 1
    assert "not found" in capsys.readouterr().err


def test_cli_reports_bad_input_plainly(tmp_path, capsys):
    assert cli.main(["train", str(tmp_path / "nowhere")]) == 2
    assert "not a SegStudio project" in capsys.readouterr().err
    Project.create(tmp_path / "empty")
    assert cli.main(["train", str(tmp_path / "empty"), "--device", "cpu"]) == 1
    assert "no labelled pixels" in capsys.readouterr().err


_BLOCK_QT = textwrap.dedent("""
    import importlib.abc, sys
    class BlockQt(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split('.')[0] in ('PySide6', 'shiboken6'):
                raise ImportError(f'{name} is hidden for this test')
            return None
    sys.meta_path.insert(0, BlockQt())
""")


def test_ml_and_cli_train_predict_evaluate_run_without_pyside6(tmp_path, rng):
    root = make_project(tmp_path, rng)
    code = _BLOCK_QT + textwrap.dedent(f"""
        import segstudio.ml.train, segstudio.ml.data, segstudio.ml.checkpoint, segstudio.ml.device
        from segstudio import cli
        rc = cli.main(["train", {str(root)!r}, "--preset", "tiny", "--epochs", "1",
                       "--steps-per-epoch", "2", "--batch-size", "2", "--patch-size", "32",
                       "--quiet"])
        assert rc == 0, rc
        assert cli.main(["doctor"]) == 0
        assert cli.main(["predict", {str(root)!r}, "--run", "latest", "--out",
                         {str(tmp_path / "pred")!r}, "--tile", "32", "--batch", "2"]) == 0
        assert cli.main(["evaluate", {str(root)!r}, "--run", "latest", "--json",
                         "--tile", "32"]) == 0
        try:
            import PySide6  # noqa: F401
        except ImportError:
            pass
        else:
            raise SystemExit("PySide6 was not hidden")
        assert not any(m.split('.')[0] == 'PySide6' for m in sys.modules)
        print("HEADLESS-OK")
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "HEADLESS-OK" in proc.stdout and "Training device" in proc.stdout
    assert len(list((root / "runs").iterdir())) == 1
    assert len(list((tmp_path / "pred").glob("*.png"))) == 6
    assert '"mean_dice"' in proc.stdout          # evaluate's JSON report


TINY = ["--preset", "tiny", "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "2",
        "--patch-size", "32", "--device", "cpu", "--quiet"]


def _error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_resume_after_adding_a_class_says_to_fine_tune(tmp_path, rng, capsys):
    root = make_project(tmp_path, rng)
    assert cli.main(["train", str(root), *TINY]) == 0
    run = next((root / "runs").iterdir())
    project = Project.open(root)
    project.add_class("debris")
    mask = project.masks.load("im0", (32, 32))
    mask[:4, :4] = 2
    project.masks.write("im0", mask)
    project.save()
    capsys.readouterr()
    assert cli.main(["train", str(root), "--resume", run.name, "--quiet"]) == 1
    assert _error_lines(capsys.readouterr().err) == [
        f"segstudio: error: run {run.name} was trained with 2 classes, the project now has 3; "
        f"use --from {run.name} to fine-tune it with the new class"]
    assert cli.main(["train", str(root), "--from", run.name, *TINY]) == 0   # the advice works


def test_from_a_file_that_is_no_checkpoint_says_so(tmp_path, rng, capsys):
    root = make_project(tmp_path, rng)
    passwd = tmp_path / "passwd"
    passwd.write_text("root:x:0:0:root:/root:/bin/bash\n", encoding="utf-8")
    sources = [passwd] + [Path("/etc/passwd")] * Path("/etc/passwd").is_file()
    for source in sources:
        assert cli.main(["train", str(root), "--from", str(source), *TINY]) == 1
        assert _error_lines(capsys.readouterr().err) == [
            f"segstudio: error: {source} is not a run folder or checkpoint"]
    assert cli.main(["train", str(root), "--from", str(tmp_path), *TINY]) == 1
    assert "is not a run folder or checkpoint" in capsys.readouterr().err
    assert not (root / "runs").exists() or not any((root / "runs").iterdir())


def test_background_only_labels_are_refused_saying_what_to_label(tmp_path, rng, capsys):
    root = make_project(tmp_path, rng)
    project = Project.open(root)
    for e in project.images:
        project.masks.write(e.id, np.zeros((32, 32), np.uint8))      # background only
    assert cli.main(["train", str(root), *TINY]) == 1
    err = capsys.readouterr().err
    assert "'background'" in err and "label some pixels of 'foreground'" in err
    assert "Dice" not in err
    assert not (root / "runs").exists() or not any((root / "runs").iterdir())


def test_no_foreground_in_validation_is_no_score_not_a_perfect_one(tmp_path, rng, capsys):
    root = make_project(tmp_path, rng)
    project = Project.open(root)
    project.masks.write("im5", np.zeros((32, 32), np.uint8))        # the val image: background
    assert cli.main(["train", str(root), *TINY]) == 0
    out = capsys.readouterr().out
    assert "validation: no validation score (no foreground class labelled in validation " \
           "images)" in out
    assert "mean Dice" not in out


def test_single_class_metrics_are_no_score():
    from segstudio.core.classes import LabelClass
    from segstudio.ml.train import metrics_from

    bg, cell = LabelClass(0, "background", "#000000"), LabelClass(1, "cell", "#ff0000")
    only_bg = metrics_from(np.array([[100]]), [bg], 0.1)
    assert np.isnan(only_bg["mean_dice"]) and np.isnan(only_bg["mean_iou"])
    # cell predicted where the truth has none: its Dice is 0, but it is absent from the mean
    false_alarm = metrics_from(np.array([[90, 10], [0, 0]]), [bg, cell], 0.1)
    assert false_alarm["dice:cell"] == 0.0 and np.isnan(false_alarm["mean_dice"])
    both = metrics_from(np.array([[90, 10], [0, 10]]), [bg, cell], 0.1)
    assert both["mean_dice"] == pytest.approx(2 * 10 / (20 + 10))
