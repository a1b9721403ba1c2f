from pathlib import Path

import numpy as np
import pytest
import torch

from segstudio.core.metrics import confusion_matrix, iou_dice
from segstudio.io.project import Project
from segstudio.ml.checkpoint import load_model
from segstudio.ml.data import prepare_image
from segstudio.ml.train import predict_logits

REPO = Path(__file__).resolve().parents[2]
STARTER = REPO / "models" / "starter-nuclei"


def test_starter_model_is_small_and_segments_the_sample_nuclei():
    if not (STARTER / "best.pt").exists():
        pytest.fail("models/starter-nuclei/best.pt is missing: run scripts/train_starter_model.py")
    assert sum(f.stat().st_size for f in STARTER.iterdir()) < 5_000_000
    loaded = load_model(STARTER)
    assert loaded.card["classes"][1]["name"] == "nucleus"
    project = Project.open(REPO / "resources" / "sample_project")
    cm = np.zeros((2, 2), np.int64)
    for entry in project.images:
        if entry.split != "val" or not project.masks.has_mask(entry.id):
            continue
        data = project.read_image(entry).data
        truth = project.load_mask(entry, data.shape[:2])
        x = torch.from_numpy(prepare_image(data, loaded.normalisation, loaded.in_channels))
        with torch.inference_mode():
            pred = predict_logits(loaded.model, x[None]).argmax(1)[0].numpy()
        cm += confusion_matrix(truth, pred.astype(np.uint8), 2)
    assert cm.sum() > 0
    _iou, dice = iou_dice(cm)
    assert dice[1] > 0.8
