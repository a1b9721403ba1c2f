import math

import numpy as np
import pytest

from segstudio.core.ranking import UncertaintyScore, rank_for_labelling, uncertainty_score


def test_scores_are_means_over_unlabeled_pixels():
    entropy = np.array([[0.0, 1.0], [0.5, 0.5]], np.float16)
    margin = np.array([[1.0, 0.0], [0.2, 0.4]], np.float16)
    s = uncertainty_score("a", entropy, margin)
    assert s.mean_entropy == pytest.approx(0.5) and s.mean_margin == pytest.approx(0.4, abs=1e-3)
    assert s.pixels == 4
    only = uncertainty_score("a", entropy, margin, np.array([[False, True], [False, False]]))
    assert (only.mean_entropy, only.mean_margin, only.pixels) == (1.0, 0.0, 1)
    done = uncertainty_score("a", entropy, margin, np.zeros((2, 2), bool))
    assert done.pixels == 0 and math.isnan(done.mean_entropy)


def test_large_float16_maps_do_not_overflow():
    entropy = np.full((3000, 3000), 0.75, np.float16)     # a float16 sum would overflow
    s = uncertainty_score("big", entropy, entropy)
    assert s.mean_entropy == pytest.approx(0.75)


def test_rank_most_uncertain_first_and_drop_finished():
    scores = [UncertaintyScore("sure", 0.1, 0.9, 10), UncertaintyScore("unsure", 0.8, 0.3, 10),
              UncertaintyScore("mid", 0.4, 0.1, 10), UncertaintyScore("done", math.nan, math.nan, 0)]
    assert [s.image_id for s in rank_for_labelling(scores)] == ["unsure", "mid", "sure"]
    # by margin, "mid" has two classes closest to a tie
    assert [s.image_id for s in rank_for_labelling(scores, "margin")] == ["mid", "unsure", "sure"]
    with pytest.raises(ValueError, match="known"):
        rank_for_labelling(scores, "random")
