import os

import numpy as np
import pytest

from segstudio.io.prediction_cache import PredictionCache, checkpoint_stamp, quantise_unit


def test_round_trip_and_invalidation(tmp_path):
    ckpt = tmp_path / "best.pt"
    ckpt.write_bytes(b"weights v1")
    cache = PredictionCache(tmp_path / "cache")
    labels = np.array([[0, 1], [2, 1]], np.uint8)
    entropy = np.array([[0.0, 1.0], [0.5, 0.25]], np.float16)
    with pytest.raises(RuntimeError, match="validate"):
        cache.save("r1", "img", labels, entropy)
    assert cache.validate("r1", checkpoint_stamp(ckpt)) is False     # first time: empty
    cache.save("r1", "img", labels, entropy)
    assert cache.validate("r1", checkpoint_stamp(ckpt)) is True
    got, unc = cache.load("r1", "img", (2, 2))
    assert np.array_equal(got, labels)
    assert unc.tolist() == [[0, 255], [128, 64]]
    assert cache.load("r1", "img", (3, 2)) is None                    # image changed size
    assert cache.load("r1", "other", (2, 2)) is None
    ckpt.write_bytes(b"weights v2, retrained")
    os.utime(ckpt, ns=(1, 1))
    assert cache.validate("r1", checkpoint_stamp(ckpt)) is False
    assert cache.load("r1", "img", (2, 2)) is None                    # never stale


def test_unsafe_run_ids_and_forget(tmp_path):
    cache = PredictionCache(tmp_path / "cache")
    with pytest.raises(ValueError, match="unsafe"):
        cache.validate("../x", {})
    cache.validate("a", {"k": 1})
    cache.save("a", "i", np.zeros((2, 2), np.uint8))
    assert cache.load("a", "i", (2, 2))[1] is None
    cache.forget("a")
    assert cache.load("a", "i", (2, 2)) is None


def test_quantise_unit_clips():
    a = np.array([[-0.5, 0.0, 0.5, 1.0, 2.0]], np.float32)
    assert quantise_unit(a).tolist() == [[0, 0, 128, 255, 255]]
