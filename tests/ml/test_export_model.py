"""Exporting a run: checkpoint, model card and an ONNX file that gives torch's output."""

import json

import numpy as np
import pytest

from segstudio.cli import main
from tests.conftest import REPO

torch = pytest.importorskip("torch")


def test_export_starter_model_with_onnx(tmp_path, sample_copy, capsys):
    out = tmp_path / "exported"
    run = REPO / "models" / "starter-nuclei"
    assert main(["export-model", str(sample_copy), "--run", str(run), "--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {"model.pt", "model.onnx", "model_card.json"}
    card = json.loads((out / "model_card.json").read_text())
    assert card["classes"][1]["name"] == "nucleus" and card["exported"]["onnx"]["opset"] >= 11
    onnxruntime = pytest.importorskip("onnxruntime")
    from segstudio.ml.runs import load_run_model
    model = load_run_model(sample_copy, run).model
    x = np.random.default_rng(0).normal(size=(1, card["in_channels"], 64, 64)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    got = onnxruntime.InferenceSession(str(out / "model.onnx")).run(None, {
        onnxruntime.InferenceSession(str(out / "model.onnx")).get_inputs()[0].name: x})[0]
    assert np.abs(got - ref).max() < 1e-3
    # a second export to the same folder is refused unless asked to overwrite
    assert main(["export-model", str(sample_copy), "--run", str(run), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["export-model", str(sample_copy), "--run", str(run), "--out", str(out),
                 "--overwrite", "--no-onnx"]) == 0
    assert not (out / "model.onnx").exists()


def test_export_of_a_missing_run_says_so(tmp_path, sample_copy, capsys):
    assert main(["export-model", str(sample_copy), "--run", "nope", "--out", str(tmp_path / "o")]) == 2
    assert "nope" in capsys.readouterr().err and not (tmp_path / "o").exists()
