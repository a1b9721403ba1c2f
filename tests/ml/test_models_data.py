import numpy as np
import pytest
import torch

from segstudio.core.classes import UNLABELED
from segstudio.ml.data import (Augment, DataError, Normalisation, PatchSampler, Sample,
                               build_training_data, effective_channels, to_channels)
from segstudio.ml.models import ModelError, build_model, preset_spec

from .conftest import CLASSES2


def test_unknown_model_lists_known_names():
    with pytest.raises(ModelError, match=r"unknown model 'unet2'; known: \['tiny-fcn', 'unet'\]"):
        build_model("unet2", 1, 2)


@pytest.mark.parametrize("preset", ["fast", "strong"])
def test_unet_presets_keep_any_input_size(preset):
    spec = preset_spec(preset)
    model = build_model(spec.pop("model"), 3, 4, **spec).eval()
    with torch.inference_mode():
        assert model(torch.zeros(1, 3, 37, 50)).shape == (1, 4, 37, 50)


def test_unet_norm_is_configurable():
    model = build_model("unet", 1, 2, depth=2, width=4, norm="group")
    assert any(isinstance(m, torch.nn.GroupNorm) for m in model.modules())
    with pytest.raises(ModelError, match="unknown norm"):
        build_model("unet", 1, 2, norm="weird")


def test_channels_and_normalisation():
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., :3] = np.arange(64, dtype=np.uint8).reshape(8, 8, 1)
    assert effective_channels(rgba) == 1            # grey stored as RGBA
    assert to_channels(rgba, 1).shape == (8, 8, 1)
    assert to_channels(np.zeros((8, 8), np.uint16), 3).shape == (8, 8, 3)
    x = Normalisation("percentile", in_channels=1)(np.linspace(0, 1000, 64).reshape(8, 8))
    assert x.shape == (1, 8, 8) and x.dtype == np.float32
    assert -0.05 < x.min() < 0.05 and 0.95 < x.max() < 1.05
    z = Normalisation.from_dict({"mode": "meanstd"}, 1)(
        np.random.default_rng(0).normal(5, 3, (16, 16)))
    assert abs(z.mean()) < 1e-4 and abs(z.std() - 1) < 1e-3


def test_training_snapshot_and_prediction_normalise_identically(rng):
    """The predictor normalises band by band; the snapshot whole: the numbers must be equal."""
    from segstudio.ml.data import normalise

    image = rng.integers(0, 4000, (300, 90, 3)).astype(np.uint16)
    for mode in ("percentile", "meanstd"):
        norm = Normalisation(mode)
        whole = normalise(image, norm, 1)                  # (h, w, 1) as training holds it
        per_pixel = Normalisation(mode, in_channels=1).for_image(image)
        bands = np.concatenate([np.moveaxis(per_pixel(image[y:y + 64]), 0, -1)
                                for y in range(0, 300, 64)])
        assert np.array_equal(whole, bands)


def test_patches_centre_on_scarce_labels_and_keep_unlabeled(rng):
    image = rng.normal(0, 1, (256, 256, 1)).astype(np.float32)
    mask = np.full((256, 256), UNLABELED, np.uint8)
    mask[100:104, 30:34] = 1                   # a 4x4 scribble: 0.02 % of the image
    mask[200:202, 200:210] = 0
    sampler = PatchSampler([Sample("a", image, mask, "train")], 32, 16, seed=1,
                           augment=Augment(), label_bias=0.8)
    hits = 0
    for _ in range(5):
        x, y = sampler.next_batch()
        assert x.shape == (16, 1, 32, 32) and y.shape == (16, 32, 32)
        assert set(np.unique(y)) <= {0, 1, UNLABELED}
        hits += int(np.sum((y != UNLABELED).any(axis=(1, 2))))
    assert hits >= 0.6 * 80                    # uniform crops would hit ~2 % of the time


def test_snapshot_is_a_copy_and_test_split_is_held_out(rng):
    mask = np.zeros((32, 32), np.uint8)
    mask[:4] = 1
    items = [("a", np.zeros((32, 32), np.uint8), mask, "train"),
             ("b", np.zeros((32, 32), np.uint8), mask, "test")]
    data = build_training_data(items, CLASSES2)
    mask[:] = UNLABELED                         # the user keeps painting
    assert [s.id for s in data.train] == ["a"] and not data.val
    assert (data.train[0].mask[:4] == 1).all()
    assert any("val" in w for w in data.warnings)


def test_no_labelled_pixels_says_what_to_do():
    items = [("a", np.zeros((32, 32), np.uint8), np.full((32, 32), UNLABELED, np.uint8), "train")]
    with pytest.raises(DataError, match="no labelled pixels.*paint"):
        build_training_data(items, CLASSES2)


@pytest.mark.parametrize("flip_h", [False, True])
def test_a_left_right_label_survives_augmentation_only_without_the_mirror(flip_h):
    """Class 1 fills the left half, class 2 the right: with the left-right mirror off (what
    the plan chooses for lateral classes) no patch ever shows class 2 left of class 1."""
    from segstudio.ml.data import Sample

    mask = np.ones((64, 64), np.uint8)
    mask[:, 32:] = 2
    image = np.repeat(np.linspace(0, 1, 64, dtype=np.float32)[None, :, None], 64, 0)
    sampler = PatchSampler([Sample("a", image, mask, "train")], patch=48, batch=64, seed=0,
                           augment=Augment(flip_h=flip_h, flip_v=True, rot90=False),
                           label_bias=0.0)
    _x, y = sampler.next_batch()
    swapped = [(m[:, 0] == 2).any() and (m[:, -1] == 1).any() for m in y]
    assert any(swapped) == flip_h
