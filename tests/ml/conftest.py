import numpy as np
import pytest

from segstudio.core.classes import LabelClass


def blobs(rng, n: int, size: int = 32):
    """n (image, mask) pairs: bright squares (class 1) on a noisy dark background (class 0)."""
    out = []
    for _ in range(n):
        mask = np.zeros((size, size), np.uint8)
        for _ in range(3):
            y, x = rng.integers(0, size - 8, 2)
            mask[y:y + int(rng.integers(4, 9)), x:x + int(rng.integers(4, 9))] = 1
        image = (mask * 150 + 40 + rng.normal(0, 12, mask.shape)).clip(0, 255).astype(np.uint8)
        out.append((image, mask))
    return out


CLASSES2 = [LabelClass(0, "background", "#000000"), LabelClass(1, "cell", "#ff0000")]


@pytest.fixture
def tiny_data(rng):
    from segstudio.ml.data import build_training_data

    pairs = blobs(rng, 6)
    items = [(f"img{i}", img, m, "val" if i >= 4 else "train") for i, (img, m) in enumerate(pairs)]
    return build_training_data(items, CLASSES2)


@pytest.fixture
def tiny_cfg():
    import torch

    from segstudio.ml.train import TrainConfig

    torch.manual_seed(0)
    return TrainConfig(preset="tiny", epochs=2, steps_per_epoch=4, batch_size=4, patch_size=32,
                       lr=1e-2, patience=None, device="cpu", threads=None)
