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
    cache.save("r1", "img", labels, entropy)            # not validated yet: nothing is cached
    assert not (tmp_path / "cache").exists()
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


def test_the_cache_never_takes_the_space_masks_need(tmp_path):
    import shutil

    free = shutil.disk_usage(tmp_path).free
    cache = PredictionCache(tmp_path / "cache")
    cache.validate("a", {"k": 1})
    cache.save("a", "i", np.zeros((64, 64), np.uint8))
    assert cache.load("a", "i", (64, 64)) is not None
    tight = PredictionCache(tmp_path / "cache", reserve=free + 1)   # the disk is "nearly full"
    tight.save("a", "j", np.zeros((64, 64), np.uint8))
    assert tight.load("a", "j", (64, 64)) is None
    assert cache.load("a", "i", (64, 64)) is None, "the cache must drop itself first"


def test_the_cache_keeps_to_its_budget(tmp_path):
    cache = PredictionCache(tmp_path / "cache", budget=3000)
    cache.validate("a", {"k": 1})
    rng = np.random.default_rng(0)
    for k in range(10):
        cache.save("a", f"i{k}", rng.integers(0, 3, (64, 64), dtype=np.uint8))
        assert cache.size_bytes() <= 3000 + 64 * 64      # never far past the budget
    assert cache.load("a", "i9", (64, 64)) is not None


def test_a_read_only_cache_folder_is_skipped_not_raised(tmp_path):
    (tmp_path / "cache").write_text("a file where the folder should be")
    cache = PredictionCache(tmp_path / "cache")
    assert cache.validate("a", {"k": 1}) is False
    cache.save("a", "i", np.zeros((4, 4), np.uint8))
    assert cache.load("a", "i", (4, 4)) is None
