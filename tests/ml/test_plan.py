"""The plan a run derives from its data: working scale, mirroring, normalisation, capacity."""

from __future__ import annotations

import numpy as np
import pytest

from segstudio.core.classes import UNLABELED, LabelClass
from segstudio.ml.config import TrainConfig
from segstudio.ml.data import Labelled, project_plan
from segstudio.ml.plan import make_plan, unet_receptive_field
from segstudio.ml.resample import WorkingScale, resize_image, resize_mask

CLASSES3 = [LabelClass(0, "background", "#000000"), LabelClass(1, "right lung", "#ff0000"),
            LabelClass(2, "left lung", "#00ff00")]
CLASSES2 = CLASSES3[:2]
GB = 1 << 30


def _disc(mask, cy, cx, r, value):
    yy, xx = np.ogrid[:mask.shape[0], :mask.shape[1]]
    mask[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = value


def lateral_items(rng, n=6, size=128):
    """Class 1 always in the left half, class 2 always in the right half (a chest film)."""
    items = []
    for i in range(n):
        mask = np.zeros((size, size), np.uint8)
        _disc(mask, int(rng.integers(40, 90)), int(rng.integers(20, 45)), 14, 1)
        _disc(mask, int(rng.integers(40, 90)), int(rng.integers(83, 108)), 14, 2)
        image = (mask * 60 + rng.normal(80, 10, mask.shape)).clip(0, 255).astype(np.uint8)
        items.append(Labelled(f"img{i}", image, mask, "train"))
    return items


def scattered_items(rng, n=6, size=128, radius=6, classes=(1, 2)):
    """Objects of two classes anywhere: nothing ties a class to a side."""
    items = []
    for i in range(n):
        mask = np.zeros((size, size), np.uint8)
        for _ in range(12):
            _disc(mask, int(rng.integers(8, size - 8)), int(rng.integers(8, size - 8)), radius,
                  int(rng.choice(classes)))
        items.append(Labelled(f"img{i}", (mask * 50).astype(np.uint8), mask, "train"))
    return items


def test_lateral_classes_turn_mirroring_and_rotation_off_and_the_plan_says_why(rng):
    plan = project_plan(lateral_items(rng), CLASSES3, TrainConfig(), memory_bytes=2 * GB)
    assert plan.flip_h is False and plan.rot90 is False
    assert plan.flip_v is True              # up-down mirroring keeps left and right
    why = plan.reasons["augment"]
    assert "'right lung' and 'left lung' sit on opposite sides" in why and "6 of 6" in why
    assert any("no mirrors" not in line and "vertical mirror" in line for line in plan.lines())
    cfg = plan.apply(TrainConfig())
    assert (cfg.flip_h, cfg.flip_v, cfg.rot90) == (False, True, False)


def test_scattered_classes_keep_every_mirror(rng):
    plan = project_plan(scattered_items(rng), CLASSES3, TrainConfig(), memory_bytes=2 * GB)
    assert (plan.flip_h, plan.flip_v, plan.rot90) == (True, True, True)
    assert plan.reasons["augment"] == "no class is tied to a side of the image"


def test_a_class_that_keeps_to_the_top_turns_vertical_mirrors_off(rng):
    items = []
    for i in range(5):                         # "sky": the top quarter, whatever the scene
        mask = np.zeros((96, 160), np.uint8)
        mask[: int(rng.integers(15, 30))] = 1
        items.append(Labelled(f"s{i}", mask * 200, mask, "train"))
    plan = project_plan(items, CLASSES2, TrainConfig(), memory_bytes=2 * GB)
    assert plan.flip_v is False and plan.flip_h is True and plan.rot90 is False
    assert "keeps to the top of the image in 5 of 5 images" in plan.reasons["augment"]


def test_the_users_choice_wins_over_the_plan_and_is_named(rng):
    cfg = TrainConfig(flip_h=True, patch_size=96, batch_size=3, working_scale=1.0)
    plan = project_plan(lateral_items(rng), CLASSES3, cfg, memory_bytes=2 * GB)
    assert plan.flip_h is True and plan.patch_size == 96 and plan.batch_size == 3
    assert "flip_h set by you" in plan.reasons["augment"]
    assert plan.reasons["working"] == "set by you" and plan.working.native


def test_an_upscaled_project_gets_a_working_scale_that_fits_its_objects(rng):
    small = scattered_items(rng, n=4, size=128, radius=6, classes=(1,))
    native = project_plan(small, CLASSES2, TrainConfig(), memory_bytes=2 * GB)
    # 128 px images: the patch is the whole image, and more of them make a step
    assert native.working.native and native.patch_size == 128
    assert "the whole working image" in native.reasons["batch"]
    big = [Labelled(it.id, resize_image(it.image, (2048, 2048)),
                    resize_mask(it.mask, (2048, 2048)), "train") for it in small]   # 16x
    plan = project_plan(big, CLASSES2, TrainConfig(), memory_bytes=2 * GB)
    assert plan.working.mode == "factor" and plan.working.factor < 0.75
    # the objects' 90th percentile extent lands inside half the patch at the working scale,
    # and no smaller than it needs to be
    p90 = plan.fingerprint["object_extent_px"]["p90"]
    assert 0.45 * plan.patch_size <= p90 * plan.working.factor <= 0.5 * plan.patch_size + 1
    assert "90 % of the objects span up to" in plan.reasons["working"]
    # at 8x the objects (about 110 px) still fit a 256 px patch: no resampling for so little
    eight = [Labelled(it.id, resize_image(it.image, (1024, 1024)),
                      resize_mask(it.mask, (1024, 1024)), "train") for it in small]
    assert project_plan(eight, CLASSES2, TrainConfig(), memory_bytes=2 * GB).working.native


def test_regions_that_span_the_image_do_not_shrink_it(rng):
    """Road and sky span a street scene: the cars and signs set the scale, not them."""
    items = []
    for i in range(4):
        mask = np.zeros((360, 480), np.uint8)
        mask[220:] = 1                                   # "road", the whole width
        for _ in range(6):                               # "signs", about 20 px
            y, x = int(rng.integers(20, 200)), int(rng.integers(20, 450))
            mask[y:y + 20, x:x + 16] = 2
        items.append(Labelled(f"c{i}", mask * 80, mask, "train"))
    classes = [LabelClass(0, "background", "#000000"), LabelClass(1, "road", "#ff0000"),
               LabelClass(2, "sign", "#00ff00")]
    plan = project_plan(items, classes, TrainConfig(), memory_bytes=2 * GB)
    assert plan.working.native
    assert "not counting 'road', which span the image" in plan.reasons["working"]


def test_images_of_one_scene_at_many_sizes_get_one_longer_side(rng):
    items = []
    for i, side in enumerate((300, 640, 1500, 3000)):
        mask = np.zeros((side, int(side * 0.8)), np.uint8)
        _disc(mask, side // 2, int(side * 0.25), int(side * 0.2), 1)
        _disc(mask, side // 2, int(side * 0.55), int(side * 0.2), 1)
        items.append(Labelled(f"r{i}", mask * 90, mask, "train"))
    plan = project_plan(items, CLASSES2, TrainConfig(), memory_bytes=2 * GB)
    assert plan.working.mode == "long_side"
    assert 160 <= plan.working.long_side <= 320
    assert "grow with them" in plan.reasons["working"]
    # every image, small or large, is seen at about the same size
    shapes = {max(plan.working.shape_for(it.mask.shape[0], it.mask.shape[1])) for it in items
              if max(it.mask.shape) > plan.working.long_side}
    assert shapes == {plan.working.long_side}
    assert plan.patch_size >= plan.working.long_side
    assert unet_receptive_field(plan.depth) >= 0.4 * plan.working.long_side


def test_left_and_right_classes_are_seen_whole(rng):
    """A label defined by its side needs the whole image in view: a patch of the middle of a
    large image cannot know which half it shows."""
    items = []
    for i in range(4):
        mask = np.zeros((1200, 1000), np.uint8)
        for _ in range(30):                               # small objects, left or right half
            y, x = int(rng.integers(20, 1180)), int(rng.integers(20, 980))
            _disc(mask, y, x, 8, 1 if x < 500 else 2)
        items.append(Labelled(f"n{i}", mask * 90, mask, "train"))
    plan = project_plan(items, CLASSES3, TrainConfig(), memory_bytes=2 * GB)
    assert plan.flip_h is False
    assert plan.working == WorkingScale("long_side", long_side=plan.patch_size)
    assert "so that the network sees all of it" in plan.reasons["working"]
    assert unet_receptive_field(plan.depth) >= 0.8 * plan.patch_size


def test_microscopy_crops_of_many_sizes_keep_their_own_scale(rng):
    items = []
    for i, side in enumerate((200, 400, 800)):
        mask = np.zeros((side, side), np.uint8)
        for _ in range(side // 20):
            _disc(mask, int(rng.integers(10, side - 10)), int(rng.integers(10, side - 10)), 7, 1)
        items.append(Labelled(f"m{i}", mask * 90, mask, "train"))
    plan = project_plan(items, CLASSES2, TrainConfig(), memory_bytes=2 * GB)
    assert plan.working.native
    assert "keep their size in pixels" in plan.reasons["working"] or \
        "at full resolution" in plan.reasons["working"]


def test_ct_gets_the_ct_normalisation_from_its_foreground():
    rng = np.random.default_rng(3)
    items = []
    for i in range(3):
        image = np.full((96, 96), -1000, np.int16)                  # air
        image[20:76, 20:76] = rng.normal(40, 10, (56, 56)).astype(np.int16)   # soft tissue
        image[40:50, 40:50] = 1200                                    # bone
        mask = np.full((96, 96), UNLABELED, np.uint8)
        mask[:10] = 0
        mask[25:70, 25:70] = 1
        items.append(Labelled(f"ct{i}", image, mask, "train", kind="nifti"))
    plan = project_plan(items, CLASSES2, TrainConfig(), memory_bytes=2 * GB)
    norm = plan.normalisation
    assert norm.mode == "clip" and "CT" in plan.reasons["normalisation"]
    assert -10 < norm.clip_low < 40 < norm.clip_high <= 1200
    # soft tissue ends near 0, air is clipped to the foreground's low end, not -1000 HU
    x = norm.for_image(items[0].image)(items[0].image)[0]
    assert abs(float(x[30:36, 30:36].mean())) < 1.5
    assert float(x[0, 0]) == pytest.approx((norm.clip_low - norm.mean[0]) / norm.std[0], rel=1e-4)


def test_photographs_and_grey_images_are_normalised_per_image(rng):
    plan = project_plan(scattered_items(rng), CLASSES3, TrainConfig(), memory_bytes=2 * GB)
    assert plan.normalisation.mode == "percentile"


def test_batch_fits_the_memory_budget(rng):
    items = scattered_items(rng)
    roomy = project_plan(items, CLASSES3, TrainConfig(), memory_bytes=8 * GB)
    tight = project_plan(items, CLASSES3, TrainConfig(), memory_bytes=200 << 20)
    assert roomy.batch_size == 18                     # 8 x 192² pixels in 128² patches
    assert tight.batch_size < roomy.batch_size


def test_thin_strokes_survive_a_tenfold_shrink():
    mask = np.full((1000, 1000), UNLABELED, np.uint8)
    mask[500:503, 100:900] = 1                  # a 3 px scribble
    mask[100:103, 100:900] = 0
    small = resize_mask(mask, (100, 100))
    assert (small == 1).sum() >= 75 and (small == 0).sum() >= 75
    assert (small == UNLABELED).sum() >= 100 * 100 - 200


def test_working_scale_round_trips_through_the_normalisation():
    from segstudio.ml.normalise import Normalisation

    norm = Normalisation("percentile", working=WorkingScale("long_side", long_side=256))
    again = Normalisation.from_dict(norm.to_dict())
    assert again == norm and again.working_shape(3000, 2000) == (256, 171)
    assert Normalisation.from_dict({"mode": "percentile", "low": 1, "high": 99.8}).working.native
