"""Object colours and edges on small arrays (no widget)."""

import numpy as np

from segstudio.core.classes import LabelClass
from segstudio.ui.canvas_view import _bgra_lut
from segstudio.ui.object_layer import edges, render_objects, shade

CLASSES = [LabelClass(0, "background", "#000000"), LabelClass(1, "nucleus", "#E69F00", objects=True)]


def _layers():
    mask = np.zeros((6, 8), np.uint8)
    mask[1:5, 1:7] = 1
    ids = np.zeros((6, 8), np.uint32)
    ids[1:5, 1:4], ids[1:5, 4:7] = 1, 2          # two touching objects
    return mask, ids


def test_consecutive_ids_get_shades_far_apart():
    s = shade(np.arange(1, 50, dtype=np.uint32))
    assert (s > 0).all() and (s < 1).all()
    assert (np.abs(np.diff(s)) > 0.2).all()


def test_touching_objects_differ_and_keep_the_class_alpha():
    mask, ids = _layers()
    lut, opaque = _bgra_lut(CLASSES, 0.5), _bgra_lut(CLASSES, 1.0)[:, :3]
    out = render_objects(mask, ids, lut, opaque, outline=False, object_edges=False)
    assert tuple(out[2, 2]) != tuple(out[2, 5])
    assert out[2, 2, 3] == out[2, 5, 3] == lut[1, 3]
    assert tuple(out[0, 0]) == tuple(lut[0])          # background as without objects


def test_edges_outline_and_selection():
    mask, ids = _layers()
    lut, opaque = _bgra_lut(CLASSES, 0.5), _bgra_lut(CLASSES, 1.0)[:, :3]
    e = edges(ids)
    assert e[2, 3] and e[2, 4] and not e[2, 2]        # the seam between the two objects
    out = render_objects(mask, ids, lut, opaque, outline=True, object_edges=False)
    assert out[2, 3, 3] == 255 and out[2, 2, 3] == 0  # outline: edges only, opaque
    out = render_objects(mask, ids, lut, opaque, outline=False, object_edges=True)
    assert out[2, 3, 3] == 255 and out[2, 2, 3] == lut[1, 3]
    out = render_objects(mask, ids, lut, opaque, outline=False, object_edges=False,
                         selected=np.array([2], np.uint32))
    assert tuple(out[2, 4]) == (255, 255, 255, 255) and tuple(out[2, 3]) != (255, 255, 255, 255)
