import json

import numpy as np
import pytest
import torch

from segstudio.core.clicks import BACKEND_KINDS, Click, ClickPrompt, build_backend
from segstudio.core.jobs import Cancelled, CancelToken
from segstudio.ml import click_sim
from segstudio.ml.click_backend import ClickModelError, OursBackend, _keep_clicked
from segstudio.ml.click_model import ClickConfig, click_data, train_click_model
from segstudio.ml.events import TrainingError

SMALL = dict(size=32, depth=2, width=8, batch_size=8, threads=1, checkpoint_every=20)


def _items(n=4, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        img = np.full((64, 64), 20, np.uint8)
        mask = np.zeros((64, 64), np.uint8)
        for _ in range(4):
            cy, cx = rng.integers(10, 54, 2)
            r = rng.integers(4, 8)
            yy, xx = np.ogrid[:64, :64]
            d = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
            img[d] = 200
            mask[d] = 1
        out.append((f"i{k}", img, mask, None))
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.manual_seed(0)
    items = _items()
    res = train_click_model(click_data(items), ClickConfig(steps=150, minutes=2, **SMALL),
                            runs_dir=tmp_path_factory.mktemp("runs"))
    return res, items


def test_training_stores_a_click_run_with_its_card(trained):
    res, _ = trained
    card = json.loads((res.run_dir / "model_card.json").read_text())
    assert card["kind"] == "click" and card["num_classes"] == 1 and card["classes"] == []
    assert card["steps"] == res.steps == 150 and card["status"] == "finished"
    assert card["window"]["size"] == 32 and card["window"]["first_side"] >= 24
    assert (res.run_dir / "best.pt").is_file()


def test_one_click_on_an_object_proposes_that_object(trained):
    res, items = trained
    backend = build_backend("ours", res.run_dir)
    assert "ours" in BACKEND_KINDS and backend.name.startswith("ours: ")
    assert backend.embedding_seconds(16000, 16000) is None
    scores = []
    for id_, img, mask, _ in items:
        labels = click_sim.object_labels(mask)
        for ref in click_sim.object_refs(labels, 0):
            obj = labels == ref.label
            m = backend.propose(id_, img, ClickPrompt(clicks=(click_sim.first_click(obj),)))
            assert m.shape == img.shape and m.dtype == bool
            scores.append(click_sim.iou(m, obj))
    assert backend.is_prepared("i0")
    assert np.mean(scores) > 0.6, scores


def test_proposals_never_reach_other_objects_unclicked(trained):
    res, items = trained
    backend = OursBackend(res.run_dir)
    _, img, mask, _ = items[0]
    labels = click_sim.object_labels(mask)
    obj = labels == 1
    m = backend.propose("x", img, ClickPrompt(clicks=(click_sim.first_click(obj),)))
    others = (labels > 0) & ~obj
    # components without a positive click are dropped
    assert np.count_nonzero(m & others) <= 0.1 * np.count_nonzero(others)


def test_keep_clicked_drops_components_without_a_positive_click():
    m = np.zeros((20, 20), bool)
    m[2:6, 2:6] = True
    m[12:18, 12:18] = True
    kept = _keep_clicked(m, [(3.0, 3.0)])
    assert kept[3, 3] and not kept[14, 14]
    assert _keep_clicked(m, [(10.0, 10.0)]).sum() == m.sum()     # under no part: all stay


def test_cancel_keeps_the_last_checkpoint(tmp_path):
    token = CancelToken()
    seen = []

    def progress(p):
        seen.append(p)
        if getattr(p, "step", 0) >= 20:
            token.cancel()

    with pytest.raises(Cancelled):
        train_click_model(click_data(_items(2)), ClickConfig(steps=1000, minutes=2, **SMALL),
                          runs_dir=tmp_path, on_progress=progress, cancel=token)
    (run,) = list(tmp_path.iterdir())
    card = json.loads((run / "model_card.json").read_text())
    assert card["status"] == "cancelled" and card["steps"] >= 20
    assert (run / "best.pt").is_file()


def test_no_objects_and_wrong_runs_say_so(tmp_path):
    empty = [("e", np.zeros((20, 20), np.uint8), np.zeros((20, 20), np.uint8), None)]
    with pytest.raises(TrainingError, match="no labelled objects"):
        click_data(empty)
    with pytest.raises(ClickModelError, match="not found"):
        OursBackend(tmp_path)


def test_bundled_starter_click_model_loads_and_is_never_a_semantic_starter():
    from segstudio.io.bundled import starter_models
    from segstudio.io.runs_index import starter_matches
    from segstudio.ml.click_backend import click_runs

    runs = click_runs(None)
    assert runs and runs[0].name == "starter-click-nuclei"
    assert (runs[0] / "best.pt").stat().st_size < 2_000_000
    backend = OursBackend(runs[0])
    assert "CC0" in backend.licence
    img = np.full((80, 80), 10, np.uint8)
    img[30:50, 30:50] = 200
    m = backend.propose("s", img, ClickPrompt(clicks=(Click(40.0, 40.0, True),)))
    assert m.shape == img.shape and m[40, 40]
    assert starter_matches(starter_models(), []) != runs[0]


def _cells(n=4, seed=1):
    """Cells of two classes: a bright nucleus (1) inside a ring of cytoplasm (2)."""
    rng = np.random.default_rng(seed)
    out = []
    yy, xx = np.ogrid[:64, :64]
    for k in range(n):
        img = np.full((64, 64), 20, np.uint8)
        mask = np.zeros((64, 64), np.uint8)
        for cy, cx in ((18, 18), (18, 46), (46, 18), (46, 46)):
            cy, cx = cy + int(rng.integers(-2, 3)), cx + int(rng.integers(-2, 3))
            d2 = (yy - cy) ** 2 + (xx - cx) ** 2
            cell, nucleus = d2 <= 12 ** 2, d2 <= int(rng.integers(4, 7)) ** 2
            img[cell], mask[cell] = 110, 2
            img[nucleus], mask[nucleus] = 220, 1
        out.append((f"c{k}", img, mask, None))
    return out


def test_class_planes_mark_the_chosen_class_and_nothing_for_an_unknown_one():
    from segstudio.ml.click_model import class_planes

    p = class_planes((1, 3), 3, 8)
    assert p.shape == (2, 8, 8) and p[1].min() == 1 and p[0].max() == 0
    assert class_planes((1, 3), 7, 8).max() == 0 and class_planes((1, 3), None, 8).max() == 0


def test_objects_of_two_classes_train_a_class_aware_model(tmp_path):
    from segstudio.ml.click_model import _Sampler, click_classes

    data = click_data(_cells())
    cfg = ClickConfig(steps=60, minutes=2, **SMALL)
    assert data.object_classes == (1, 2) and click_classes(data, cfg) == (1, 2)
    # the sampler's class planes say each window's object class (or, for a share, nothing)
    sampler = _Sampler(data, cfg, (1, 2))
    told = [tuple(img[-2:, 0, 0]) for img, *_ in (sampler.one() for _ in range(60))]
    assert (1.0, 0.0) in told and (0.0, 1.0) in told
    res = train_click_model(data, cfg, runs_dir=tmp_path)
    card = json.loads((res.run_dir / "model_card.json").read_text())
    assert card["click_classes"] == [1, 2] and card["in_channels"] == 1 + 2 + 3
    backend = OursBackend(res.run_dir)
    assert backend.model.class_ids == (1, 2)
    _, img, _, _ = _cells()[0]
    click = (Click(18.0, 18.0 + 9.0, True),)            # on the ring of the first cell
    for c in (1, 2, None, 9):                            # 9: a class the model never saw
        answer = backend.propose("c0", img, ClickPrompt(clicks=click, class_id=c))
        assert answer.shape == img.shape and answer.dtype == bool
    # the class reaches the network: the same window with another class is another input
    x = np.zeros((1 + 2 + 3, 32, 32), np.float32)
    y = x.copy()
    y[1] = 1.0
    assert not np.allclose(backend.model._forward(x), backend.model._forward(y))


def test_one_class_of_objects_keeps_the_class_free_model(trained):
    res, _ = trained
    card = json.loads((res.run_dir / "model_card.json").read_text())
    assert card["click_classes"] == [] and card["in_channels"] == 1 + 3
    assert OursBackend(res.run_dir).model.class_ids == ()
