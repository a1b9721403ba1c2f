import numpy as np
import pytest

from segstudio.core.clicks import (BACKEND_KINDS, Click, ClickPrompt, build_backend,
                                   click_maps, register_backend)


def test_click_maps_draw_positive_and_negative_disks_apart():
    pos, neg = click_maps((40, 50), [Click(10, 10, True), Click(30, 40, False)], radius=3)
    assert pos.dtype == np.float32 and pos.shape == (40, 50)
    assert pos[10, 10] == 1 and pos[10, 13] == 1 and pos[10, 14] == 0
    assert neg[30, 40] == 1 and neg[10, 10] == 0 and pos[30, 40] == 0
    # a disk, not a square: the corner of the bounding square stays empty
    assert pos[7, 7] == 0
    assert pos.sum() == pytest.approx(np.pi * 9, abs=8)


def test_click_maps_follow_origin_and_scale_and_clip_outside():
    pos, _ = click_maps((20, 20), [Click(110, 220, True)], radius=2,
                        origin=(100, 200), scale=0.5)
    assert pos[5, 10] == 1
    assert pos.sum() > 0
    pos, neg = click_maps((20, 20), [Click(-50, 500, True)], radius=2)
    assert not pos.any() and not neg.any()
    with pytest.raises(ValueError, match="radius"):
        click_maps((4, 4), [], radius=0)


def test_prompt_adds_clicks_without_changing_the_old_one():
    p = ClickPrompt()
    assert p.is_empty and p.extent() is None
    q = p.with_click(Click(5, 6, True)).with_click(Click(9, 2, False))
    assert p.clicks == () and len(q.clicks) == 2
    assert q.extent() == (5, 2, 9, 6)
    boxed = ClickPrompt(box=(1, 2, 30, 40))
    assert not boxed.is_empty and boxed.extent() == (1, 2, 30, 40)


def test_registry_builds_by_kind_and_names_known_kinds():
    @register_backend("test-kind-h13")
    class Dummy:
        name = "dummy"
        licence = ""

        def __init__(self, value):
            self.value = value

    try:
        assert build_backend("test-kind-h13", 3).value == 3
        with pytest.raises(ValueError, match="known"):
            build_backend("no-such-kind")
        with pytest.raises(ValueError, match="twice"):
            register_backend("test-kind-h13")(lambda: None)
    finally:
        BACKEND_KINDS.pop("test-kind-h13", None)
