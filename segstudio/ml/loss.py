"""The training loss: cross-entropy (optionally class-weighted) plus soft Dice, 255 ignored."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from segstudio.core.classes import UNLABELED
from segstudio.ml.events import TrainingError


def balanced_weights(class_pixels: Mapping[int, int], num_classes: int) -> tuple[float, ...]:
    """Cross-entropy weights from training pixel counts: sqrt(median frequency / frequency).

    Rare classes (poles, signs) get up to 5x the weight of the median class, common ones down to
    0.2x; a class with no pixels gets 1 (it cannot be learnt either way).
    """
    counts = np.array([class_pixels.get(i, 0) for i in range(num_classes)], np.float64)
    present = counts > 0
    if not present.any():
        return (1.0,) * num_classes
    freq = counts / counts.sum()
    median = float(np.median(freq[present]))
    w = np.ones(num_classes)
    w[present] = np.clip(np.sqrt(median / freq[present]), 0.2, 5.0)
    return tuple(float(v) for v in w)


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - mean soft Dice over the classes present in the batch; 255 pixels left out."""
    n = logits.shape[1]
    valid = (target != UNLABELED).unsqueeze(1)
    probs = logits.float().softmax(1) * valid
    onehot = F.one_hot(torch.where(valid[:, 0], target, 0), n).permute(0, 3, 1, 2) * valid
    dims = (0, 2, 3)
    truth = onehot.sum(dims)
    present = truth > 0
    if not bool(present.any()):
        return logits.sum() * 0.0
    inter = (probs * onehot).sum(dims)
    dice = (2 * inter + 1.0) / (probs.sum(dims) + truth + 1.0)
    return 1.0 - dice[present].mean()


class SegLoss(nn.Module):
    """Cross-entropy (optionally class-weighted) + Dice, both ignoring 255."""

    def __init__(self, num_classes: int, dice_weight: float = 1.0,
                 class_weights: tuple[float, ...] | None = None) -> None:
        super().__init__()
        weight = None
        if class_weights is not None:
            if len(class_weights) != num_classes:
                raise TrainingError(f"class_weights has {len(class_weights)} values but the "
                                    f"model has {num_classes} classes (one weight per class id)")
            weight = torch.tensor(class_weights, dtype=torch.float32)
        self.ce = nn.CrossEntropyLoss(weight=weight, ignore_index=UNLABELED)
        self.dice_weight = dice_weight

    @property
    def class_weights(self) -> tuple[float, ...] | None:
        """The cross-entropy weight per class id this loss applies (None: all equal)."""
        w = self.ce.weight
        return None if w is None else tuple(float(v) for v in w.cpu())

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = self.ce(logits.float(), target)
        if self.dice_weight:
            loss = loss + self.dice_weight * soft_dice_loss(logits, target)
        return loss
