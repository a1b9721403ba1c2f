"""benchmarks/anchor_hooks.py: SegStudio behind the anchors' hook protocols.

The anchor scripts live outside this repository (a clone has no ../shared), so these tests call
each hook the way its anchor does: the same arguments, the same calls, the same outputs looked at.
"""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import anchor_hooks  # noqa: E402


def test_the_predictor_hook_gives_the_whole_image_softmax_at_the_anchor_shape():
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8),
                                torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 1)).eval()
    x = torch.randn(1, 3, 300, 260)
    predict = anchor_hooks.predictor(model=model, roi=128, overlap=0.25, sw_batch=4)
    out = predict(x)
    assert out.shape == (1, 4, 300, 260) and out.dtype == torch.float32
    with torch.no_grad():
        whole = torch.softmax(model(x), dim=1)
    inner = (slice(None), slice(None), slice(2, -2), slice(2, -2))
    assert torch.allclose(out[inner], whole[inner], atol=1e-3)
    assert torch.allclose(out.sum(1), torch.ones(1, 300, 260), atol=1e-4)


def test_the_preset_train_step_hook_learns_a_fixed_batch():
    import torch

    torch.manual_seed(0)
    stepper = anchor_hooks.train_step_preset(in_channels=3, num_classes=3)
    assert isinstance(stepper.model, torch.nn.Module)
    x = torch.randn(2, 3, 64, 64)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 1).long()
    losses = [stepper.train_step(x, y) for _ in range(25)]
    assert np.isfinite(losses).all()
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3])


def test_the_anchor_network_hook_needs_the_anchors_folder():
    anchors = Path(__file__).resolve().parents[2] / "shared" / "anchors"
    if not (anchors / "_common.py").is_file():
        pytest.skip("no ../shared/anchors in this checkout")
    import torch

    sys.path.insert(0, str(anchors))
    stepper = anchor_hooks.train_step(in_channels=3, num_classes=4)
    x, y = torch.randn(2, 3, 64, 64), torch.randint(0, 4, (2, 64, 64))
    assert np.isfinite(stepper.train_step(x, y))


def test_zoom_is_read_from_the_anchors_child_arguments():
    assert anchor_hooks._anchor_zoom(["napari_paint.py", "--child", "paint", "--zoom", "fit"]) is None
    assert anchor_hooks._anchor_zoom(["napari_paint.py", "--zoom", "1"]) == 1.0
    assert anchor_hooks._anchor_zoom(["napari_paint.py"]) is None


@pytest.mark.parametrize("argv_zoom", [None, "1"])
def test_the_paint_hook_paints_dabs_in_the_real_window(qtbot, monkeypatch, argv_zoom):
    if argv_zoom:
        monkeypatch.setattr(sys, "argv", ["napari_paint.py", "--zoom", argv_zoom])
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (512, 512), dtype=np.uint8)
    labels = np.zeros((512, 512), np.uint8)
    canvas = anchor_hooks.PaintCanvas(image=image, labels=labels)
    canvas.show()
    if argv_zoom:
        assert canvas.window.canvas.zoom == pytest.approx(1.0)
    before = canvas.draw_count()
    points = [(200 + 7 * i, 200 + 7 * i) for i in range(12)]
    for y, x in points:
        canvas.dab(y, x, 10, 1)
    qtbot.waitUntil(lambda: canvas.draw_count() > before, timeout=5000)
    canvas.close()
    for y, x in points:                      # every dab's centre and the stroke between them
        assert labels[y, x] == 1
    assert labels[0:150].max() == 0 and labels[300:].max() == 0
    assert 10 * 12 < int((labels == 1).sum()) < 512 * 512 // 4


def test_the_trainer_hook_trains_in_the_background_and_stops(qtbot):
    trainer = anchor_hooks.trainer(batch=2, size=64, in_channels=3, num_classes=3)
    trainer.start()
    qtbot.waitUntil(lambda: trainer.steps >= 2, timeout=120_000)
    trainer.stop()
    assert trainer.job.ended
    steps = trainer.steps
    qtbot.wait(300)
    assert trainer.steps == steps            # nothing trains after stop()
