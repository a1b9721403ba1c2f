"""COCOeval over our COCO export of an image with more than 100 objects.

pycocotools' COCOeval keeps only the `maxDets[-1]` best-scored detections per image and
category (default [1, 10, 100]), so an image with 214 nuclei scored against itself gets
AP ~0.5: recall stops at 100 / 214. Raise the last entry to at least the most objects any
image has (`E.params.maxDets = [1, 10, n]`) and read AP@[.5:.95] from `eval["precision"]`,
since `summarize()` computes stats[0] at maxDets=100 whatever the list says; export.json's
notes say both.
"""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

from segstudio.io.export import ExportOptions, export_dataset

from .test_interop_yolo_voc import _one_image_project

N_OBJECTS = 214


def _crowded_mask(h: int = 180, w: int = 300) -> np.ndarray:
    """214 separate 4 x 4 nuclei (class 2) on a grid, one pixel row / column apart at least."""
    m = np.zeros((h, w), np.uint8)
    spots = [(y, x) for y in range(2, h - 6, 9) for x in range(2, w - 6, 9)][:N_OBJECTS]
    assert len(spots) == N_OBJECTS
    for y, x in spots:
        m[y:y + 4, x:x + 4] = 2
    return m


def _ap(gt, dt, max_dets: list[int] | None) -> tuple[float, float]:
    """(AP @[.5:.95], AP @.5) over all areas at maxDets[-1], as export.json's note says to read
    them: summarize()'s stats[0] is fixed at maxDets=100 (-1 when 100 is not in the list),
    so AP @[.5:.95] comes from eval["precision"]; stats[1] (AP @.5) follows maxDets[2]."""
    from pycocotools.cocoeval import COCOeval

    e = COCOeval(gt, dt, "segm")
    if max_dets is not None:
        e.params.maxDets = max_dets
    with contextlib.redirect_stdout(io.StringIO()):       # it prints its tables
        e.evaluate()
        e.accumulate()
        e.summarize()
    p = e.eval["precision"][:, :, :, 0, -1]                # IoU x recall x category, 'all', last
    return float(p[p > -1].mean()), float(e.stats[1])


@pytest.mark.parametrize("mode", ["polygon", "rle"])
def test_cocoeval_scores_an_image_of_214_nuclei_1_with_maxdets_raised(tmp_path, mode):
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO

    project = _one_image_project(tmp_path, _crowded_mask())
    out = tmp_path / "coco"
    export_dataset(project, out, ExportOptions(format="coco", coco_mode=mode))
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(out / "annotations" / "instances_train.json"))
        anns = gt.loadAnns(gt.getAnnIds())
        assert len(anns) == N_OBJECTS
        dt = gt.loadRes([{"image_id": a["image_id"], "category_id": a["category_id"],
                          "segmentation": gt.annToRLE(a), "score": 1.0} for a in anns])
    ap, ap50 = _ap(gt, dt, None)
    assert ap < 0.7 and ap50 < 0.7                         # the default limit of 100
    assert _ap(gt, dt, [1, 10, N_OBJECTS]) == (pytest.approx(1.0), pytest.approx(1.0))
    notes = json.loads((out / "export.json").read_text())["notes"]
    assert any("maxDets = [1, 10, 214]" in n and "precision" in n for n in notes)
