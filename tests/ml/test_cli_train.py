import json
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2

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


def test_ml_and_cli_train_run_without_pyside6(tmp_path, rng):
    root = make_project(tmp_path, rng)
    code = _BLOCK_QT + textwrap.dedent(f"""
        import segstudio.ml.train, segstudio.ml.data, segstudio.ml.checkpoint, segstudio.ml.device
        from segstudio import cli
        rc = cli.main(["train", {str(root)!r}, "--preset", "tiny", "--epochs", "1",
                       "--steps-per-epoch", "2", "--batch-size", "2", "--patch-size", "32",
                       "--quiet"])
        assert rc == 0, rc
        assert cli.main(["doctor"]) == 0
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
