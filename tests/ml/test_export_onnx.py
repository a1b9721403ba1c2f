"""ONNX export of a tiny conv net: same output as torch within atol 1e-4 + rtol 1e-3."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from segstudio.ml.export_onnx import OnnxExportError, export_onnx


class TinySeg(nn.Module):
    def __init__(self, in_channels: int = 3, num_classes: int = 4) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1), nn.BatchNorm2d(8),
                                  nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 8, 3, padding=1),
                                  nn.ReLU(), nn.Upsample(scale_factor=2, mode="bilinear"),
                                  nn.Conv2d(8, num_classes, 1))

    def forward(self, x):
        return self.body(x)


def test_onnx_matches_torch_on_other_sizes_too(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = TinySeg(in_channels=1)
    model.train()
    result = export_onnx(model, 1, tmp_path / "m.onnx", size=(32, 32))
    assert model.training                       # left as it was
    assert result.checked and result.max_abs_diff <= 1e-4
    # dynamic batch/height/width: a size not traced gives torch's output too
    x = np.random.default_rng(1).standard_normal((3, 1, 48, 64)).astype(np.float32)
    got = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"]).run(
        None, {"image": x})[0]
    with torch.no_grad():
        want = model.eval()(torch.from_numpy(x)).numpy()
    assert got.shape == (3, 4, 48, 64)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-3)
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


def test_a_disagreeing_graph_is_refused_and_not_written(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")

    class Noisy(TinySeg):
        def forward(self, x):        # traced output differs from what eager mode returns
            out = super().forward(x)
            return out if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() else out + 1

    with pytest.raises(OnnxExportError, match="differs from torch"):
        export_onnx(Noisy(), 3, tmp_path / "bad.onnx", size=(16, 16))
    assert list(tmp_path.iterdir()) == []


def test_without_onnxruntime_it_exports_unchecked(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    result = export_onnx(TinySeg(), 3, tmp_path / "m.onnx", size=(16, 16))
    assert result.path.exists() and not result.checked and result.max_abs_diff is None


# -- the U-Net at sizes that are no multiple of its down-sampling factor ------------------------
ODD_SIZES = [(255, 301), (100, 100), (37, 5), (300, 200)]


def test_unet_onnx_gives_torchs_output_at_any_size(tmp_path):
    """The pad to a multiple of 2**depth is traced symbolically: a size-dependent `if` would
    be frozen at the traced 64 x 64 and the graph would fail or crop wrongly elsewhere."""
    ort = pytest.importorskip("onnxruntime")
    from segstudio.ml.models import build_model

    torch.manual_seed(0)
    model = build_model("unet", in_channels=3, num_classes=3, depth=3, width=8).eval()
    result = export_onnx(model, 3, tmp_path / "u.onnx")
    assert result.checked and set(result.checked_sizes) >= {(64, 64), (255, 301), (100, 100)}
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(2)
    for h, w in ODD_SIZES:
        x = rng.standard_normal((1, 3, h, w)).astype(np.float32)
        got = session.run(None, {"image": x})[0]
        with torch.no_grad():
            want = model(torch.from_numpy(x)).numpy()
        assert got.shape == (1, 3, h, w), (h, w)
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-3, err_msg=f"{h} x {w}")


def _reference_unet_forward(model, x):
    """The U-Net's documented rule written with F.pad: bottom/right pad to a multiple of
    2**depth, mirrored when min(h, w) > the largest pad, else the edge repeated; then crop."""
    import torch.nn.functional as F

    h, w = x.shape[-2:]
    m = 2**model.depth
    ph, pw = (-h) % m, (-w) % m
    x = F.pad(x, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "replicate")
    skips = []
    for i, block in enumerate(model.down):
        x = block(x if i == 0 else F.max_pool2d(x, 2))
        skips.append(x)
    x = skips.pop()
    for up, dec in zip(model.up, model.dec):
        x = dec(torch.cat([up(x), skips.pop()], dim=1))
    return model.head(x)[..., :h, :w]


def test_unet_eager_output_is_exactly_the_padded_rule_for_a_shipped_checkpoint():
    """Existing checkpoints load unchanged and give bit-identical output (mirror and edge pads)."""
    from segstudio.ml.runs import load_run_model
    from tests.conftest import REPO

    model = load_run_model(None, REPO / "models" / "starter-nuclei").model.eval()
    rng = np.random.default_rng(3)
    for h, w in [(64, 64), (255, 301), (100, 10), (7, 5), (1, 1)]:
        x = torch.from_numpy(rng.standard_normal((2, 1, h, w)).astype(np.float32))
        with torch.no_grad():
            assert torch.equal(model(x), _reference_unet_forward(model, x)), (h, w)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")     # the branch is the point
def test_a_graph_frozen_at_the_traced_size_is_refused(tmp_path):
    """A Python branch on the size traces fine at 64 x 64; the odd-size check catches it."""
    pytest.importorskip("onnxruntime")

    class Branchy(TinySeg):
        def forward(self, x):
            h, w = x.shape[-2:]
            ph, pw = (-h) % 8, (-w) % 8
            if ph or pw:                      # frozen: False at the traced size
                x = torch.nn.functional.pad(x, (0, pw, 0, ph), mode="replicate")
            return super().forward(x)[..., :h, :w]

    with pytest.raises(OnnxExportError, match=r"255 x 301"):
        export_onnx(Branchy(), 3, tmp_path / "bad.onnx", size=(64, 64))
    assert list(tmp_path.iterdir()) == []


def test_exported_run_says_how_to_preprocess_in_the_onnx_file_and_the_card(tmp_path, sample_copy):
    ort = pytest.importorskip("onnxruntime")
    import json

    from segstudio.cli import main
    from tests.conftest import REPO

    out = tmp_path / "exported"
    assert main(["export-model", str(sample_copy), "--run", str(REPO / "models" / "starter-nuclei"),
                 "--out", str(out)]) == 0
    card = json.loads((out / "model_card.json").read_text())
    notes = card["exported"]["onnx"]["preprocessing"]
    meta = ort.InferenceSession(str(out / "model.onnx"),
                                providers=["CPUExecutionProvider"]).get_modelmeta()
    props = meta.custom_metadata_map
    assert {k: props[f"segstudio.{k}"] for k in notes} == notes
    assert "percentiles 1-99.8" in notes["normalisation"]                # the run's own rule
    assert json.loads(notes["normalisation_rule"])["mode"] == "percentile"
    assert notes["channels"].startswith("1 channel") and "mean of R, G and B" in notes["channels"]
    assert "logits" in notes["output"] and "before softmax" in notes["output"]
    assert json.loads(notes["classes"])[1] == {"id": 1, "name": "nucleus"}
    assert [255, 301] in card["exported"]["onnx"]["checked_sizes"]
