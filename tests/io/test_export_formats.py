"""Each export format: its layout and rules, and export -> import returning the project's masks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from segstudio.io.export import ExportOptions, export_dataset
from segstudio.io.imports import ImportOptions, import_annotations

from .conftest import fresh_copy, mask_of, object_ious


def _class_names(out) -> list[str]:
    return [c["name"] for c in json.loads((out / "classes.json").read_text())["classes"]]


def test_png_masks_are_indexed_with_the_class_colours_and_round_trip_exactly(project, tmp_path):
    out = tmp_path / "ds"
    result = export_dataset(project, out, ExportOptions(format="png"))
    assert result.counts == {"train": 4, "val": 1, "test": 1}    # the project's own splits
    assert _class_names(out) == ["background", "cell", "nucleus"]
    assert (out / "classes.txt").read_text().split() == ["background", "cell", "nucleus"]
    first = project.images[0]
    with Image.open(out / "masks" / first.split / f"{first.id}.png") as im:
        assert im.mode == "P"
        assert tuple(im.getpalette()[3:6]) == (0xE6, 0x9F, 0x00)      # class 1's colour
        assert np.array_equal(np.array(im), mask_of(project, first.id))  # 255 kept as ignore
    assert (out / "images" / first.split / f"{first.id}.png").is_file()
    assert (out / "val.txt").read_text().split() == [e.id for e in project.images if e.split == "val"]

    other = fresh_copy(project, tmp_path / "q")
    imported = import_annotations(other, out, ImportOptions(format="folder"))
    assert len(imported.imported) == len(project.images)
    for e in project.images:
        assert np.array_equal(mask_of(other, e.id), mask_of(project, e.id)), e.id
    assert [c.name for c in other.classes] == [c.name for c in project.classes]


def test_voc_layout_and_round_trip(project, tmp_path):
    out = tmp_path / "voc"
    export_dataset(project, out, ExportOptions(format="voc"))
    ids = [e.id for e in project.images]
    voc = out / "VOCdevkit" / "VOC2012"          # torchvision's VOCSegmentation(out) layout
    assert sorted(p.stem for p in (voc / "JPEGImages").glob("*.jpg")) == sorted(ids)
    assert sorted(p.stem for p in (voc / "SegmentationClass").glob("*.png")) == sorted(ids)
    sets = voc / "ImageSets" / "Segmentation"
    train = (sets / "train.txt").read_text().split()
    val = (sets / "val.txt").read_text().split()
    assert (sets / "trainval.txt").read_text().split() == train + val
    other = fresh_copy(project, tmp_path / "q")
    import_annotations(other, out, ImportOptions(format="folder"))
    for e in project.images:
        assert np.array_equal(mask_of(other, e.id), mask_of(project, e.id)), e.id


def _as_background(mask: np.ndarray) -> np.ndarray:
    return np.where(mask == 255, 0, mask)


@pytest.mark.parametrize("mode", ["polygon", "rle"])
def test_coco_loads_with_pycocotools_and_decodes_to_the_masks(project, tmp_path, mode):
    from pycocotools.coco import COCO

    out = tmp_path / "coco"
    export_dataset(project, out, ExportOptions(format="coco", coco_mode=mode))
    ids_by_name = {}
    for split in ("train", "val", "test"):
        coco = COCO(str(out / "annotations" / f"instances_{split}.json"))
        assert {c["name"] for c in coco.loadCats(coco.getCatIds())} == {"cell", "nucleus"}
        for img in coco.loadImgs(coco.getImgIds()):
            image_id = img["file_name"].rsplit(".", 1)[0]
            ids_by_name[image_id] = split
            assert (out / "images" / split / img["file_name"]).is_file()
            decoded = np.zeros((img["height"], img["width"]), np.uint8)
            for ann in coco.loadAnns(coco.getAnnIds(imgIds=img["id"])):
                decoded[coco.annToMask(ann).astype(bool)] = ann["category_id"]
                assert ann["iscrowd"] == 0 and ann["area"] > 0
            expected = _as_background(mask_of(project, image_id))
            if mode == "rle":          # RLE is lossless
                assert np.array_equal(decoded, expected), image_id
            else:                      # polygons: every object IoU >= 0.95 (outline simplified
                ious = object_ious(expected, decoded)   # to 0.25 px; no holes in these masks)
                assert ious and min(ious) >= 0.95, (image_id, min(ious))
    assert ids_by_name == {e.id: e.split for e in project.images}

    other = fresh_copy(project, tmp_path / "q")
    import_annotations(other, out, ImportOptions(format="coco"))
    assert [c.name for c in other.classes] == ["background", "cell", "nucleus"]
    for e in project.images:
        got, want = mask_of(other, e.id), _as_background(mask_of(project, e.id))
        assert (got != want).mean() <= (0 if mode == "rle" else 0.01), e.id


def test_yolo_follows_the_ultralytics_rules_and_round_trips(project, tmp_path):
    """Checked: data.yaml parses with PyYAML and has path/train/val/names (index -> name);
    every image has a label file of the same stem under labels/<split>; each line is an int
    class index in 0..nc-1 then an even number (>= 6) of floats within [0, 1]."""
    import yaml

    out = tmp_path / "yolo"
    export_dataset(project, out, ExportOptions(format="yolo"))
    data = yaml.safe_load((out / "data.yaml").read_text())
    assert data["path"] == str(out.resolve())
    assert data["train"] == "images/train" and data["val"] == "images/val"
    assert data["names"] == {0: "cell", 1: "nucleus"} and data["nc"] == 2
    n_lines = 0
    for e in project.images:
        image = next((out / "images" / e.split).glob(f"{e.id}.*"))
        label = out / "labels" / e.split / f"{image.stem}.txt"
        for line in label.read_text().splitlines():
            parts = line.split()
            assert parts[0].isdigit() and 0 <= int(parts[0]) < data["nc"]
            coords = [float(v) for v in parts[1:]]
            assert len(coords) % 2 == 0 and len(coords) >= 6
            assert all(0.0 <= v <= 1.0 for v in coords)
            n_lines += 1
    assert n_lines >= len(project.images) * 2

    other = fresh_copy(project, tmp_path / "q")
    import_annotations(other, out, ImportOptions(format="yolo"))
    for e in project.images:   # pixel-centre outlines fill back to the same pixels
        assert np.array_equal(mask_of(other, e.id), _as_background(mask_of(project, e.id))), e.id


def test_labelme_import_matches_the_drawn_polygons(project, tmp_path):
    """labelme files written here from each object's outline (pixel-centre coordinates)."""
    from segstudio.io.formats.polygons import centre_polygon, instances

    src = tmp_path / "labelme"
    src.mkdir()
    names = {1: "cell", 2: "nucleus"}
    for e in project.images:
        mask = _as_background(mask_of(project, e.id))
        shapes = [{"label": names[i.class_id], "points": centre_polygon(i).tolist(),
                   "shape_type": "polygon"} for i in instances(mask, [1, 2])]
        doc = {"shapes": shapes, "imagePath": f"..\\images\\{e.id}.png",
               "imageHeight": mask.shape[0], "imageWidth": mask.shape[1]}
        (src / f"{e.id}.json").write_text(json.dumps(doc))
    other = fresh_copy(project, tmp_path / "q")
    import_annotations(other, src, ImportOptions(format="labelme"))
    for e in project.images:
        want = _as_background(mask_of(project, e.id))
        got = mask_of(other, e.id)
        assert min(object_ious(want, got)) >= 0.95 and (got != want).mean() <= 0.01, e.id
