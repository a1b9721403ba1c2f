"""YOLO and VOC exports as their consumers read them, and a Roboflow-layout YOLO import.

Ultralytics is AGPL, so it is never imported: its documented rasteriser is re-implemented
here (`ultralytics_polygon_mask`): label values read as float32, scaled by the image width /
height, cast with np.asarray(..., dtype=np.int32) (truncation), drawn with cv2.fillPoly in
colour 1. torchvision is not a requirement: when it is missing, VOCSegmentation's path rule
(torchvision/datasets/voc.py) is re-implemented (`voc_segmentation_pairs`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from segstudio.core.classes import LabelClass
from segstudio.io.export import ExportOptions, export_dataset
from segstudio.io.formats.polygons import instances
from segstudio.io.formats.yolo import label_lines
from segstudio.io.imports import AnnotationImportError, ImportOptions, import_annotations
from segstudio.io.project import Project

from .conftest import fresh_copy, mask_of


def _as_background(mask: np.ndarray) -> np.ndarray:
    return np.where(mask == 255, 0, mask)


# -- Ultralytics' rasteriser --------------------------------------------------------------------
def ultralytics_polygon_mask(line: str, h: int, w: int, resample: int | None = None) -> np.ndarray:
    """One label line drawn as Ultralytics draws it (polygon2mask, downsample_ratio 1)."""
    pts = np.array(line.split()[1:], dtype=np.float32).reshape(-1, 2)
    if resample:   # its loader's resample_segments: n points spaced evenly over the closed outline
        closed = np.concatenate([pts, pts[:1]])
        t = np.linspace(0, len(closed) - 1, resample)
        pts = np.stack([np.interp(t, np.arange(len(closed)), closed[:, i]) for i in range(2)],
                       axis=1).astype(np.float32)
    pts[:, 0] *= np.float32(w)
    pts[:, 1] *= np.float32(h)
    out = np.zeros((h, w), np.uint8)
    cv2.fillPoly(out, np.asarray(pts, dtype=np.int32).reshape(1, -1, 2), color=1)
    return out


def shapes_mask(h: int, w: int) -> np.ndarray:
    """Convex, concave and thin objects of two classes, placed by fractions of the size."""
    m = np.zeros((h, w), np.uint8)
    cv2.circle(m, (int(w * .3), int(h * .3)), int(min(h, w) * .17), 1, -1)         # convex
    star = np.array([[w * .6, h * .1], [w * .95, h * .12], [w * .9, h * .45], [w * .77, h * .2],
                     [w * .62, h * .44]], np.int32)
    cv2.fillPoly(m, [star], 2)                                                       # concave
    y0, y1 = int(h * .6), int(h * .9)                                                # a U
    m[y0:y1, int(w * .05):int(w * .1)] = 1
    m[y0:y1, int(w * .2):int(w * .25)] = 1
    m[int(h * .85):y1, int(w * .05):int(w * .25)] = 1
    m[int(h * .55), int(w * .3):int(w * .6)] = 2                                     # 1 px row
    cv2.line(m, (int(w * .35), int(h * .6)), (int(w * .6), int(h * .95)), 1, 1)      # 1 px diagonal
    m[int(h * .97), int(w * .97)] = 2                                                # one pixel
    cv2.line(m, (int(w * .65), int(h * .6)), (int(w * .95), int(h * .8)), 2, 2)      # 2 px band
    return m


def _one_image_project(tmp_path, mask: np.ndarray, name: str = "odd") -> Project:
    h, w = mask.shape
    src = tmp_path / "src"
    src.mkdir()
    img = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
    cv2.imwrite(str(src / f"{name}.png"), img)
    project = Project.create(tmp_path / "p", classes=[
        LabelClass(0, "background", "#000000"), LabelClass(1, "cell", "#E69F00"),
        LabelClass(2, "nucleus", "#009E73")])
    project.add_images([src / f"{name}.png"])
    e = project.images[0]
    project.masks.write(e.id, mask)
    project.update_entry(e.id, split="train", labelled=1.0)
    project.save()
    return project


def test_yolo_export_fills_back_pixel_exact_with_ultralytics_rasteriser(tmp_path):
    """Every object of our export, drawn by Ultralytics' rule, is exactly our object's pixels
    (before: 618 of 14612 object pixels at 301 x 255 landed one pixel off)."""
    mask = shapes_mask(255, 301)
    project = _one_image_project(tmp_path, mask)
    out = tmp_path / "yolo"
    export_dataset(project, out, ExportOptions(format="yolo"))
    e = project.images[0]
    lines = (out / "labels" / "train" / f"{e.id}.txt").read_text().splitlines()
    objects = list(instances(mask, [1, 2]))
    assert len(lines) == len(objects) == 7
    for inst, line in zip(objects, lines):
        assert int(line.split()[0]) == inst.class_id - 1
        got = ultralytics_polygon_mask(line, 255, 301)
        assert np.array_equal(got, inst.full_mask((255, 301))), line[:60]
        pts = np.array(line.split()[1:], np.float64).reshape(-1, 2) * (301, 255)
        nudge = pts - np.round(pts)
        assert (nudge > 0).all() and (nudge < 0.01).all()      # < 0.01 px past the centre


@pytest.mark.parametrize("h, w", [(997, 1000), (480, 641), (3001, 4099)])
def test_yolo_lines_stay_exact_at_other_sizes(h, w):
    """Large sizes need more decimals: 6 would move a vertex by up to 0.002 px at 4099."""
    mask = shapes_mask(h, w)
    for inst, line in zip(instances(mask, [1, 2]), label_lines(mask, {1: 0, 2: 1})):
        assert np.array_equal(ultralytics_polygon_mask(line, h, w), inst.full_mask((h, w)))


def test_yolo_after_ultralytics_resampling_agrees_to_within_one_percent(tmp_path):
    """Ultralytics' loader resamples every outline to 1000 points before drawing; points
    between vertices then truncate too, which no nudge of the vertices can prevent. Bound:
    at most 1 % of the object pixels differ (measured 0.83 % at 301 x 255, 0.15 % at
    4099 x 3001; 3.4 % before the nudge)."""
    mask = shapes_mask(255, 301)
    wrong = total = 0
    for inst, line in zip(instances(mask, [1, 2]), label_lines(mask, {1: 0, 2: 1})):
        want = inst.full_mask((255, 301))
        wrong += int((ultralytics_polygon_mask(line, 255, 301, resample=1000) != want).sum())
        total += int(want.sum())
    assert wrong / total <= 0.01


# -- classes.txt in YOLO order -----------------------------------------------------------------
def test_yolo_classes_txt_is_in_yolo_index_order_and_imports_without_data_yaml(project, tmp_path):
    import yaml

    out = tmp_path / "yolo"
    export_dataset(project, out, ExportOptions(format="yolo"))
    names = yaml.safe_load((out / "data.yaml").read_text())["names"]
    assert (out / "classes.txt").read_text().splitlines() == [names[i] for i in range(len(names))]
    assert (out / "classes.txt").read_text().splitlines() == ["cell", "nucleus"]
    (out / "data.yaml").unlink()          # a tool that keeps only classes.txt
    other = fresh_copy(project, tmp_path / "q")
    import_annotations(other, out, ImportOptions(format="yolo"))
    for e in project.images:              # no shift: cell stays cell, nucleus stays nucleus
        assert np.array_equal(mask_of(other, e.id), _as_background(mask_of(project, e.id))), e.id


def test_other_formats_keep_classes_txt_by_mask_value(project, tmp_path):
    export_dataset(project, tmp_path / "png", ExportOptions(format="png"))
    assert (tmp_path / "png" / "classes.txt").read_text().split() == ["background", "cell",
                                                                      "nucleus"]


def _yolo_without_data_yaml(project, tmp_path, classes_txt: str):
    out = tmp_path / "yolo"
    export_dataset(project, out, ExportOptions(format="yolo"))
    (out / "data.yaml").unlink()
    (out / "classes.txt").write_text(classes_txt)
    return out


@pytest.mark.parametrize("classes_txt, expected", [
    ("background\ncell\nnucleus\n", ["classes.txt: line 1 is 'background', but YOLO class 0 is "
                                     "the first real class", "class 0 would then be 'cell'",
                                     "data.yaml"]),
    ("_background_\ncell\nnucleus\n", ["line 1 is '_background_'"]),
    ("cell\n_unused_1\nnucleus\n", ["classes.txt, line 2: '_unused_1' is a gap in a list by "
                                    "mask value"]),
    ("cell\n\nnucleus\n", ["classes.txt, line 2: blank line between class names"]),
    ("cell\n", ["class index 1 outside 0..0 (classes.txt names 1 class(es)"]),
])
def test_yolo_import_refuses_an_ambiguous_class_list(project, tmp_path, classes_txt, expected):
    out = _yolo_without_data_yaml(project, tmp_path, classes_txt)
    target = fresh_copy(project, tmp_path / "t")
    with pytest.raises(AnnotationImportError) as e:
        import_annotations(target, out, ImportOptions(format="yolo"))
    for part in expected:
        assert part in str(e.value)
    assert all(x.labelled == 0.0 for x in Project.open(target.root).images)   # nothing written


# -- a Roboflow YOLOv8 export --------------------------------------------------------------------
ROBOFLOW_YAML = """\
train: ../train/images
val: ../valid/images
test: ../test/images

nc: 2
names: ['cell', 'nucleus']

roboflow:
  workspace: lab
  project: cells
  version: 3
  license: CC BY 4.0
  url: https://universe.roboflow.com/lab/cells/dataset/3
"""


def _roboflow_layout(project, tmp_path):
    """Our YOLO export rearranged as Roboflow writes one: README files at the top, data.yaml
    with `../train/images`, train/valid/test/{images,labels}, files renamed <stem>_<ext>.rf.<hash>."""
    ours = tmp_path / "ours"
    export_dataset(project, ours, ExportOptions(format="yolo"))
    root = tmp_path / "cells.v3i.yolov8"
    root.mkdir()
    (root / "README.dataset.txt").write_text("# cells > 2026-11-30\nhttps://universe.roboflow."
                                             "com/lab/cells\n\nProvided by a Roboflow user\n"
                                             "License: CC BY 4.0\n")
    (root / "README.roboflow.txt").write_text("\ncells - v3 2026-11-30\n==============\n\nThis "
                                              "dataset was exported via roboflow.com\n")
    (root / "data.yaml").write_text(ROBOFLOW_YAML)
    for split, theirs in (("train", "train"), ("val", "valid"), ("test", "test")):
        for sub in ("images", "labels"):
            (root / theirs / sub).mkdir(parents=True)
        for label in sorted((ours / "labels" / split).glob("*.txt")):
            rf = f"{label.stem}_png.rf.{abs(hash(label.stem)) % 10**12:012d}"
            shutil.copy(label, root / theirs / "labels" / f"{rf}.txt")
            shutil.copy(ours / "images" / split / f"{label.stem}.png",
                        root / theirs / "images" / f"{rf}.jpg")
    return root


def test_roboflow_yolo_export_imports_without_skip_unmatched(project, tmp_path):
    root = _roboflow_layout(project, tmp_path)
    target = fresh_copy(project, tmp_path / "t")
    result = import_annotations(target, root, ImportOptions(format="yolo"))   # no --skip-unmatched
    assert sorted(result.imported) == sorted(e.id for e in project.images)
    assert not result.skipped
    for e in project.images:
        assert np.array_equal(mask_of(target, e.id), _as_background(mask_of(project, e.id))), e.id


def test_yolo_folder_without_labels_folder_says_where_labels_go(project, tmp_path):
    src = tmp_path / "flat"
    src.mkdir()
    (src / "data.yaml").write_text("names: [cell]\n")
    (src / "README.txt").write_text("just notes\n")
    target = fresh_copy(project, tmp_path / "t")
    with pytest.raises(AnnotationImportError, match=r"no labels/ folder; YOLO label files live "
                       r"in labels/"):
        import_annotations(target, src, ImportOptions(format="yolo"))


# -- VOC as torchvision's VOCSegmentation reads it -------------------------------------------------
def voc_segmentation_pairs(root, image_set: str) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, RGB image, mask) as VOCSegmentation(root, year="2012", image_set=...) yields them."""
    try:
        from torchvision.datasets import VOCSegmentation
    except ImportError:
        voc = root / "VOCdevkit" / "VOC2012"           # its DATASET_YEAR_DICT["2012"]["base_dir"]
        assert voc.is_dir(), "Dataset not found or corrupted."
        split_f = voc / "ImageSets" / "Segmentation" / f"{image_set}.txt"
        names = [x.strip() for x in split_f.read_text().splitlines(keepends=True)]
        pairs = [(voc / "JPEGImages" / f"{x}.jpg", voc / "SegmentationClass" / f"{x}.png")
                 for x in names]
        out = []
        for img, target in pairs:
            with Image.open(img) as im, Image.open(target) as t:
                out.append((img.stem, np.array(im.convert("RGB")), np.array(t)))
        return out
    ds = VOCSegmentation(str(root), year="2012", image_set=image_set)
    return [(Path(ds.images[i]).stem, np.array(img), np.array(target))
            for i, (img, target) in enumerate(ds)]


def test_voc_export_loads_with_torchvisions_voc_segmentation(project, tmp_path):
    out = tmp_path / "voc"
    export_dataset(project, out, ExportOptions(format="voc"))
    for image_set, splits in (("train", {"train"}), ("val", {"val"}),
                              ("trainval", {"train", "val"})):
        pairs = voc_segmentation_pairs(out, image_set)
        entries = [e for e in project.images if e.split in splits]
        assert sorted(name for name, _, _ in pairs) == sorted(e.id for e in entries) != []
        for name, img, target in pairs:
            assert np.array_equal(target, mask_of(project, name)), name    # 255 kept: VOC's ignore
            assert img.shape == (*target.shape, 3)
    assert json.loads((out / "export.json").read_text())["format"] == "voc"


def test_voc_empty_split_list_is_an_empty_file(project, tmp_path):
    for e in project.images:
        project.update_entry(e.id, split="train")
    project.save()
    out = tmp_path / "voc"
    export_dataset(project, out, ExportOptions(format="voc", split="project"))
    sets = out / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation"
    assert len(voc_segmentation_pairs(out, "trainval")) == len(project.images)
    assert not (sets / "val.txt").exists() or (sets / "val.txt").read_text() == ""
