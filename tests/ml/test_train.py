import time
from dataclasses import replace

import numpy as np
import pytest
import torch

from segstudio.core.classes import UNLABELED, LabelClass
from segstudio.core.jobs import Cancelled, CancelToken
from segstudio.ml.data import build_training_data
from segstudio.ml.runs import read_card
from segstudio.ml.validate import score, smoothed_score
from segstudio.ml.events import EpochDone, StepDone, TrainFinished
from segstudio.ml.train import SegLoss, TrainingError, train, transfer_weights

from .conftest import CLASSES2, blobs


def test_loss_falls_and_run_folder_has_card(tiny_data, tiny_cfg, tmp_path):
    events = []
    cfg = replace(tiny_cfg, epochs=6, steps_per_epoch=6)
    result = train(tiny_data, cfg, runs_dir=tmp_path, on_progress=events.append)
    losses = [e.loss for e in events if isinstance(e, StepDone)]
    assert len(losses) == 36
    assert [e.step for e in events if isinstance(e, StepDone)] == list(range(1, 37))
    epochs = [e for e in events if isinstance(e, EpochDone)]
    assert [e.epoch for e in epochs] == [1, 2, 3, 4, 5, 6] and epochs[0].best
    assert [e.mean_dice for e in epochs] == [h["mean_dice"] for h in read_card(
        result.run_dir)["history"]]
    assert isinstance(events[-1], TrainFinished) and events[-1].status == "finished"
    assert np.mean(losses[-6:]) < 0.7 * np.mean(losses[:6])
    assert result.status == "finished" and result.best_epoch >= 1
    assert {"best.pt", "last.pt", "model_card.json"} <= {p.name for p in result.run_dir.iterdir()}
    card = read_card(result.run_dir)
    assert card["classes"][1] == {"id": 1, "name": "cell", "color": "#ff0000"}
    assert card["in_channels"] == 1 and card["normalisation"]["mode"] == "percentile"
    assert card["data"]["hash"] == tiny_data.data_hash and card["device"].startswith("cpu")
    assert card["config"]["epochs"] == 6 and "torch" in card["versions"]
    assert 0.0 <= card["metrics"]["best"]["dice:cell"] <= 1.0
    assert len(card["history"]) == 6


def test_unlabeled_pixels_do_not_count():
    torch.manual_seed(0)
    loss_fn = SegLoss(2)
    target = torch.full((1, 8, 8), UNLABELED, dtype=torch.long)
    target[0, :4] = 1
    logits = torch.randn(1, 2, 8, 8, requires_grad=True)
    loss = loss_fn(logits, target)
    loss.backward()
    assert logits.grad[..., 4:, :].abs().sum() == 0      # no gradient from unlabeled pixels
    changed = logits.detach().clone()
    changed[..., 4:, :] = 100.0
    assert torch.isclose(loss_fn(changed, target), loss.detach())


def test_cancel_stops_before_the_next_step_and_keeps_best(tiny_data, tiny_cfg, tmp_path):
    token = CancelToken()
    after_cancel = []

    def on_progress(p):
        if token.cancelled:
            after_cancel.append(p)
        elif isinstance(p, StepDone) and p.step == tiny_cfg.steps_per_epoch + 2:
            token.cancel()            # mid-way through epoch 2, after epoch 1's best.pt

    with pytest.raises(Cancelled):
        train(tiny_data, replace(tiny_cfg, epochs=100_000), runs_dir=tmp_path,
              on_progress=on_progress, cancel=token)
    assert not any(isinstance(p, StepDone) for p in after_cancel)   # not one more step
    run_dir = next(tmp_path.iterdir())
    assert read_card(run_dir)["steps"] == tiny_cfg.steps_per_epoch + 2
    assert (run_dir / "best.pt").exists() and read_card(run_dir)["status"] == "cancelled"


def test_resume_continues_the_same_run(tiny_data, tiny_cfg, tmp_path):
    first = train(tiny_data, tiny_cfg, runs_dir=tmp_path)
    assert first.epochs == 2 and first.steps == 8
    more = train(tiny_data, replace(tiny_cfg, epochs=4), runs_dir=tmp_path, resume=first.run_dir)
    assert more.run_dir == first.run_dir
    assert more.epochs == 4 and more.steps == 16
    card = read_card(first.run_dir)
    assert card["resumed"] and len(card["history"]) == 4
    assert [h["epoch"] for h in card["history"]] == [1, 2, 3, 4]


def test_fine_tune_with_an_added_class_rebuilds_the_head(rng, tiny_data, tiny_cfg, tmp_path):
    from segstudio.ml.checkpoint import load_checkpoint
    from segstudio.ml.runs import load_run_model

    base = train(tiny_data, tiny_cfg, runs_dir=tmp_path)
    old_head = load_checkpoint(base.run_dir / "best.pt")["state_dict"]["head.weight"]
    classes3 = [*CLASSES2, LabelClass(2, "debris", "#00ff00")]
    items = []
    for i, (img, m) in enumerate(blobs(rng, 6)):
        m = m.copy()
        m[:3, :3] = 2
        img = img.copy()
        img[:3, :3] = 255
        items.append((f"n{i}", img, m, "val" if i >= 4 else "train"))
    data3 = build_training_data(items, classes3)

    model = load_run_model(None, base.run_dir).model
    from segstudio.ml.models import build_model
    fresh = build_model("tiny-fcn", 1, 3)
    rebuilt = transfer_weights(fresh, model.state_dict())
    assert set(rebuilt) == {"head.weight", "head.bias"}
    assert torch.equal(fresh.state_dict()["head.weight"][:2], old_head)

    tuned = train(data3, replace(tiny_cfg, epochs=1), runs_dir=tmp_path, init_from=base.run_dir)
    assert tuned.run_dir != base.run_dir and "finetune" in tuned.run_dir.name
    card = read_card(tuned.run_dir)
    assert card["num_classes"] == 3 and [c["name"] for c in card["classes"]][-1] == "debris"
    assert "dice:debris" in tuned.last_metrics
    assert load_run_model(None, tuned.run_dir).model(torch.zeros(1, 1, 32, 32)).shape[1] == 3


def test_time_budget_is_honoured(tiny_data, tiny_cfg, tmp_path):
    cfg = replace(tiny_cfg, epochs=100_000, minutes=1.5 / 60)
    t0 = time.perf_counter()
    result = train(tiny_data, cfg, runs_dir=tmp_path)
    took = time.perf_counter() - t0
    # 100 000 epochs would take hours: only the budget can have stopped it; the upper bound is
    # generous (a busy 2-core machine), the speed targets live in the benchmarks
    assert result.status == "time-budget" and result.epochs < 100_000
    assert 1.5 <= result.elapsed_s < 60.0 and took < 120.0
    assert result.epochs >= 1 and (result.run_dir / "best.pt").exists()


def test_early_stopping_waits_for_the_second_half_of_the_run(tiny_data, tiny_cfg, tmp_path):
    # a learning rate of almost nothing: validation does not improve after the first epoch,
    # so patience 1 would end the run at epoch 2; epochs without gain only count from half
    # the run (epoch 4 of 6) on
    cfg = replace(tiny_cfg, epochs=6, steps_per_epoch=2, lr=1e-12, patience=1)
    result = train(tiny_data, cfg, runs_dir=tmp_path)
    assert result.epochs >= 4
    assert result.status in ("early-stopped", "finished")


def test_best_checkpoint_follows_the_smoothed_score_not_one_lucky_epoch():
    # six validation images: one epoch early in the run scores high by chance, the run then
    # settles higher on average; best.pt is picked on the smoothed score, so the late epochs win
    raw = [0.75, 0.83, 0.77, 0.80, 0.81, 0.815, 0.82, 0.82]
    smoothed, best, best_epoch = None, -np.inf, 0
    for epoch, value in enumerate(raw, 1):
        smoothed = smoothed_score(smoothed, value)
        if smoothed > best + 1e-4:
            best, best_epoch = smoothed, epoch
    assert int(np.argmax(raw)) + 1 == 2 and best_epoch == len(raw)
    assert smoothed_score(None, 0.6) == 0.6 and 0.6 < smoothed_score(0.6, 0.9) < 0.9


def test_the_card_keeps_the_selection_score_best_pt_was_picked_on(tiny_data, tiny_cfg, tmp_path):
    result = train(tiny_data, replace(tiny_cfg, epochs=4, steps_per_epoch=3), runs_dir=tmp_path)
    history = read_card(result.run_dir)["history"]
    chosen = [h["selection_score"] for h in history]
    assert chosen[0] == pytest.approx(score(history[0]))
    assert chosen[1] == pytest.approx(smoothed_score(chosen[0], score(history[1])))
    assert chosen[result.best_epoch - 1] >= max(chosen) - 1e-4


def test_nan_images_give_a_plain_error(tiny_cfg, tmp_path, rng):
    items = [(f"a{i}", np.full((32, 32), np.nan, np.float32), m, "train")
             for i, (_img, m) in enumerate(blobs(rng, 2))]
    data = build_training_data(items, CLASSES2)
    with pytest.raises(TrainingError, match="loss became nan.*lower learning rate"):
        train(data, tiny_cfg, runs_dir=tmp_path)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_amp_training(tiny_data, tiny_cfg, tmp_path):
    result = train(tiny_data, replace(tiny_cfg, device="cuda", preset="fast"), runs_dir=tmp_path)
    card = read_card(result.run_dir)
    assert card["device"].startswith("cuda") and card["amp"] in ("bfloat16", "float16")


def test_resume_keeps_the_stored_budget(tiny_data, tiny_cfg, tmp_path):
    token = CancelToken()

    def cancel_after_first_epoch(p):
        if isinstance(p, EpochDone):
            token.cancel()

    with pytest.raises(Cancelled):
        train(tiny_data, replace(tiny_cfg, epochs=3), runs_dir=tmp_path,
              on_progress=cancel_after_first_epoch, cancel=token)
    run_dir = next(tmp_path.iterdir())
    assert read_card(run_dir)["epochs"] == 1
    again = train(tiny_data, None, runs_dir=tmp_path, resume=run_dir.name)
    assert again.epochs == 3 and again.run_dir == run_dir
    assert read_card(run_dir)["config"]["epochs"] == 3


def test_schedules_warm_up_then_anneal():
    from segstudio.ml.train import lr_factor

    for schedule in ("cosine", "onecycle"):
        values = [lr_factor(p / 100, schedule, 0.05) for p in range(101)]
        peak = int(np.argmax(values))
        assert values[0] < 0.1 and values[peak] > 0.99 and values[-1] < 0.02
        assert all(a <= b + 1e-12 for a, b in zip(values[:peak], values[1:peak + 1]))
        assert all(a >= b - 1e-12 for a, b in zip(values[peak:], values[peak + 1:]))


def test_class_weights_and_config_checks(tiny_data, tiny_cfg, tmp_path):
    from segstudio.ml.train import TrainConfig

    result = train(tiny_data, replace(tiny_cfg, epochs=1, class_weights=(1.0, 4.0),
                                      schedule="onecycle"), runs_dir=tmp_path)
    assert read_card(result.run_dir)["config"]["class_weights"] == [1.0, 4.0]
    with pytest.raises(TrainingError, match="class_weights has 3 values"):
        train(tiny_data, replace(tiny_cfg, class_weights=(1.0, 1.0, 1.0)), runs_dir=tmp_path)
    with pytest.raises(ValueError, match=r"unknown training setting\(s\) \['epoch'\]"):
        TrainConfig.from_dict({"epoch": 3})
    with pytest.raises(ValueError, match="unknown schedule"):
        TrainConfig(schedule="linear")


def test_balanced_class_weights():
    from segstudio.ml.train import TrainConfig, balanced_weights
    w = balanced_weights({0: 9000, 1: 900, 2: 90, 3: 0}, 4)
    assert w[3] == 1.0 and w[2] > w[1] > w[0] and max(w) <= 5.0 and min(w) >= 0.2
    assert TrainConfig(class_weights="balanced").class_weights == "balanced"
    with pytest.raises(ValueError, match="'balanced'"):
        TrainConfig(class_weights="inverse")


def test_a_one_class_project_is_refused_not_scored_perfect(rng, tiny_cfg, tmp_path):
    only_bg = [LabelClass(0, "background", "#000000")]
    items = [(f"b{i}", img, np.zeros_like(m), "val" if i >= 2 else "train")
             for i, (img, m) in enumerate(blobs(rng, 3))]
    data = build_training_data(items, only_bg)
    with pytest.raises(TrainingError, match=r"only one class \('background'\): add a class"):
        train(data, tiny_cfg, runs_dir=tmp_path)
    assert not any(tmp_path.iterdir())


def test_a_cancel_says_what_it_kept(tiny_data, tiny_cfg, tmp_path):
    from segstudio.ml.train import cancelled_message

    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled) as e:
        train(tiny_data, tiny_cfg, runs_dir=tmp_path, cancel=token)
    assert cancelled_message(e.value) == "cancelled before the first checkpoint; nothing saved"
    assert not any(tmp_path.iterdir())

    token = CancelToken()
    with pytest.raises(Cancelled) as e:      # cancelled during the first epoch
        train(tiny_data, replace(tiny_cfg, epochs=100), runs_dir=tmp_path, cancel=token,
              on_progress=lambda p: isinstance(p, StepDone) and token.cancel())
    run = next(tmp_path.iterdir())
    assert (run / "last.pt").is_file() and not (run / "best.pt").exists()
    assert cancelled_message(e.value) == (f"cancelled; run {run.name} keeps last.pt "
                                          f"(continue with --resume {run.name})")
