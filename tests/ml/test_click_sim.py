import numpy as np

from segstudio.core.classes import UNLABELED
from segstudio.ml import click_sim


def _disk(shape, cy, cx, r):
    yy, xx = np.ogrid[:shape[0], :shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def test_first_click_is_the_interior_point_farthest_from_the_edge():
    target = np.zeros((40, 60), bool)
    target[10:30, 5:55] = True               # a 20 x 50 bar: centre row 19/20
    c = click_sim.first_click(target)
    assert c.positive and 19 <= c.y <= 20 and 10 <= c.x <= 50


def test_next_click_goes_to_the_larger_error_and_knows_its_sign():
    target = _disk((64, 64), 32, 32, 12)
    proposal = np.zeros_like(target)
    c = click_sim.next_click(target, proposal)
    assert c.positive and abs(c.y - 32) <= 1 and abs(c.x - 32) <= 1
    # proposal covers the object and a big extra square: the false positive is larger
    proposal = target.copy()
    proposal[0:20, 44:64] = True
    c = click_sim.next_click(target, proposal)
    assert not c.positive and c.y < 20 and c.x >= 44
    assert click_sim.next_click(target, target.copy()) is None


def test_unlabeled_pixels_are_never_an_error():
    target = np.zeros((32, 32), bool)
    proposal = np.zeros((32, 32), bool)
    proposal[5:20, 5:20] = True
    valid = np.ones((32, 32), bool)
    valid[:, :25] = False
    assert click_sim.next_click(target, proposal, valid) is None
    assert click_sim.iou(target, proposal, valid) == 1.0


def test_objects_are_stored_ids_for_object_classes_and_regions_elsewhere():
    mask = np.zeros((30, 30), np.uint8)
    mask[2:10, 2:20] = 1                     # one region of class 1 holding two objects
    mask[20:25, 20:25] = 2                   # a plain class-2 region
    mask[20:25, 2:6] = UNLABELED
    objects = np.zeros((30, 30), np.uint32)
    objects[2:10, 2:11] = 7
    objects[2:10, 11:20] = 9
    labels = click_sim.object_labels(mask, objects, frozenset({1}))
    refs = click_sim.object_refs(labels, 0)
    assert len(refs) == 3
    assert sorted(r.area for r in refs) == [25, 72, 72]
    # without object ids the touching pair is one connected region
    assert len(click_sim.object_refs(click_sim.object_labels(mask), 0)) == 2


def test_window_crop_and_paste_back_land_on_the_same_pixels():
    img = np.zeros((100, 120), np.uint8)
    img[40:60, 50:80] = 1
    win = click_sim.window_around((40, 50, 60, 80), 2.0, 16, 32)
    small = win.crop(img, nearest=True)
    assert small.shape == (32, 32) and small.any()
    y0, x0, region = win.paste_region(small.astype(np.float32), img.shape)
    back = np.zeros(img.shape, bool)
    back[y0:y0 + region.shape[0], x0:x0 + region.shape[1]] = region > 0.5
    assert click_sim.iou(back, img.astype(bool)) > 0.85
    # a window past the image's corner pastes only its part inside
    corner = click_sim.Window(-10, -10, 40, 32)
    y0, x0, region = corner.paste_region(np.ones((32, 32), np.float32), img.shape)
    assert (y0, x0) == (0, 0) and region.shape == (30, 30)
