"""Projects: create, reopen, validate the manifest, keep masks beside image ids."""

import json

import cv2
import numpy as np
import pytest

from segstudio.io.masks import MaskError
from segstudio.io.project import FORMAT_VERSION, MANIFEST, Project, ProjectError


def _images(folder, n=3, size=(20, 30)):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        ok, buf = cv2.imencode(".png", np.full(size, i * 40, np.uint8))
        (folder / f"img {i} ü.png").write_bytes(buf.tobytes())
    return folder


def test_from_folder_and_reopen(tmp_path):
    src = _images(tmp_path / "raw data")
    (src / "notes.txt").write_text("not an image")
    p = Project.from_folder(src, tmp_path / "proj")
    assert len(p.images) == 3
    assert all(not e.path.startswith("images/") for e in p.images)  # referenced, not copied
    q = Project.open(tmp_path / "proj")
    assert [e.id for e in q.images] == [e.id for e in p.images]
    assert q.read_image(q.images[1]).data[0, 0] == 40
    assert {e.split for e in q.images} <= {"train", "val"}


def test_copy_in_uses_relative_paths(tmp_path):
    src = _images(tmp_path / "raw")
    p = Project.from_folder(src, tmp_path / "proj", copy=True)
    assert all(e.path.startswith("images/") for e in p.images)
    moved = tmp_path / "moved"
    (tmp_path / "proj").rename(moved)
    q = Project.open(moved)
    assert not q.problems and q.read_image(q.images[0]).data.shape == (20, 30)


def test_missing_and_corrupt_images_are_reported_and_skipped(tmp_path):
    src = _images(tmp_path / "raw")
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    p = Project.from_folder(src, tmp_path / "proj")
    assert len(p.images) == 3
    assert any("broken.png" in m for m in p.problems)
    (src / "img 0 ü.png").unlink()
    q = Project.open(tmp_path / "proj")
    assert len(q.images) == 3 and any("img 0" in m and "not found" in m for m in q.problems)


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.update(colour="red"), r"unknown key\(s\) \['colour'\]"),
    (lambda m: m["images"][0].update(extra=1), r"images\[0\]: unknown key"),
    (lambda m: m.update(version=FORMAT_VERSION + 1), "newer SegStudio"),
    (lambda m: m["classes"].append(dict(m["classes"][0])), "duplicate class ids"),
    (lambda m: m["images"][0].update(split="holdout"), "split 'holdout'"),
])
def test_bad_manifests_are_refused_and_left_alone(tmp_path, edit, message):
    Project.from_folder(_images(tmp_path / "raw"), tmp_path / "proj")
    path = tmp_path / "proj" / MANIFEST
    manifest = json.loads(path.read_text())
    edit(manifest)
    text = json.dumps(manifest)
    path.write_text(text)
    with pytest.raises(ProjectError, match=message):
        Project.open(tmp_path / "proj")
    assert path.read_text() == text


def test_broken_json_names_the_line(tmp_path):
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / MANIFEST).write_text('{\n  "format": "segstudio-project",\n  oops\n}')
    with pytest.raises(ProjectError, match=r"not valid JSON \(line 3"):
        Project.open(tmp_path / "proj")


def test_mask_of_wrong_size_is_an_error_and_untouched(tmp_path):
    p = Project.from_folder(_images(tmp_path / "raw"), tmp_path / "proj")
    e = p.images[0]
    ok, buf = cv2.imencode(".png", np.zeros((5, 5), np.uint8))
    p.masks.png_path(e.id).parent.mkdir(exist_ok=True)
    p.masks.png_path(e.id).write_bytes(buf.tobytes())
    with pytest.raises(MaskError, match="mask is 5 x 5 but its image is 30 x 20"):
        p.load_mask(e, (20, 30))
    assert p.masks.png_path(e.id).read_bytes() == buf.tobytes()


def test_view_state_round_trip(tmp_path):
    p = Project.create(tmp_path / "proj")
    assert p.load_view() == {}
    p.save_view({"image": "a", "zoom": 2.0, "center": [1, 2]})
    assert Project.open(tmp_path / "proj").load_view()["zoom"] == 2.0


def test_delete_class_clears_pixels_in_saved_masks(tmp_path):
    p = Project.from_folder(_images(tmp_path / "raw"), tmp_path / "proj")
    p.add_class("cell")
    mask = np.full((20, 30), 2, np.uint8)
    mask[0] = 1
    p.masks.write(p.images[0].id, mask)
    assert p.clear_class_from_masks(2) == 1
    m = p.load_mask(p.images[0], (20, 30))
    assert (m[0] == 1).all() and (m[1:] == 255).all()
