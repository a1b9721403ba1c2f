import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from segstudio.core.jobs import Cancelled, CancelToken  # noqa: E402
from segstudio.ml.predict import (Normalisation, TileOptions, count_tiles,  # noqa: E402
                                  gaussian_weights, predict_probabilities, predict_tiled,
                                  prepare_for_inference, tile_starts)

NORM = Normalisation(mean=(0.5,), std=(0.25,), in_channels=3)


def _fcn(in_ch=3, classes=3, k=3):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(in_ch, 8, k, padding=k // 2), nn.BatchNorm2d(8), nn.ReLU(),
                      nn.Conv2d(8, classes, k, padding=k // 2))
    with torch.no_grad():                       # non-trivial BatchNorm statistics
        m[1].running_mean.uniform_(-0.5, 0.5)
        m[1].running_var.uniform_(0.5, 2.0)
        m[1].weight.uniform_(0.5, 1.5)
    return m.eval()


def _whole(model, image, norm=NORM):
    with torch.no_grad():
        return torch.softmax(model(torch.from_numpy(norm(image))[None]), 1)[0].numpy()


@pytest.fixture
def image(rng):
    return rng.integers(0, 256, (97, 131, 3), dtype=np.uint8)     # odd sizes on purpose


def test_tile_starts_cover_and_end_flush():
    assert tile_starts(100, 32, 0.25) == [0, 24, 48, 68]
    assert tile_starts(32, 32, 0.25) == [0]
    assert tile_starts(10, 32, 0.25) == [0]
    assert tile_starts(64, 32, 0.0) == [0, 32]


def test_gaussian_weights_peak_in_the_middle():
    w = gaussian_weights(32)
    assert w.shape == (32, 32) and w.max() == pytest.approx(1.0, abs=1e-2)
    assert w[16, 16] > w[16, 0] > w[0, 0] > 0
    np.testing.assert_allclose(w, w.T)


def test_pointwise_model_tiled_equals_whole_image_everywhere(image):
    model = _fcn(k=1)
    tiled = predict_probabilities(model, image, NORM, TileOptions(tile=32, batch_size=3))
    np.testing.assert_allclose(tiled, _whole(model, image), atol=1e-5)


def test_conv_model_tiled_matches_whole_image_away_from_tile_edges(image):
    model = _fcn(k=3)
    options = TileOptions(tile=64, overlap=0.25)
    assert count_tiles(*image.shape[:2], options) == 6
    tiled = predict_probabilities(model, image, NORM, options)
    whole = _whole(model, image)
    # inside the image; tile seams are where the Gaussian blending has to do its work
    assert np.abs(tiled - whole)[:, 2:-2, 2:-2].max() < 2e-3
    assert (tiled.argmax(0) == whole.argmax(0)).mean() > 0.995


def test_without_overlap_seams_are_visible(image):
    """The same check fails without overlap: proof that it tests the blending."""
    model = _fcn(k=3)
    tiled = predict_probabilities(model, image, NORM, TileOptions(tile=64, overlap=0.0))
    assert np.abs(tiled - _whole(model, image))[:, 2:-2, 2:-2].max() > 2e-2


def test_predict_tiled_outputs(image):
    model = _fcn()
    pred = predict_tiled(model, image, NORM, TileOptions(tile=32), probabilities=True)
    whole = _whole(model, image)
    assert pred.labels.shape == image.shape[:2] and pred.labels.dtype == np.uint8
    assert pred.num_classes == 3
    assert pred.probabilities.shape == (3, 97, 131) and pred.probabilities.dtype == np.float16
    np.testing.assert_allclose(pred.probabilities.astype(np.float32).sum(0), 1.0, atol=3e-3)
    assert (pred.labels == whole.argmax(0)).mean() > 0.995
    for u in (pred.entropy, pred.margin):
        assert u.dtype == np.float16 and u.shape == image.shape[:2]
        assert float(u.min()) >= 0.0 and float(u.max()) <= 1.0
    # where the model is sure, entropy is low and the margin high, and the other way round
    sure = pred.margin > np.median(pred.margin)
    assert pred.entropy[sure].astype(np.float32).mean() < pred.entropy[~sure].astype(
        np.float32).mean()


def test_uncertainty_extremes(rng):
    image = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    flat = nn.Conv2d(3, 4, 1)
    nn.init.zeros_(flat.weight)
    nn.init.zeros_(flat.bias)                      # equal logits: uniform probabilities
    p = predict_tiled(flat, image, NORM, TileOptions(tile=16))
    np.testing.assert_allclose(p.entropy.astype(np.float32), 1.0, atol=1e-3)
    np.testing.assert_allclose(p.margin.astype(np.float32), 0.0, atol=1e-3)
    with torch.no_grad():
        flat.bias.copy_(torch.tensor([0.0, 30.0, 0.0, 0.0]))   # certain: class 1
    p = predict_tiled(flat, image, NORM, TileOptions(tile=16))
    assert (p.labels == 1).all()
    assert float(p.entropy.max()) < 1e-3 and float(p.margin.min()) > 0.999
    assert p.probabilities is None


def test_image_smaller_than_a_tile(rng):
    image = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    model = _fcn(k=1)
    probs = predict_probabilities(model, image, NORM, TileOptions(tile=32))
    assert probs.shape == (3, 5, 7)
    np.testing.assert_allclose(probs, _whole(model, image), atol=1e-5)
    pred = predict_tiled(_fcn(k=3), image, NORM, TileOptions(tile=32))
    assert pred.labels.shape == (5, 7) and pred.labels.max() < 3


def test_one_pixel_wide_and_tall_strips(rng):
    for shape in ((1, 50, 3), (50, 1, 3)):
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        model = _fcn(k=1)
        probs = predict_probabilities(model, image, NORM, TileOptions(tile=16))
        np.testing.assert_allclose(probs, _whole(model, image), atol=1e-5)


def test_grey_and_16_bit_images(rng):
    grey = rng.integers(0, 65536, (40, 33), dtype=np.uint16)
    model = _fcn(in_ch=3, k=1)
    probs = predict_probabilities(model, grey, NORM, TileOptions(tile=16))
    rgb = np.repeat(grey[..., None], 3, axis=2)
    np.testing.assert_allclose(probs, _whole(model, rgb), atol=1e-5)
    one = Normalisation(in_channels=1)
    assert one(rng.integers(0, 256, (4, 4, 4), dtype=np.uint8)).shape == (1, 4, 4)   # RGBA
    assert one(np.full((2, 2), 255, np.uint8)).max() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="2 mean"):
        Normalisation(mean=(0.1, 0.2))(np.zeros((2, 2, 3), np.uint8))


def test_single_logit_model_is_binary(rng):
    image = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
    pred = predict_tiled(_fcn(classes=1, k=1), image, NORM, TileOptions(tile=16),
                         probabilities=True)
    assert pred.num_classes == 2 and pred.labels.max() <= 1
    np.testing.assert_allclose(pred.probabilities.astype(np.float32).sum(0), 1.0, atol=2e-3)


def test_cancel_between_batches_and_progress(image):
    seen = []
    token = CancelToken()

    def on_progress(p):
        seen.append((p.done, p.total))
        token.cancel()

    with pytest.raises(Cancelled):
        predict_tiled(_fcn(), image, NORM, TileOptions(tile=32, batch_size=2),
                      on_progress=on_progress, cancel=token)
    assert seen == [(2, count_tiles(97, 131, TileOptions(tile=32)))]
    done = []
    predict_tiled(_fcn(), image, NORM, TileOptions(tile=32, batch_size=2),
                  on_progress=lambda p: done.append(p.done))
    assert done[-1] == count_tiles(97, 131, TileOptions(tile=32)) == 4 * 6


def test_callers_model_is_left_alone(image):
    model = _fcn().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    predict_tiled(model, image, NORM, TileOptions(tile=32))
    assert model.training
    assert isinstance(model[1], nn.BatchNorm2d)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_folded_model_computes_the_same(rng):
    model = _fcn()
    x = torch.from_numpy(rng.standard_normal((2, 3, 16, 16)).astype(np.float32))
    fast = prepare_for_inference(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())
    with torch.no_grad():
        np.testing.assert_allclose(fast(x).numpy(), model(x).numpy(), atol=1e-5)


def test_model_that_changes_size_is_refused(image):
    model = nn.Sequential(nn.Conv2d(3, 2, 3, stride=2, padding=1))
    with pytest.raises(ValueError, match="tiled prediction needs"):
        predict_tiled(model, image, NORM, TileOptions(tile=32))


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="overlap"):
        TileOptions(overlap=1.0)
    with pytest.raises(ValueError, match="tile"):
        TileOptions(tile=0)
