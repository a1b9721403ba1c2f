"""TrainConfig is checked without torch; class weights reach the loss; events are typed."""

import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from segstudio.core.classes import UNLABELED
from segstudio.ml.config import ConfigError, TrainConfig, check_config
from segstudio.ml.train import balanced_weights, set_up

from .test_cli_train import REPO


def test_config_and_events_modules_import_without_torch():
    code = ("import sys; import segstudio.ml.config, segstudio.ml.events, segstudio.ml.normalise;"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


@pytest.mark.parametrize("values, says", [
    ({"preset": "huge"}, "unknown preset 'huge'; known: ['fast', 'strong', 'tiny']"),
    ({"device": "tpu"}, "unknown device 'tpu'; use auto, cpu, cuda, cuda:N or mps"),
    ({"epochs": 0}, "epochs must be a whole number of at least 1, got 0"),
    ({"minutes": -1.0}, "minutes must be positive (or unset for no time limit), got -1.0"),
    ({"lr": 0.0}, "lr (the learning rate) must be positive, got 0.0"),
    ({"class_weights": "inverse"}, "class_weights is a list of numbers or 'balanced'"),
    ({"class_weights": ["a", 1]}, "class_weights is a list of numbers or 'balanced'"),
    ({"epoch": 3}, "unknown training setting(s) ['epoch']"),
    ({"normalisation": "zscore"}, "unknown normalisation 'zscore'; known: ['percentile', "
                                  "'meanstd', 'clip']"),
])
def test_settings_that_cannot_train_say_why(values, says):
    cfg, problem = check_config(values)
    assert cfg is None and problem.startswith(says), problem
    with pytest.raises(ConfigError):
        TrainConfig.from_dict(values)


def test_good_settings_build_the_config_and_old_keys_still_load():
    cfg, problem = check_config({"preset": "tiny", "epochs": 3, "minutes": None,
                                 "device": "cuda:1", "class_weights": "balanced"})
    assert problem is None and cfg == TrainConfig(preset="tiny", epochs=3, device="cuda:1",
                                                  class_weights="balanced")
    # runs trained before validation shared the predictor stored a val_tile: they still resume
    assert TrainConfig.from_dict({**cfg.to_dict(), "val_tile": 512}) == cfg
    assert TrainConfig(patience=0).patience == 0          # 0: never stop early


def _set_up(data, cfg, tmp_path):
    from segstudio.core.jobs import CancelToken

    return set_up(data, cfg, runs_dir=tmp_path, resume=None, init_from=None, masks=None,
                  report=lambda _p: None, cancel=CancelToken())


def test_class_weights_reach_the_loss(tiny_data, tiny_cfg, tmp_path):
    """The loss the trainer optimises weighs each class's pixels as configured."""
    balanced = _set_up(tiny_data, replace(tiny_cfg, class_weights="balanced"), tmp_path)
    expected = balanced_weights(tiny_data.class_pixels(), tiny_data.num_classes)
    assert expected[1] > expected[0]                   # cells are rarer than background
    assert balanced.loss_fn.class_weights == pytest.approx(expected)
    fixed = _set_up(tiny_data, replace(tiny_cfg, class_weights=(1.0, 4.0), dice_weight=0.0),
                    tmp_path)
    plain = _set_up(tiny_data, replace(tiny_cfg, dice_weight=0.0), tmp_path)
    torch.manual_seed(0)
    logits = torch.randn(2, 2, 8, 8)
    target = torch.randint(0, 2, (2, 8, 8))
    target[0, :2] = UNLABELED
    weights = torch.tensor([1.0, 4.0])
    assert torch.isclose(fixed.loss_fn(logits, target),
                         F.cross_entropy(logits, target, weight=weights, ignore_index=UNLABELED))
    assert torch.isclose(plain.loss_fn(logits, target),
                         F.cross_entropy(logits, target, ignore_index=UNLABELED))
    assert not torch.isclose(fixed.loss_fn(logits, target), plain.loss_fn(logits, target))


def test_a_run_card_records_the_weights_its_loss_applied(tiny_data, tiny_cfg, tmp_path):
    from segstudio.ml.runs import read_card
    from segstudio.ml.train import train

    result = train(tiny_data, replace(tiny_cfg, epochs=1, class_weights="balanced"),
                   runs_dir=tmp_path)
    card = read_card(result.run_dir)
    assert card["config"]["class_weights"] == "balanced"
    assert card["class_weights"] == pytest.approx(
        list(balanced_weights(tiny_data.class_pixels(), 2)))
    assert np.isfinite(card["metrics"]["last"]["loss"])


def test_progress_bar_prints_one_line_per_epoch_off_a_terminal(tiny_data, tiny_cfg, tmp_path):
    import io

    from segstudio.cli.model_commands import ProgressBar
    from segstudio.ml.train import train

    stream = io.StringIO()
    train(tiny_data, replace(tiny_cfg, epochs=2), runs_dir=tmp_path,
          on_progress=ProgressBar(stream))
    lines = stream.getvalue().splitlines()
    epochs = [line for line in lines if "/2: loss" in line]
    assert len(epochs) == 2 and "epoch 1/2" in epochs[0] and "val" in epochs[0]
    assert not any(" step " in line for line in lines)          # steps only on a terminal
    assert "done: finished" in lines[-1]
