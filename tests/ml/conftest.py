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


CLASSES3 = [*CLASSES2, LabelClass(2, "debris", "#00ff00")]


def make_blob_project(root, rng, *, n: int = 6, size: tuple[int, int] = (300, 280)):
    """A 3-class project of n images larger than one prediction tile (256 px): squares of
    'cell' (bright) and 'debris' (mid grey) on a dark background; the last two images are 'val'.
    Two train images are only partly labelled (255 elsewhere), as scribbles are.
    """
    import cv2

    from segstudio.io.project import Project

    src = root / "src"
    src.mkdir(parents=True)
    h, w = size
    pairs = []
    for i in range(n):
        mask = np.zeros((h, w), np.uint8)
        for cls, grey in ((1, 200), (2, 110)):
            for _ in range(6):
                y, x = rng.integers(0, h - 30), rng.integers(0, w - 30)
                mask[y:y + int(rng.integers(8, 30)), x:x + int(rng.integers(8, 30))] = cls
        image = (np.choose(mask, [40, 200, 110]) + rng.normal(0, 12, mask.shape))
        image = image.clip(0, 255).astype(np.uint8)
        cv2.imwrite(str(src / f"im{i}.png"), image)
        if i in (1, 2):
            mask[:, w // 2:] = 255
        pairs.append(mask)
    project = Project.create(root / "proj", classes=list(CLASSES3))
    entries = project.add_images(sorted(src.glob("*.png")))
    for i, (e, m) in enumerate(zip(entries, pairs)):
        project.update_entry(e.id, split="val" if i >= n - 2 else "train")
        project.masks.write(e.id, m)
    project.save()
    return project.root


TINY_RUN = dict(preset="tiny", epochs=4, steps_per_epoch=10, batch_size=4, patch_size=64,
                lr=2e-2, patience=None, device="cpu", seed=0)


@pytest.fixture(scope="session")
def trained_project(tmp_path_factory):
    """(project root, run folder): a tiny run trained by the real trainer, once per session.

    Read-only: a test that changes the project or its runs copies it first (`project_copy`).
    """
    import torch

    from segstudio.io.project import Project
    from segstudio.ml.train import TrainConfig, train

    torch.manual_seed(0)
    root = make_blob_project(tmp_path_factory.mktemp("trained"), np.random.default_rng(0))
    result = train(Project.open(root), TrainConfig(**TINY_RUN))
    return root, result.run_dir


@pytest.fixture
def project_copy(trained_project, tmp_path):
    """A writable copy of the trained project, runs included: (root, run folder)."""
    import shutil

    root, run_dir = trained_project
    dest = tmp_path / "proj copy é"        # spaces and non-ASCII on purpose
    shutil.copytree(root, dest)
    return dest, dest / "runs" / run_dir.name
