"""No command that writes a folder can delete the project or a folder that is not its own output."""

import json

import pytest

from segstudio.cli import main
from segstudio.io.project import Project


def _snapshot(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


@pytest.mark.parametrize("where", ["parent", "itself", "runs", "masks"])
def test_export_overwrite_never_touches_the_project(sample_copy, where, capsys):
    out = {"parent": sample_copy.parent, "itself": sample_copy, "runs": sample_copy / "runs",
           "masks": sample_copy / "masks"}[where]
    before = _snapshot(sample_copy)
    rc = main(["export", str(sample_copy), "--format", "png", "--out", str(out), "--overwrite"])
    assert rc == 2
    assert _snapshot(sample_copy) == before
    assert Project.open(sample_copy).images
    message = capsys.readouterr().err
    assert str(out.resolve()) in message and "Traceback" not in message


def test_overwrite_replaces_only_an_earlier_export(sample_copy, tmp_path, capsys):
    out = tmp_path / "dataset"
    assert main(["export", str(sample_copy), "--format", "png", "--out", str(out)]) == 0
    assert main(["export", str(sample_copy), "--format", "coco", "--out", str(out),
                 "--overwrite"]) == 0
    assert json.loads((out / "export.json").read_text())["format"] == "coco"
    foreign = tmp_path / "my thesis"
    foreign.mkdir()
    (foreign / "chapter1.tex").write_text("precious")
    assert main(["export", str(sample_copy), "--format", "png", "--out", str(foreign),
                 "--overwrite"]) == 2
    assert (foreign / "chapter1.tex").read_text() == "precious"
    assert "not an earlier SegStudio dataset export" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["export", str(sample_copy), "--format", "png", "--out", str(empty)]) == 0


def test_export_model_never_replaces_the_project(sample_copy, tmp_path, capsys):
    from segstudio.ml.export_model import ModelExportError, export_run

    import shutil

    from tests.conftest import REPO

    run = sample_copy / "runs" / "starter"           # a real trained run inside the project
    shutil.copytree(REPO / "models" / "starter-nuclei", run)
    before = _snapshot(sample_copy)
    for out in (sample_copy, sample_copy.parent, run):
        with pytest.raises(ModelExportError):
            export_run(sample_copy, run.name, out, onnx=False, overwrite=True)
        rc = main(["export-model", str(sample_copy), "--run", run.name, "--out", str(out),
                   "--overwrite", "--no-onnx"])
        assert rc == 2
    assert _snapshot(sample_copy) == before
    ok = tmp_path / "model"
    export_run(sample_copy, run.name, ok, onnx=False)
    export_run(sample_copy, run.name, ok, onnx=False, overwrite=True)    # an earlier model export
    assert (ok / "model.pt").exists()


def test_predict_never_writes_into_the_project(sample_copy, capsys):
    before = _snapshot(sample_copy)
    rc = main(["predict", str(sample_copy), "--run", "latest", "--out", str(sample_copy / "masks")])
    assert rc == 2
    assert _snapshot(sample_copy) == before
    assert "is inside" in capsys.readouterr().err
