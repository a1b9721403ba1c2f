""""Label this next": predict the images still to label and rank them by uncertainty."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from segstudio.core.classes import UNLABELED
from segstudio.core.jobs import CancelToken, Progress, ProgressFn
from segstudio.core.ranking import UncertaintyScore, rank_for_labelling, uncertainty_score
from segstudio.ml.predict import Normaliser, TileOptions, predict_tiled

log = logging.getLogger(__name__)


def images_to_label(project, include_partly: bool = True) -> list:
    """Entries worth suggesting: nothing labelled yet (or partly, if asked), not reviewed."""
    return [e for e in project.images if not e.reviewed
            and (e.labelled <= 0.0 or (include_partly and e.labelled < 1.0))]


def rank_images(project, model: torch.nn.Module, normalise: Normaliser, *,
                entries: Sequence | None = None, method: str = "entropy",
                options: TileOptions = TileOptions(), on_progress: ProgressFn | None = None,
                cancel: CancelToken | None = None) -> list[UncertaintyScore]:
    """Uncertainty scores of `entries` (default: `images_to_label`), most uncertain first.

    Only pixels still unlabeled count. Raises `Cancelled`; unreadable images are logged
    and left out rather than stopping the ranking.
    """
    cancel = cancel or CancelToken()
    entries = list(entries) if entries is not None else images_to_label(project)
    scores: list[UncertaintyScore] = []
    for k, entry in enumerate(entries):
        cancel.raise_if_cancelled()
        if on_progress:
            on_progress(Progress(k, len(entries), f"scoring {entry.display_name}"))
        try:
            image = project.read_image(entry).data
            unlabeled = None
            if project.masks.has_mask(entry.id):
                unlabeled = project.load_mask(entry, image.shape[:2]) == UNLABELED
        except Exception as e:          # one broken file must not stop the ranking
            log.warning("%s: %s; not ranked", entry.display_name, e)
            continue
        pred = predict_tiled(model, image, normalise, options, cancel=cancel)
        assert pred.entropy is not None and pred.margin is not None
        scores.append(uncertainty_score(entry.id, pred.entropy, pred.margin, unlabeled))
    if on_progress:
        on_progress(Progress(len(entries), len(entries), "ranked"))
    return rank_for_labelling(scores, method)
