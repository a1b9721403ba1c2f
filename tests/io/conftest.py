"""Small synthetic projects for the export/import tests: made in tmp_path, never the sample."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from segstudio.core.classes import LabelClass
from segstudio.io.project import Project

CLASSES = [LabelClass(0, "background", "#000000"), LabelClass(1, "cell", "#E69F00"),
           LabelClass(2, "nucleus", "#009E73")]
H, W = 48, 64


def blob_mask(rng: np.random.Generator, h: int = H, w: int = W, unlabeled: bool = True) -> np.ndarray:
    """Background with a few solid ellipses of classes 1 and 2 (no holes), optionally a 255 band."""
    mask = np.zeros((h, w), np.uint8)
    for _ in range(int(rng.integers(2, 5))):
        centre = (int(rng.integers(6, w - 6)), int(rng.integers(6, h - 6)))
        axes = (int(rng.integers(3, 9)), int(rng.integers(3, 9)))
        cv2.ellipse(mask, centre, axes, float(rng.integers(0, 180)), 0, 360,
                    int(rng.integers(1, 3)), -1)
    if unlabeled:
        mask[:, -4:] = 255
    return mask


def make_project(root: Path, n: int = 6, seed: int = 0, unlabeled: bool = True,
                 splits: tuple[str, ...] = ("train", "train", "val", "test")) -> Project:
    """n PNG images (alternately grey and colour) with masks; splits cycle through `splits`."""
    rng = np.random.default_rng(seed)
    img_dir = root / "source"
    img_dir.mkdir(parents=True)
    paths = []
    for i in range(n):
        img = rng.integers(0, 255, (H, W, 3) if i % 2 else (H, W), dtype=np.uint8)
        p = img_dir / f"img_{i:02d}.png"
        cv2.imwrite(str(p), img)
        paths.append(p)
    project = Project.create(root / "project", classes=list(CLASSES))
    project.add_images(paths)
    for i, e in enumerate(project.images):
        mask = blob_mask(rng, unlabeled=unlabeled and i % 3 == 0)
        project.masks.write(e.id, mask)
        project.update_entry(e.id, split=splits[i % len(splits)],
                             labelled=float(np.mean(mask != 255)))
    project.save()
    return project


def fresh_copy(project: Project, root: Path) -> Project:
    """An empty project over the same image files and classes, to import into."""
    other = Project.create(root, classes=list(project.classes))
    other.add_images([project.image_path(e) for e in project.images])
    assert [e.id for e in other.images] == [e.id for e in project.images]
    return other


def mask_of(project: Project, image_id: str) -> np.ndarray:
    e = project.entry(image_id)
    info = project.probe(e)
    return project.load_mask(e, (info.height, info.width))


def object_ious(a: np.ndarray, b: np.ndarray, class_ids=(1, 2)) -> list[float]:
    """IoU of every 8-connected object of `a` with the objects of `b` of its class it touches."""
    out = []
    for cid in class_ids:
        _, la = cv2.connectedComponents((a == cid).astype(np.uint8), connectivity=8)
        _, lb = cv2.connectedComponents((b == cid).astype(np.uint8), connectivity=8)
        for k in range(1, int(la.max()) + 1):
            obj = la == k
            hits = set(np.unique(lb[obj]).tolist()) - {0}
            match = np.isin(lb, list(hits)) if hits else np.zeros_like(obj)
            out.append(float((obj & match).sum() / (obj | match).sum()))
    return out


@pytest.fixture
def project(tmp_path) -> Project:
    return make_project(tmp_path / "p")
