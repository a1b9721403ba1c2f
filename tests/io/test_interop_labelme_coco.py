"""Files other tools write: labelme's (as labelme2voc turns them into masks) and COCO files
decoded as pycocotools decodes them (polygons past the edge, crowd RLE)."""

from __future__ import annotations

import base64
import io
import json
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from segstudio.core.classes import LabelClass
from segstudio.io.imports import ImportOptions, import_annotations, preview_import
from segstudio.io.project import Project

from .conftest import mask_of

DATA = Path(__file__).resolve().parent.parent / "data" / "labelme"
H, W = 30, 40
CLASSES = [LabelClass(0, "background", "#000000"), LabelClass(1, "person", "#E69F00"),
           LabelClass(2, "bottle", "#009E73")]


def _project(root: Path, names=("overshoot", "ai_mask", "broken", "other")) -> Project:
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    paths = []
    for n in names:
        p = root / "images" / f"{n}.png"
        cv2.imwrite(str(p), rng.integers(0, 255, (H, W), dtype=np.uint8))
        paths.append(p)
    project = Project.create(root / "project", classes=list(CLASSES))
    project.add_images(paths)
    return project


def _entry(project: Project, stem: str):
    return next(e for e in project.images if Path(e.path).stem == stem)


# -- labelme2voc's rule, re-implemented from labelme's documentation of shapes_to_label ---
def _labelme2voc(doc: dict, value_of: dict[str, int]) -> np.ndarray:
    """Class map as labelme2voc writes it: each shape drawn alone on a zero image with
    Pillow (fill and outline), assigned in file order; `mask` patches pasted at the rounded
    top-left corner; __ignore__ is -1, i.e. 255 in its uint8 PNG. Lines and points are left
    out here, as SegStudio leaves them out (labelme2voc would draw them 10 px wide)."""
    from PIL import Image, ImageDraw

    out = np.zeros((doc["imageHeight"], doc["imageWidth"]), np.int32)
    for s in doc["shapes"]:
        kind, pts = s.get("shape_type") or "polygon", [tuple(p) for p in s["points"]]
        if kind in ("line", "linestrip", "point"):
            continue
        if kind == "mask":
            patch = np.asarray(Image.open(io.BytesIO(base64.b64decode(s["mask"])))) != 0
            x0, y0 = (int(v) for v in np.round(pts[0]))
            full = np.zeros((out.shape[0] + 64, out.shape[1] + 64), bool)   # room to crop
            full[y0:y0 + patch.shape[0], x0:x0 + patch.shape[1]] = patch
            m = full[:out.shape[0], :out.shape[1]]
        else:
            im = Image.new("L", (out.shape[1], out.shape[0]), 0)
            d = ImageDraw.Draw(im)
            if kind == "rectangle":
                (a, b), (c, e) = pts
                d.rectangle(((min(a, c), min(b, e)), (max(a, c), max(b, e))), outline=1, fill=1)
            elif kind == "circle":
                (cx, cy), (px, py) = pts
                r = math.dist((cx, cy), (px, py))
                d.ellipse(((cx - r, cy - r), (cx + r, cy + r)), outline=1, fill=1)
            else:
                d.polygon(pts, outline=1, fill=1)
            m = np.asarray(im).astype(bool)
        out[m] = value_of[s["label"]]
    return out.astype(np.uint8)      # -1 -> 255, as labelme's lblsave stores it


VALUES = {"__ignore__": -1, "_background_": 0, "person": 1, "bottle": 2}


def test_labelme_example_files_import_as_labelme2voc_draws_them(tmp_path):
    project = _project(tmp_path)
    src = tmp_path / "annotated"
    shutil.copytree(DATA, src, ignore=shutil.ignore_patterns("broken.json", "*.md"))
    result = import_annotations(project, src, ImportOptions(format="labelme"))
    assert sorted(result.imported) == sorted(_entry(project, n).id for n in ("overshoot", "ai_mask"))
    assert result.added_classes == [] and [c.name for c in project.classes] == \
        ["background", "person", "bottle"]                  # __ignore__ is no class
    for stem in ("overshoot", "ai_mask"):
        doc = json.loads((DATA / f"{stem}.json").read_text())
        got = mask_of(project, _entry(project, stem).id)
        assert np.array_equal(got, _labelme2voc(doc, VALUES)), stem
    over = mask_of(project, _entry(project, "overshoot").id)
    assert (over == 255).sum() > 50 and over[H - 1, 19] == 1     # ignore; polygon to the edge
    ai = mask_of(project, _entry(project, "ai_mask").id)
    assert ai[15, 26] == 2 and (ai[2:7, 35:40] == 1).all()        # both mask patches
    assert ai[26, 30] == 0 and ai[20, 2] == 0                      # point and line left out
    text = "\n".join(result.warnings)
    assert "overshoot.json: 2 shape(s) reach up to 1.27 px past the image edge" in text
    assert "ai_mask.json: 3 shape(s) are not areas and were left out (shapes[3] 'line' " \
           "('bottle'), shapes[4] 'linestrip' ('bottle'), shapes[5] 'point' ('person'))" in text


def test_a_bad_labelme_file_is_reported_and_the_others_are_imported(tmp_path, capsys):
    from segstudio.cli import main

    project = _project(tmp_path)
    preview = preview_import(project, DATA, ImportOptions(format="labelme"))
    assert len(preview.images) == 2
    assert any("broken.json: shapes[0] ('person'): reaches" in s and "left out" in s
               for s in preview.skipped), preview.skipped
    project.release_lock()
    assert main(["import", str(project.root), str(DATA), "--format", "labelme"]) == 0
    captured = capsys.readouterr()
    assert "skipped: " in captured.err and "broken.json" in captured.err
    assert "imported masks for 2 image(s)" in captured.out
    reopened = Project.open(project.root)
    assert reopened.masks.has_mask(_entry(reopened, "ai_mask").id)
    assert not reopened.masks.has_mask(_entry(reopened, "broken").id)


def test_only_bad_labelme_files_are_refused_naming_the_first(tmp_path):
    from segstudio.io.imports import AnnotationImportError

    project = _project(tmp_path)
    with pytest.raises(AnnotationImportError, match=r"broken.json: shapes\[0\] \('person'\)"):
        import_annotations(project, DATA / "broken.json", ImportOptions(format="labelme"))


def test_a_label_mapped_to_unlabeled_becomes_255_not_a_class(tmp_path):
    project = _project(tmp_path)
    src = tmp_path / "one"
    src.mkdir()
    shutil.copy(DATA / "overshoot.json", src)
    opts = ImportOptions(format="labelme", mapping={"bottle": "unlabeled"})
    assert preview_import(project, src, opts).unknown_classes == []
    import_annotations(project, src, opts)
    got = mask_of(project, _entry(project, "overshoot").id)
    doc = json.loads((DATA / "overshoot.json").read_text())
    assert np.array_equal(got, _labelme2voc(doc, {**VALUES, "bottle": -1}))
    assert 2 not in np.unique(got) and [c.name for c in project.classes] == \
        ["background", "person", "bottle"]


# -- COCO, against pycocotools' own decoding ------------------------------------------------
def _coco_project(tmp_path, size=(48, 64)) -> Project:
    h, w = size
    (tmp_path / "images").mkdir()
    p = tmp_path / "images" / "scene.png"
    cv2.imwrite(str(p), np.zeros((h, w), np.uint8))
    project = Project.create(tmp_path / "project", classes=list(CLASSES))
    project.add_images([p])
    return project


def _ann_to_masks(path: Path, value_of_cat: dict[int, int]) -> np.ndarray:
    from pycocotools.coco import COCO

    coco = COCO(str(path))
    img = coco.loadImgs(coco.getImgIds())[0]
    out = np.zeros((img["height"], img["width"]), np.uint8)
    for ann in coco.loadAnns(coco.getAnnIds(imgIds=[img["id"]])):
        out[coco.annToMask(ann) == 1] = value_of_cat[ann["category_id"]]
    return out


def _coco_doc(anns: list[dict], h=48, w=64) -> dict:
    for i, a in enumerate(anns, 1):
        a.setdefault("id", i)
        a.setdefault("image_id", 1)
        a.setdefault("iscrowd", 0)
        a.setdefault("area", 1)
        a.setdefault("bbox", [0, 0, 1, 1])
    return {"images": [{"id": 1, "file_name": "scene.png", "height": h, "width": w}],
            "annotations": anns, "categories": [{"id": 7, "name": "person"},
                                                {"id": 9, "name": "bottle"}]}


def test_coco_polygons_past_the_edge_decode_as_pycocotools_annToMask(tmp_path):
    project = _coco_project(tmp_path)
    # within the 2 px that are taken as meant (labelme2coco writes such files); the slanted
    # edges through the outside vertices are where clipping first would move pixels
    anns = [{"category_id": 7, "segmentation": [[-1.9, 3.3, 30.2, -1.7, 40.5, 20.6, 5.1, 49.8]]},
            {"category_id": 9, "segmentation": [[44.2, 10.1, 65.8, 1.2, 65.3, 49.9, 38.7, 40.2],
                                                [2.0, 30.0, 9.0, 30.0, 9.0, 38.0]]}]
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(_coco_doc(anns)))
    result = import_annotations(project, path, ImportOptions(format="coco"))
    assert any("past the image edge" in w for w in result.warnings)
    got = mask_of(project, project.images[0].id)
    assert np.array_equal(got, _ann_to_masks(path, {7: 1, 9: 2}))


def test_coco_crowd_rle_imports_pixel_exact(tmp_path):
    from pycocotools import mask as mu

    project = _coco_project(tmp_path)
    h, w = 48, 64
    crowd = np.zeros((h, w), np.uint8, order="F")
    crowd[5:30, 8:50] = 1
    crowd[12:20, 20:30] = 0                                  # a hole: RLE keeps it
    compressed = mu.encode(np.asfortranarray(crowd))
    counts, run, value = [], 0, 0                           # uncompressed: column-major runs
    for v in crowd.ravel(order="F"):
        if v != value:
            counts.append(run)
            run, value = 0, v
        run += 1
    counts.append(run)
    other = np.zeros((h, w), np.uint8)
    other[25:45, 40:60] = 1
    anns = [{"category_id": 7, "iscrowd": 1, "segmentation": {"size": [h, w], "counts": counts}},
            {"category_id": 9, "iscrowd": 1, "segmentation": {
                "size": [h, w], "counts": mu.encode(np.asfortranarray(other))["counts"].decode()}},
            {"category_id": 9, "iscrowd": 1, "segmentation": {
                "size": [h, w], "counts": compressed["counts"].decode()}}]
    path = tmp_path / "crowd.json"
    path.write_text(json.dumps(_coco_doc(anns)))
    import_annotations(project, path, ImportOptions(format="coco"))
    got = mask_of(project, project.images[0].id)
    want = _ann_to_masks(path, {7: 1, 9: 2})
    assert np.array_equal(got, want) and (want == 2).sum() > 500 and want[15, 25] == 0
