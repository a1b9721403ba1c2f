"""Objects in and out (issue 16): instance label images, COCO and labelme objects, and exports
that write one annotation per object, so touching objects stay apart."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from segstudio.core.classes import LabelClass
from segstudio.io.export import ExportOptions, export_dataset
from segstudio.io.formats.instances import read_instance_image
from segstudio.io.imports import ImportOptions, import_annotations
from segstudio.io.project import Project

DATA = Path(__file__).parent.parent / "data" / "instances"
DSB = DATA / "dsb_1c681dfa.png"

CLASSES = [LabelClass(0, "background", "#000000"), LabelClass(1, "cell", "#E69F00"),
           LabelClass(2, "nucleus", "#009E73", objects=True)]


def _project(root: Path, shapes: dict[str, tuple[int, int]], classes=CLASSES) -> Project:
    """Images of the given names and (h, w), random pixels, no masks yet."""
    src = root / "src"
    src.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, (h, w) in shapes.items():
        cv2.imwrite(str(src / f"{name}.png"), rng.integers(0, 255, (h, w), dtype=np.uint8))
    project = Project.create(root / "p", classes=list(classes))
    project.add_images([src / f"{n}.png" for n in shapes])
    for e in project.images:
        project.update_entry(e.id, split="train")
    project.save()
    return project


def _with_labels(root: Path, mask: np.ndarray, objects: np.ndarray, classes=CLASSES) -> Project:
    project = _project(root, {"img": mask.shape}, classes)
    e = project.images[0]
    project.masks.write(e.id, mask, objects)
    project.update_entry(e.id, labelled=1.0)
    project.save()
    return project


def _layers(project: Project, image_id: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    e = project.entry(image_id) if image_id else project.images[0]
    info = project.probe(e)
    shape = (info.height, info.width)
    return project.load_mask(e, shape), project.load_objects(e, shape)


def _object_set(mask: np.ndarray, objects: np.ndarray) -> set[tuple[int, bytes]]:
    """Every object as (its class, its pixels), whatever ids it was given."""
    out = set()
    for k in np.unique(objects[objects > 0]):
        where = objects == k
        classes = np.unique(mask[where])
        assert len(classes) == 1, f"object {k} spans classes {classes}"
        out.add((int(classes[0]), np.packbits(where).tobytes()))
    return out


def _touching_grid(h=60, w=80, side=10) -> tuple[np.ndarray, np.ndarray]:
    """Class 2 squares side by side, every one touching its neighbours: one region, many
    objects; plus two touching blobs of class 1 (no objects) and a ring object with a hole."""
    mask = np.zeros((h, w), np.uint8)
    objects = np.zeros((h, w), np.uint32)
    k = 0
    for y in range(0, 30, side):
        for x in range(0, 50, side):
            k += 1
            mask[y:y + side, x:x + side] = 2
            objects[y:y + side, x:x + side] = k
    mask[40:50, 5:15] = 1
    mask[40:50, 15:25] = 1                         # touching, but class 1 has no objects
    cv2.circle(mask, (65, 45), 9, 2, -1)
    cv2.circle(mask, (65, 45), 3, 0, -1)           # a hole
    objects[(mask == 2) & (objects == 0)] = k + 1
    return mask, objects


def _coco(path: Path):
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


@pytest.mark.parametrize("mode", ["polygon", "rle"])
def test_touching_objects_export_as_one_coco_annotation_each_and_score_ap_1(tmp_path, mode):
    pytest.importorskip("pycocotools")
    from pycocotools.cocoeval import COCOeval

    mask, objects = _touching_grid()
    project = _with_labels(tmp_path, mask, objects)
    out = tmp_path / "coco"
    export_dataset(project, out, ExportOptions(format="coco", coco_mode=mode))
    gt = _coco(out / "annotations" / "instances_train.json")
    anns = gt.loadAnns(gt.getAnnIds())
    by_class = {c: [a for a in anns if a["category_id"] == c] for c in (1, 2)}
    assert len(by_class[2]) == 16                  # 15 touching squares + the ring
    assert len(by_class[1]) == 1                   # a class without objects: regions, as before
    want = {np.packbits(objects == k).tobytes() for k in range(1, 17)}
    got = {np.packbits(gt.annToMask(a).astype(bool)).tobytes() for a in by_class[2]}
    assert got == want                             # pixel for pixel, the hole kept
    ring = next(a for a in by_class[2] if a["area"] == int((objects == 16).sum()))
    assert isinstance(ring["segmentation"], dict)  # holes: RLE even in polygon mode
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes([{"image_id": a["image_id"], "category_id": a["category_id"],
                          "segmentation": gt.annToRLE(a), "score": 1.0} for a in anns])
        e = COCOeval(gt, dt, "segm")
        e.evaluate()
        e.accumulate()
        e.summarize()
    assert e.stats[0] == pytest.approx(1.0)
    notes = json.loads((out / "export.json").read_text())["notes"]
    assert any("one annotation per object" in n for n in notes)


def test_before_objects_touching_squares_merged_into_one_annotation(tmp_path):
    """The same pixels in a class without objects: one region, as the export always did."""
    pytest.importorskip("pycocotools")
    mask, objects = _touching_grid()
    plain = [LabelClass(0, "background", "#000000"), LabelClass(1, "cell", "#E69F00"),
             LabelClass(2, "nucleus", "#009E73")]
    project = _with_labels(tmp_path, mask, np.zeros_like(objects), plain)
    export_dataset(project, tmp_path / "coco", ExportOptions(format="coco"))
    doc = json.loads((tmp_path / "coco" / "annotations" / "instances_train.json").read_text())
    assert sum(a["category_id"] == 2 for a in doc["annotations"]) == 2    # grid + ring


def test_yolo_writes_one_line_per_object(tmp_path):
    from segstudio.io.formats.polygons import fill_centre_polygon

    mask, objects = _touching_grid()
    project = _with_labels(tmp_path, mask, objects)
    export_dataset(project, tmp_path / "yolo", ExportOptions(format="yolo"))
    lines = (tmp_path / "yolo" / "labels" / "train" / f"{project.images[0].id}.txt").read_text().split("\n")
    lines = [ln for ln in lines if ln]
    nucleus = [ln for ln in lines if ln.startswith("1 ")]     # YOLO index 1 = nucleus
    assert len(nucleus) == 16 and len(lines) == 17
    h, w = mask.shape
    drawn = set()
    for ln in nucleus:
        pts = np.array(ln.split()[1:], float).reshape(-1, 2) * (w, h)
        m = np.zeros((h, w), np.uint8)
        fill_centre_polygon(m, pts, 1)
        drawn.add(np.packbits(m.astype(bool)).tobytes())
    squares = {np.packbits(objects == k).tobytes() for k in range(1, 16)}
    assert squares <= drawn          # each square exactly; the ring's line fills its hole


def _dsb_project(tmp_path: Path, name: str = "cells") -> tuple[Project, Path]:
    """A project with one 256 x 256 image and the DSB instance image named for it."""
    ids = read_instance_image(DSB)
    plain = [LabelClass(0, "background", "#000000"), LabelClass(1, "nucleus", "#009E73")]
    project = _project(tmp_path / "a", {name: ids.shape}, plain)
    src = tmp_path / "dsb" / "instances"
    src.mkdir(parents=True)
    shutil.copy(DSB, src / f"{name}.png")
    return project, src.parent


def test_dsb_instances_import_export_import_keeps_every_object(tmp_path):
    pytest.importorskip("pycocotools")
    truth = read_instance_image(DSB)
    want = _object_set((truth > 0).astype(np.uint8), truth)
    assert len(want) == 66
    assert cv2.connectedComponents((truth > 0).astype(np.uint8), connectivity=8)[0] - 1 < 66

    project, src = _dsb_project(tmp_path)
    result = import_annotations(project, src, ImportOptions(format="instances"))
    assert result.imported == [project.images[0].id]
    assert project.classes[1].objects                      # the class now holds objects
    assert any("now hold objects" in w for w in result.warnings)
    mask, objects = _layers(project)
    assert _object_set(mask, objects) == want and objects.max() == 66

    # instance PNG: masks/ + instances/ + classes.json pair up again
    export_dataset(project, tmp_path / "png", ExportOptions(format="png"))
    written = read_instance_image(tmp_path / "png" / "instances" / "train" / "cells.png")
    assert written.max() == 66
    again = _project(tmp_path / "b", {"cells": truth.shape}, CLASSES)
    import_annotations(again, tmp_path / "png", ImportOptions(format="instances"))
    mask2, objects2 = _layers(again)
    assert _object_set(mask2, objects2) == {(2, px) for _, px in want}    # by name: nucleus

    # COCO, polygons and RLE: one annotation per object, back as objects
    for mode in ("polygon", "rle"):
        out = tmp_path / f"coco-{mode}"
        export_dataset(project, out, ExportOptions(format="coco", coco_mode=mode))
        doc = json.loads((out / "annotations" / "instances_train.json").read_text())
        assert len(doc["annotations"]) == 66
        third = _project(tmp_path / f"c-{mode}", {"cells": truth.shape},
                         [LabelClass(0, "background", "#000000"), LabelClass(1, "nucleus", "#009E73")])
        import_annotations(third, out, ImportOptions(format="coco", as_objects=True))
        mask3, objects3 = _layers(third)
        assert third.classes[1].objects
        assert _object_set(mask3, objects3) == want, mode


def test_coco_into_a_class_without_objects_keeps_pixels_only(tmp_path):
    """Without as_objects and no object class, a COCO import is what it always was."""
    pytest.importorskip("pycocotools")
    project, src = _dsb_project(tmp_path)
    import_annotations(project, src, ImportOptions(format="instances"))
    export_dataset(project, tmp_path / "coco", ExportOptions(format="coco"))
    plain = _project(tmp_path / "b", {"cells": (256, 256)},
                     [LabelClass(0, "background", "#000000"), LabelClass(1, "nucleus", "#009E73")])
    import_annotations(plain, tmp_path / "coco", ImportOptions(format="coco"))
    mask, objects = _layers(plain)
    assert not plain.classes[1].objects and not objects.any()
    assert not plain.masks.has_objects(plain.images[0].id)
    assert (mask == 1).sum() == (read_instance_image(DSB) > 0).sum()


def test_labelme_shapes_and_groups_import_as_objects_and_survive_export(tmp_path):
    pytest.importorskip("pycocotools")
    project = _project(tmp_path / "a", {"frame": (40, 60)})
    square = lambda x, y, s=8: [[x, y], [x + s, y], [x + s, y + s], [x, y + s]]   # noqa: E731
    shapes = [
        {"label": "nucleus", "points": square(2, 2), "group_id": None, "shape_type": "polygon"},
        {"label": "nucleus", "points": square(11, 2), "group_id": None, "shape_type": "polygon"},
        # two shapes, one group: one object in two parts
        {"label": "nucleus", "points": square(30, 2), "group_id": 7, "shape_type": "polygon"},
        {"label": "nucleus", "points": square(30, 20), "group_id": 7, "shape_type": "polygon"},
        {"label": "cell", "points": square(2, 25), "group_id": None, "shape_type": "polygon"},
    ]
    folder = tmp_path / "lm"
    folder.mkdir()
    (folder / "frame.json").write_text(json.dumps({
        "version": "5.4.1", "shapes": shapes, "imagePath": "frame.png", "imageData": None,
        "imageHeight": 40, "imageWidth": 60}))
    import_annotations(project, folder, ImportOptions(format="labelme"))
    mask, objects = _layers(project)
    assert len(np.unique(objects[objects > 0])) == 3        # nucleus: 2 squares + 1 group
    assert not objects[mask == 1].any()                     # cell holds no objects
    assert np.array_equal(objects > 0, mask == 2)           # the same pixels as the classes
    group = objects[3, 33]
    assert group and objects[23, 33] == group
    assert objects[5, 5] != objects[5, 15]                  # touching squares stay two
    want = _object_set(mask, objects)
    for fmt, opts in (("png", ImportOptions(format="instances")),
                      ("coco", ImportOptions(format="coco"))):
        export_dataset(project, tmp_path / fmt, ExportOptions(format=fmt, coco_mode="rle"))
        again = _project(tmp_path / f"b-{fmt}", {"frame": (40, 60)})
        import_annotations(again, tmp_path / fmt, opts)
        assert _object_set(*_layers(again)) == want, fmt


def test_bad_instance_files_are_reported_and_the_others_imported(tmp_path):
    project = _project(tmp_path / "a", {"good": (30, 40), "small": (30, 40), "torn": (30, 40),
                                        "colour": (30, 40)},
                       [LabelClass(0, "background", "#000000"), LabelClass(1, "cell", "#E69F00")])
    src = tmp_path / "inst"
    src.mkdir()
    good = np.zeros((30, 40), np.uint16)
    good[2:10, 2:10], good[2:10, 10:20] = 300, 7
    cv2.imwrite(str(src / "good.png"), good)
    cv2.imwrite(str(src / "small.png"), good[:20])
    (src / "torn.png").write_bytes(cv2.imencode(".png", good)[1].tobytes()[:60])
    colour = np.zeros((30, 40, 3), np.uint8)
    colour[5:9, 5:9] = (10, 200, 30)
    cv2.imwrite(str(src / "colour.png"), colour)
    result = import_annotations(project, src, ImportOptions(format="instances"))
    assert result.imported == ["good"]
    text = "\n".join(result.skipped)
    assert "small.png: instance image is 40 x 20 but image 'small.png' is 40 x 30" in text
    assert "torn.png" in text and "colour.png" in text and "left out" in text
    mask, objects = _layers(project, "good")
    assert sorted(np.unique(objects).tolist()) == [0, 1, 2]           # 7, 300 -> 1, 2
    assert (mask[2:10, 2:20] == 1).all() and not project.masks.has_mask("small")


def test_ctc_int32_tiff_and_8_bit_labels_are_instances_too(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    project = _project(tmp_path / "a", {"t07": (20, 30), "b8": (20, 30)},
                       [LabelClass(0, "background", "#000000"), LabelClass(1, "cell", "#E69F00")])
    src = tmp_path / "instances"
    src.mkdir()
    ids = np.zeros((20, 30), np.int32)
    ids[1:5, 1:5], ids[1:5, 5:9], ids[10:15, 10:20] = 2_000_000_000, 5, 70_000
    tifffile.imwrite(src / "man_seg07.tif", ids)           # CTC: man_segNN belongs to tNN
    b8 = np.zeros((20, 30), np.uint8)
    b8[3:6, 3:6], b8[3:6, 6:9] = 1, 2
    cv2.imwrite(str(src / "b8_masks.png"), b8)           # a Cellpose-style name
    result = import_annotations(project, src, ImportOptions(format="instances"))
    assert sorted(result.imported) == ["b8", "t07"]
    _, objects = _layers(project, "t07")
    assert _object_set((ids > 0).astype(np.uint8), objects) == \
        _object_set((ids > 0).astype(np.uint8), ids.astype(np.uint32))
    assert objects.max() == 3
    _, objects8 = _layers(project, "b8")
    assert objects8[4, 4] != objects8[4, 7] and objects8.max() == 2


def test_more_than_65535_objects_export_as_uint32_tiff(tmp_path):
    h, w = 260, 260                                  # every pixel its own object: 67600
    mask = np.full((h, w), 2, np.uint8)
    objects = np.arange(1, h * w + 1, dtype=np.uint32).reshape(h, w)
    project = _with_labels(tmp_path, mask, objects)
    export_dataset(project, tmp_path / "png", ExportOptions(format="png"))
    out = tmp_path / "png" / "instances" / "train"
    assert [p.name for p in out.iterdir()] == [f"{project.images[0].id}.tif"]
    assert np.array_equal(read_instance_image(next(out.iterdir())), objects)


def test_coco_crowd_stays_class_pixels_without_an_object(tmp_path):
    pytest.importorskip("pycocotools")
    from pycocotools import mask as mu

    project = _project(tmp_path / "a", {"crowd": (20, 30)})
    crowd = np.zeros((20, 30), np.uint8, order="F")
    crowd[10:18, 2:28] = 1
    rle = mu.encode(np.asfortranarray(crowd))
    doc = {"images": [{"id": 1, "file_name": "crowd.png", "height": 20, "width": 30}],
           "categories": [{"id": 5, "name": "nucleus"}],
           "annotations": [
               {"id": 1, "image_id": 1, "category_id": 5, "iscrowd": 0,
                "segmentation": [[2, 2, 8, 2, 8, 8, 2, 8]]},
               {"id": 2, "image_id": 1, "category_id": 5, "iscrowd": 0,
                "segmentation": [[8, 2, 14, 2, 14, 8, 8, 8]]},
               {"id": 3, "image_id": 1, "category_id": 5, "iscrowd": 1,
                "segmentation": {"size": [20, 30], "counts": rle["counts"].decode()}}]}
    (tmp_path / "c.json").write_text(json.dumps(doc))
    import_annotations(project, tmp_path / "c.json", ImportOptions(format="coco"))
    mask, objects = _layers(project)
    assert (mask[10:18, 2:28] == 2).all() and not objects[10:18, 2:28].any()
    assert sorted(np.unique(objects).tolist()) == [0, 1, 2]
    assert objects[4, 4] != objects[4, 10]          # the two touching squares


def test_an_import_replaces_old_objects_and_a_failed_one_puts_them_back(tmp_path, monkeypatch):
    mask, objects = _touching_grid()
    project = _with_labels(tmp_path, mask, objects)
    image_id = project.images[0].id
    src = tmp_path / "plain"
    src.mkdir()
    cv2.imwrite(str(src / "img.png"), (mask > 0).astype(np.uint8))     # class 1 everywhere
    real_write = project.masks.write

    def failing(image_id, mask, *objects):
        real_write(image_id, mask, *objects)
        raise OSError("disk full")

    monkeypatch.setattr(project.masks, "write", failing)
    with pytest.raises(OSError, match="disk full"):
        import_annotations(project, src, ImportOptions(format="folder"))
    monkeypatch.undo()
    back_mask, back_objects = _layers(project)
    assert np.array_equal(back_mask, mask) and np.array_equal(back_objects, objects)   # both back
    import_annotations(project, src, ImportOptions(format="folder"))
    new_mask, new_objects = _layers(project)
    assert (new_mask == (mask > 0)).all() and not new_objects.any()
    assert not project.masks.has_objects(image_id)         # old ids went with the old mask


def test_rle_from_the_objects_columns_equals_pycocotools_on_the_whole_image():
    pytest.importorskip("pycocotools")
    from pycocotools import mask as mu

    from segstudio.io.formats.coco import instance_rle
    from segstudio.io.formats.polygons import instances

    rng = np.random.default_rng(3)
    for _ in range(100):
        h, w = (int(v) for v in rng.integers(1, 30, 2))
        m = (rng.random((h, w)) < 0.4).astype(np.uint8)
        for inst in instances(m, [1]):
            full = mu.encode(inst.full_mask((h, w), order="F"))
            assert instance_rle(inst, (h, w), mu)["counts"] == full["counts"].decode()


def test_yolo_lines_import_back_as_the_same_touching_objects(tmp_path):
    mask, objects = _touching_grid()
    objects[(mask == 2) & (objects == 16)] = 0          # no ring: YOLO lines cannot hold holes
    mask[(mask == 2) & (objects == 0)] = 0
    project = _with_labels(tmp_path, mask, objects)
    export_dataset(project, tmp_path / "yolo", ExportOptions(format="yolo"))
    again = _project(tmp_path / "b", {"img": mask.shape})
    import_annotations(again, tmp_path / "yolo", ImportOptions(format="yolo"))
    got_mask, got = _layers(again)
    assert _object_set(got_mask, got) == _object_set(mask, objects)
    assert len(np.unique(got[got > 0])) == 15


def test_an_instance_image_imported_as_class_ids_points_to_instances(tmp_path):
    project, src = _dsb_project(tmp_path)
    from segstudio.io.imports import AnnotationImportError

    with pytest.raises(AnnotationImportError, match="holds class ids 2, 3.*66 that.*--format instances"):
        import_annotations(project, src / "instances", ImportOptions(format="folder"))
    big = read_instance_image(DSB) * 900                  # past 8 bits
    cv2.imwrite(str(src / "instances" / "cells.png"), big.astype(np.uint16))
    with pytest.raises(AnnotationImportError, match="holds value 59400.*--format instances"):
        import_annotations(project, src / "instances", ImportOptions(format="folder"))
