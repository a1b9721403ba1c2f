"""Hostile or sloppy files: every problem is one sentence naming the file and the JSON/YAML
place (through the API and the CLI, exit 2, no traceback), nothing is imported half-way, and
what is clearly meant (a shape a fraction of a pixel past the edge) is clipped with a warning."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest

from segstudio.io.imports import (AnnotationImportError, ImportOptions, import_annotations,
                                  preview_import)
from segstudio.io.project import Project

from .conftest import H, W, fresh_copy, mask_of


@pytest.fixture
def target(project, tmp_path):
    """A copy of the project's images where image 0 already has a mask, to check it stays."""
    other = fresh_copy(project, tmp_path / "target")
    keep = np.full((H, W), 255, np.uint8)
    keep[:10, :10] = 1
    other.masks.write(other.images[0].id, keep)
    return other


def _untouched(target) -> None:
    target = Project.open(target.root)           # what is on disk, not what is in memory
    assert np.array_equal(mask_of(target, target.images[0].id)[:10, :10], np.ones((10, 10)))
    assert [target.masks.has_mask(e.id) for e in target.images] == [True] + [False] * 5
    assert [c.name for c in target.classes] == ["background", "cell", "nucleus"]


def _refused(target, src, fmt, capsys, *expected: str, args: tuple[str, ...] = ()) -> str:
    """Refused by import_annotations and by `segstudio-cli import` alike; returns the message."""
    from segstudio.cli import main

    mapping = dict(args[i + 1].split("=", 1) for i, a in enumerate(args) if a == "--map")
    options = ImportOptions(format=fmt, mapping=mapping, new_classes="--new-classes" in args)
    with pytest.raises(AnnotationImportError) as e:
        import_annotations(target, src, options)
    msg = str(e.value)
    for part in expected:
        assert part in msg
    _untouched(target)
    capsys.readouterr()
    assert main(["import", str(target.root), str(src), "--format", fmt, *args]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for part in expected:
        assert part in err
    _untouched(target)
    return msg


# -- COCO ------------------------------------------------------------------------------------
def _coco_doc(project, anns, categories=None):
    e = project.images[1]
    return {"images": [{"id": 1, "file_name": f"{e.id}.png", "height": H, "width": W}],
            "categories": categories or [{"id": 1, "name": "cell"}],
            "annotations": [{"id": 10 + i, "image_id": 1, "category_id": 1, **a}
                            for i, a in enumerate(anns)]}


def _write_coco(tmp_path, doc) -> object:
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(doc))           # json writes NaN / Infinity, as Python tools do
    return path


SQUARE = [[2.0, 2.0, 12.0, 2.0, 12.0, 12.0, 2.0, 12.0]]


@pytest.mark.parametrize("counts, what", [
    ({"a": 1}, "segmentation.counts must be a list of whole numbers or an RLE string, got an object"),
    ([5, 10], f"segmentation.counts covers 15 pixels but its image 'img_01.png' has {H} x {W}"),
    ([1.5, H * W - 1.5], "segmentation.counts must be a list of whole numbers"),
    ([-3, H * W + 3], "segmentation.counts holds a negative run length"),
    ("~~~", "segmentation.counts is not a COCO RLE string"),
    ("0", "segmentation.counts covers 0 pixels"),          # pycocotools: uninitialised pixels
    ("", "segmentation.counts is not a COCO RLE string"),
])
def test_coco_rle_counts_of_the_wrong_type_or_size(project, target, tmp_path, capsys, counts, what):
    from pycocotools import mask as mu

    good = np.zeros((H, W), np.uint8, order="F")
    good[5:20, 7:30] = 1
    good_rle = {"size": [H, W], "counts": mu.encode(good)["counts"].decode("ascii")}
    doc = _coco_doc(project, [{"segmentation": good_rle},      # what pycocotools writes passes
                              {"segmentation": {"size": [H, W], "counts": counts}}])
    path = _write_coco(tmp_path, doc)
    _refused(target, path, "coco", capsys, "instances.json: annotations[1] (id 11): " + what)


def test_coco_rle_size_that_is_not_numbers(project, target, tmp_path, capsys):
    doc = _coco_doc(project, [{"segmentation": {"size": ["a", "b"], "counts": [H * W]}}])
    _refused(target, _write_coco(tmp_path, doc), "coco", capsys,
             "annotations[0] (id 10): RLE size ['a', 'b'] differs from its image")


@pytest.mark.parametrize("images", [{"1": {"id": 1}}, 7, "img_01.png"])
def test_coco_images_that_are_not_a_list(project, target, tmp_path, capsys, images):
    doc = _coco_doc(project, [{"segmentation": SQUARE}])
    doc["images"] = images
    _refused(target, _write_coco(tmp_path, doc), "coco", capsys,
             "instances.json: 'images' must be a list, got")


def test_coco_category_id_that_is_a_list(project, target, tmp_path, capsys):
    doc = _coco_doc(project, [{"segmentation": SQUARE}])
    doc["annotations"][0]["category_id"] = [1]
    _refused(target, _write_coco(tmp_path, doc), "coco", capsys,
             "annotations[0] (id 10): category_id [1] is not in 'categories'")


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_coco_polygon_with_a_coordinate_that_is_not_finite(project, target, tmp_path, capsys, bad):
    poly = list(SQUARE[0])
    poly[3] = bad
    doc = _coco_doc(project, [{"segmentation": SQUARE}, {"segmentation": [poly]}])
    _refused(target, _write_coco(tmp_path, doc), "coco", capsys,
             "annotations[1] (id 11): polygon 0 holds the coordinate", "not a finite number")


def test_coco_polygon_with_text_for_numbers(project, target, tmp_path, capsys):
    doc = _coco_doc(project, [{"segmentation": [["2", "2", "12", "2", "12", "12"]]}])
    _refused(target, _write_coco(tmp_path, doc), "coco", capsys,
             "annotations[0] (id 10): polygon 0 holds '2', which is not a number")


def test_coco_category_name_with_a_line_break(project, target, tmp_path, capsys):
    doc = _coco_doc(project, [{"segmentation": SQUARE}],
                    categories=[{"id": 1, "name": "cell\nnucleus"}])
    _refused(target, _write_coco(tmp_path, doc), "coco", capsys,
             "instances.json: categories[0].name: class name 'cell\\nnucleus' contains a line "
             "break; class names are one line of at most 64 characters")


def test_coco_polygon_a_little_past_the_edge_is_clipped_with_a_warning(project, target, tmp_path):
    # 1.5 px past the right edge of a 64 px image: within the 2 px that are clipped
    doc = _coco_doc(project, [{"segmentation": [[50.0, 5.0, W + 1.5, 5.0, W + 1.5, 20.0,
                                                 50.0, 20.0]]}])
    result = import_annotations(target, _write_coco(tmp_path, doc), ImportOptions(format="coco"))
    assert result.imported == [target.images[1].id]
    assert len(result.warnings) == 1
    assert "instances.json: 1 annotation(s) reach up to 1.50 px past the image edge " \
           "(annotations[0]); clipped" in result.warnings[0]
    mask = mask_of(target, target.images[1].id)
    assert (mask[6:19, 51:] == 1).all() and mask[30, 30] == 0


def test_coco_polygon_far_past_the_edge_is_refused(project, target, tmp_path, capsys):
    doc = _coco_doc(project, [{"segmentation": [[50.0, 5.0, W + 5.0, 5.0, W + 5.0, 20.0]]}])
    _refused(target, _write_coco(tmp_path, doc), "coco", capsys,
             "annotations[0] (id 10): polygon 0 reaches", "outside its image 'img_01.png'",
             "by more than the 2 x 2 px that are clipped")


# -- labelme ---------------------------------------------------------------------------------
def _labelme(project, tmp_path, shapes, **extra):
    src = tmp_path / "lm"
    src.mkdir(exist_ok=True)
    doc = {"imagePath": f"{project.images[1].id}.png", "imageHeight": H, "imageWidth": W,
           "shapes": shapes, **extra}
    (src / "a.json").write_text(json.dumps(doc))
    return src


TRIANGLE = {"label": "cell", "points": [[1, 1], [10, 1], [10, 10]]}


def test_labelme_image_height_that_is_not_a_number(project, target, tmp_path, capsys):
    src = _labelme(project, tmp_path, [TRIANGLE], imageHeight="abc")
    _refused(target, src, "labelme", capsys,
             "a.json: imageHeight must be a positive whole number (pixels), got 'abc'")


@pytest.mark.parametrize("label", [["a"], 7, None, {"name": "a"}])
def test_labelme_label_that_is_not_text(project, target, tmp_path, capsys, label):
    src = _labelme(project, tmp_path, [TRIANGLE, {**TRIANGLE, "label": label}])
    _refused(target, src, "labelme", capsys,
             f"a.json: shapes[1]: label must be text (a class name), got {label!r}")


@pytest.mark.parametrize("label, what", [("a\nb", "contains a line break"),
                                         ("a\x00b", "contains a NUL character"),
                                         ("x" * 65, "is 65 characters long")])
def test_labelme_label_that_cannot_be_a_class_name(project, target, tmp_path, capsys, label, what):
    src = _labelme(project, tmp_path, [{**TRIANGLE, "label": label}])
    _refused(target, src, "labelme", capsys, "a.json: shapes[0]: label: class name", what,
             args=("--new-classes",))


def test_labelme_nan_point(project, target, tmp_path, capsys):
    src = _labelme(project, tmp_path, [TRIANGLE, {"label": "cell",
                                                  "points": [[1, 1], [math.nan, 1], [10, 10]]}])
    _refused(target, src, "labelme", capsys, "a.json: shapes[1] ('cell'): holds the coordinate nan",
             "not a finite number")


def test_labelme_points_that_are_text(project, target, tmp_path, capsys):
    src = _labelme(project, tmp_path, [{"label": "cell", "points": [["1", "1"], ["9", "1"],
                                                                    ["9", "9"]]}])
    _refused(target, src, "labelme", capsys,
             "a.json: shapes[0] ('cell'): 'points' must be a list of [x, y] number pairs")


def test_labelme_edge_at_the_image_size_is_clipped_with_a_warning(project, target, tmp_path):
    # labelme writes the far edge itself (y = 375.77 in a 375 px image): meant as "to the edge"
    src = _labelme(project, tmp_path, [{"label": "nucleus", "shape_type": "rectangle",
                                        "points": [[5, 30], [20, H + 0.77]]}])
    result = import_annotations(target, src, ImportOptions(format="labelme"))
    assert result.imported == [target.images[1].id]
    assert len(result.warnings) == 1 and "a.json: 1 shape(s) reach up to 1.27 px past the " \
        "image edge (shapes[0]); clipped to the image" in result.warnings[0]
    mask = mask_of(target, target.images[1].id)
    assert (mask[30:, 5:21] == 2).all() and mask[10, 10] == 0


def test_labelme_shape_far_past_the_edge_is_refused(project, target, tmp_path, capsys):
    src = _labelme(project, tmp_path, [{"label": "cell", "points": [[5, 30], [20, 30],
                                                                    [20, H + 9]]}])
    _refused(target, src, "labelme", capsys, "a.json: shapes[0] ('cell'): reaches",
             f"outside the {W} x {H} image by more than the 2 x 2 px that are clipped")


def test_cli_mapping_to_a_bad_name_is_refused(project, target, tmp_path, capsys):
    src = _labelme(project, tmp_path, [{**TRIANGLE, "label": "Zelle"}])
    _refused(target, src, "labelme", capsys, "class mapping Zelle='a\\tb': class name 'a\\tb' "
             "contains a tab", args=("--new-classes", "--map", "Zelle=a\tb"))


# -- YOLO ------------------------------------------------------------------------------------
def _yolo(project, tmp_path, data_yaml: str | bytes, line: str = "0 0.1 0.1 0.5 0.1 0.5 0.5"):
    root = tmp_path / "yolo"
    (root / "labels").mkdir(parents=True)
    (root / "labels" / f"{project.images[1].id}.txt").write_text(line + "\n")
    data = data_yaml.encode() if isinstance(data_yaml, str) else data_yaml
    (root / "data.yaml").write_bytes(data)
    return root


BOMB = "\n".join(["a: &a ['lol','lol','lol','lol','lol','lol','lol','lol','lol','lol']"]
                 + [f"{c}: &{c} [{', '.join(['*' + p] * 10)}]"
                    for p, c in zip("abcd", "bcde")]
                 + ["names: [*e]", "nc: 1"]) + "\n"


def test_yolo_yaml_alias_bomb_is_refused(project, target, tmp_path, capsys):
    root = _yolo(project, tmp_path, BOMB)
    msg = _refused(target, root, "yolo", capsys, "data.yaml: uses the YAML alias *a (line 2)",
                   "never needs aliases")
    assert len(msg) < 400


def test_yolo_class_name_too_long(project, target, tmp_path, capsys):
    root = _yolo(project, tmp_path, "names:\n  0: cell\n  1: '" + "n" * 100 + "'\n")
    _refused(target, root, "yolo", capsys,
             "data.yaml: names[1]: class name", "is 100 characters long",
             args=("--new-classes",))


def test_yolo_class_name_that_is_a_list(project, target, tmp_path, capsys):
    root = _yolo(project, tmp_path, "names: [[a], cell]\n")
    _refused(target, root, "yolo", capsys, "data.yaml: names[0]: class name ['a'] is list, not text")


def test_yolo_data_yaml_that_is_not_utf8(project, target, tmp_path, capsys):
    root = _yolo(project, tmp_path, b"names: [\xff\xfe]\n")
    _refused(target, root, "yolo", capsys, "data.yaml: cannot be read")


def test_yolo_nan_coordinate(project, target, tmp_path, capsys):
    root = _yolo(project, tmp_path, "names: [cell]\n", line="0 0.1 nan 0.5 0.1 0.5 0.5")
    _refused(target, root, "yolo", capsys, "line 1: holds the coordinate nan, which is not a "
             "finite number")


def test_yolo_a_little_past_the_edge_is_clipped_with_a_warning(project, target, tmp_path):
    # 1.01 of 64 px is 0.64 px past the edge: clipped, not refused
    root = _yolo(project, tmp_path, "names: [cell]\n", line="0 0.5 0.1 1.01 0.1 1.01 0.5 0.5 0.5")
    result = import_annotations(target, root, ImportOptions(format="yolo"))
    assert result.imported == [target.images[1].id]
    assert len(result.warnings) == 1 and "1 polygon(s) reach up to 0.64 px past the image " \
        "edge (line(s) 1); clipped" in result.warnings[0]
    assert mask_of(target, target.images[1].id)[10, W - 1] == 1


# -- folder: mask values no class has --------------------------------------------------------
def _folder(project, tmp_path):
    src = tmp_path / "masks"
    src.mkdir()
    m = np.zeros((H, W), np.uint8)
    m[:10, :10] = 7
    m[20:30, 20:30] = 254
    m[40:, :] = 255
    m[10:20, 40:50] = 1
    path = src / f"{project.images[1].id}.png"
    cv2.imwrite(str(path), m)
    return src, path, m


def test_folder_values_no_class_has_are_named_with_the_way_out(project, target, tmp_path, capsys):
    src, path, _m = _folder(project, tmp_path)
    msg = _refused(target, src, "folder", capsys)
    assert msg == (f"{path} holds class ids 7, 254 that the project does not have; map them "
                   f"with --map 7=<class> or add classes with --new-classes (255 stays unlabeled)")


def test_folder_raw_ids_can_be_mapped(project, tmp_path, capsys):
    from segstudio.cli import main

    src, _path, m = _folder(project, tmp_path)
    t = fresh_copy(project, tmp_path / "t")
    preview = preview_import(t, src, ImportOptions(format="folder", mapping={"7": "nucleus"}))
    assert preview.source_classes == ["background", "cell", "class 254", "class 7"]
    assert preview.unknown_classes == ["class 254"]
    assert main(["import", str(t.root), str(src), "--format", "folder",
                 "--map", "7=nucleus", "--map", "254=cell"]) == 0
    got = mask_of(Project.open(t.root), t.images[1].id)
    assert (got[:10, :10] == 2).all() and (got[20:30, 20:30] == 1).all()
    assert (got[40:] == 255).all() and (got[10:20, 40:50] == 1).all()


def test_folder_raw_ids_can_become_new_classes(project, tmp_path):
    src, _path, m = _folder(project, tmp_path)
    t = fresh_copy(project, tmp_path / "t")
    result = import_annotations(t, src, ImportOptions(format="folder", new_classes=True))
    assert result.added_classes == ["class 254", "class 7"]
    ids = {c.name: c.id for c in Project.open(t.root).classes}
    got = mask_of(t, t.images[1].id)
    assert (got[:10, :10] == ids["class 7"]).all() and (got[20:30, 20:30] == ids["class 254"]).all()
    assert (got[40:] == 255).all()


def test_folder_values_a_class_list_does_not_name(project, target, tmp_path, capsys):
    src, path, _m = _folder(project, tmp_path)
    (src / "classes.txt").write_text("background\ncell\n")
    _refused(target, src, "folder", capsys, f"{path} holds class ids 7, 254 that",
             "classes.txt does not name")


def test_folder_class_list_with_a_bad_name(project, target, tmp_path, capsys):
    src, _path, _m = _folder(project, tmp_path)
    (src / "classes.json").write_text(json.dumps(
        {"classes": [{"id": 0, "name": "background"}, {"id": 1, "name": "c\u2028ell"}]}))
    _refused(target, src, "folder", capsys, "classes.json: classes[1].name: class name",
             "contains a line break")
