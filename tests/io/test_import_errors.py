"""Bad input is refused with the file and the place named, and nothing is imported half-way."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from segstudio.io.export import ExportOptions, export_dataset
from segstudio.io.imports import (AnnotationImportError, ImportOptions, import_annotations,
                                  preview_import)

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
    assert np.array_equal(mask_of(target, target.images[0].id)[:10, :10], np.ones((10, 10)))
    assert [target.masks.has_mask(e.id) for e in target.images] == [True] + [False] * 5
    assert [c.name for c in target.classes] == ["background", "cell", "nucleus"]


def _coco(project, tmp_path):
    out = tmp_path / "coco"
    export_dataset(project, out, ExportOptions(format="coco"))
    path = out / "annotations" / "instances_train.json"
    return path, json.loads(path.read_text())


def test_coco_with_an_unknown_image_id(project, target, tmp_path):
    path, doc = _coco(project, tmp_path)
    doc["annotations"][3]["image_id"] = 999
    path.write_text(json.dumps(doc))
    with pytest.raises(AnnotationImportError) as e:
        import_annotations(target, path.parent.parent, ImportOptions(format="coco"))
    msg = str(e.value)
    assert "instances_train.json" in msg and "annotations[3]" in msg and "image_id 999" in msg
    _untouched(target)


def test_coco_polygon_outside_the_image(project, target, tmp_path):
    path, doc = _coco(project, tmp_path)
    doc["annotations"][1]["segmentation"][0][:2] = [W + 40.0, 5.0]
    path.write_text(json.dumps(doc))
    with pytest.raises(AnnotationImportError, match=r"annotations\[1\].*outside its image"):
        import_annotations(target, path, ImportOptions(format="coco"))
    _untouched(target)


def test_yolo_line_with_an_odd_number_of_coordinates(project, target, tmp_path):
    out = tmp_path / "yolo"
    export_dataset(project, out, ExportOptions(format="yolo"))
    labels = sorted((out / "labels").rglob("*.txt"))
    bad = [p for p in labels if len(p.read_text().splitlines()) >= 2][-1]   # others stay valid
    lines = bad.read_text().splitlines()
    lines[1] = lines[1] + " 0.5"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(AnnotationImportError) as e:
        import_annotations(target, out, ImportOptions(format="yolo"))
    assert f"{bad}, line 2: odd number of coordinates" in str(e.value)
    _untouched(target)


def test_yolo_coordinates_outside_0_1(project, target, tmp_path):
    out = tmp_path / "yolo"
    export_dataset(project, out, ExportOptions(format="yolo"))
    bad = sorted((out / "labels").rglob("*.txt"))[0]
    bad.write_text("0 0.1 0.1 1.7 0.1 0.5 0.5\n")
    with pytest.raises(AnnotationImportError, match="line 1: coordinates must be normalised"):
        import_annotations(target, out, ImportOptions(format="yolo"))
    _untouched(target)


def test_folder_mask_of_the_wrong_size(project, target, tmp_path):
    out = tmp_path / "png"
    export_dataset(project, out, ExportOptions(format="png"))
    e = project.images[2]
    bad = out / "masks" / e.split / f"{e.id}.png"
    cv2.imwrite(str(bad), np.zeros((H + 1, W), np.uint8))
    with pytest.raises(AnnotationImportError) as err:
        import_annotations(target, out, ImportOptions(format="folder"))
    assert str(bad) in str(err.value) and f"mask is {W} x {H + 1}" in str(err.value)
    _untouched(target)


def test_folder_mask_with_values_that_are_no_class(project, target, tmp_path):
    src = tmp_path / "masks"
    src.mkdir()
    cv2.imwrite(str(src / f"{project.images[1].id}.png"), np.full((H, W), 7, np.uint8))
    with pytest.raises(AnnotationImportError) as e:
        import_annotations(target, src, ImportOptions(format="folder"))
    assert str(e.value).startswith(f"{src / project.images[1].id}.png holds class id 7 that the "
                                   f"project does not have; map them with --map 7=<class>")
    _untouched(target)


def test_labelme_shape_outside_the_image(project, target, tmp_path):
    src = tmp_path / "lm"
    src.mkdir()
    doc = {"imagePath": f"{project.images[1].id}.png", "imageHeight": H, "imageWidth": W,
           "shapes": [{"label": "cell", "points": [[1, 1], [10, 1], [10, 10]]},
                      {"label": "cell", "points": [[1, 1], [W + 30, 1], [10, 10]]}]}
    (src / "a.json").write_text(json.dumps(doc))
    with pytest.raises(AnnotationImportError, match=r"a.json: shapes\[1\] \('cell'\).*outside"):
        import_annotations(target, src, ImportOptions(format="labelme"))
    _untouched(target)


def test_unknown_class_names_fail_unless_mapped_or_allowed(project, tmp_path):
    src = tmp_path / "lm"
    src.mkdir()
    doc = {"imagePath": f"{project.images[1].id}.png", "imageHeight": H, "imageWidth": W,
           "shapes": [{"label": "Zelle", "points": [[1, 1], [10, 1], [10, 10]]}]}
    (src / "a.json").write_text(json.dumps(doc))
    t1 = fresh_copy(project, tmp_path / "t1")
    preview = preview_import(t1, src, ImportOptions(format="labelme"))
    assert preview.source_classes == ["Zelle"] and preview.unknown_classes == ["Zelle"]
    assert preview.images == [t1.images[1].id] and not t1.masks.has_mask(t1.images[1].id)
    assert preview_import(t1, src, ImportOptions(format="labelme", mapping={"Zelle": "cell"})
                          ).unknown_classes == []
    with pytest.raises(AnnotationImportError, match=r"\['Zelle'\] are not in the project"):
        import_annotations(t1, src, ImportOptions(format="labelme"))
    assert not t1.masks.has_mask(t1.images[1].id)

    import_annotations(t1, src, ImportOptions(format="labelme", mapping={"Zelle": "cell"}))
    assert mask_of(t1, t1.images[1].id)[5, 8] == 1

    t2 = fresh_copy(project, tmp_path / "t2")
    result = import_annotations(t2, src, ImportOptions(format="labelme", new_classes=True))
    assert result.added_classes == ["Zelle"]
    new_id = next(c.id for c in t2.classes if c.name == "Zelle")
    assert mask_of(t2, t2.images[1].id)[5, 8] == new_id


def test_unmatched_files_fail_unless_skipped(project, target, tmp_path):
    out = tmp_path / "png"
    export_dataset(project, out, ExportOptions(format="png"))
    stray = out / "masks" / "train" / "not_in_project.png"
    cv2.imwrite(str(stray), np.zeros((H, W), np.uint8))
    with pytest.raises(AnnotationImportError, match="not_in_project.png: matches no image"):
        import_annotations(target, out, ImportOptions(format="folder"))
    _untouched(target)
    result = import_annotations(target, out, ImportOptions(format="folder", skip_unmatched=True))
    assert len(result.imported) == 6 and len(result.skipped) == 1


def test_a_write_failure_puts_every_mask_back(project, target, tmp_path, monkeypatch):
    out = tmp_path / "png"
    export_dataset(project, out, ExportOptions(format="png"))
    real_write = target.masks.write
    calls = []

    def failing_write(image_id, mask):
        calls.append(image_id)
        if len(calls) == 4:
            raise OSError("disk full")
        real_write(image_id, mask)

    monkeypatch.setattr(target.masks, "write", failing_write)
    with pytest.raises(OSError, match="disk full"):
        import_annotations(target, out, ImportOptions(format="folder"))
    monkeypatch.undo()
    _untouched(target)
    assert all(e.labelled == 0.0 for e in target.images)


def test_cli_import_maps_names_and_reports_errors(project, tmp_path, capsys):
    from segstudio.cli import main

    out = tmp_path / "png"
    export_dataset(project, out, ExportOptions(format="png"))
    (out / "classes.txt").unlink()
    doc = json.loads((out / "classes.json").read_text())
    doc["classes"][1]["name"] = "Zelle"
    (out / "classes.json").write_text(json.dumps(doc))
    target = fresh_copy(project, tmp_path / "t")
    assert main(["import", str(target.root), str(out), "--format", "folder"]) == 2
    assert "Zelle" in capsys.readouterr().err
    assert main(["import", str(target.root), str(out), "--format", "folder",
                 "--map", "Zelle=cell"]) == 0
    assert "imported masks for 6 image(s)" in capsys.readouterr().out
    e = project.images[0]
    assert np.array_equal(mask_of(target, e.id), mask_of(project, e.id))
