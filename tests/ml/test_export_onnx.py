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
