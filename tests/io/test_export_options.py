"""Export options (splits, classes, unlabeled, images) and the all-or-nothing folder."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from PIL import Image

from segstudio.core.jobs import Cancelled, CancelToken
from segstudio.io.export import ExportError, ExportOptions, export_dataset

from .conftest import make_project, mask_of


def _mask(out, split, image_id):
    with Image.open(out / "masks" / split / f"{image_id}.png") as im:
        return np.array(im)


def _exported(out):
    return {split: sorted(p.stem for p in (out / "masks" / split).glob("*.png"))
            for split in ("train", "val", "test") if (out / "masks" / split).is_dir()}


def test_ratio_splits_are_seeded_and_sized(tmp_path):
    project = make_project(tmp_path / "p", n=20)
    opts = ExportOptions(split="ratios", ratios=(0.5, 0.3, 0.2), seed=7, images="none")
    a = export_dataset(project, tmp_path / "a", opts)
    b = export_dataset(project, tmp_path / "b", opts)
    c = export_dataset(project, tmp_path / "c", ExportOptions(split="ratios", ratios=(0.5, 0.3, 0.2),
                                                              seed=8, images="none"))
    assert a.counts == {"train": 10, "val": 6, "test": 4}
    assert _exported(tmp_path / "a") == _exported(tmp_path / "b")
    assert _exported(tmp_path / "a") != _exported(tmp_path / "c")
    assert not (tmp_path / "a" / "images").exists()         # images="none": masks only
    assert c.counts == a.counts == b.counts


def test_unlabeled_as_background(project, tmp_path):
    out = tmp_path / "ds"
    export_dataset(project, out, ExportOptions(unlabeled="background"))
    e = project.images[0]                     # has a 255 band in the project
    assert (mask_of(project, e.id) == 255).any()
    got = _mask(out, e.split, e.id)
    assert not (got == 255).any()
    assert np.array_equal(got, np.where(mask_of(project, e.id) == 255, 0, mask_of(project, e.id)))
    assert json.loads((out / "classes.json").read_text())["unlabeled"] is None


def test_only_fully_labelled_checks_the_pixels(project, tmp_path):
    # image 3 claims to be fully labelled but its mask has unlabeled pixels
    project.update_entry(project.images[3].id, labelled=1.0)
    result = export_dataset(project, tmp_path / "ds", ExportOptions(only_fully_labelled=True))
    names = [n for split in _exported(tmp_path / "ds").values() for n in split]
    want = [e.id for e in project.images if not (mask_of(project, e.id) == 255).any()]
    assert sorted(names) == sorted(want)
    assert any(project.images[3].id in s and "unlabeled" in s for s in result.skipped)


def test_class_selection_and_renumbering(project, tmp_path):
    e = project.images[0]
    src = mask_of(project, e.id)
    export_dataset(project, tmp_path / "a", ExportOptions(classes=("nucleus",)))
    got = _mask(tmp_path / "a", e.split, e.id)
    assert np.array_equal(got, np.select([src == 2, src == 255], [1, 255], 0))
    assert (tmp_path / "a" / "classes.txt").read_text().split() == ["background", "nucleus"]

    export_dataset(project, tmp_path / "b", ExportOptions(classes=("nucleus",), renumber=False))
    got = _mask(tmp_path / "b", e.split, e.id)
    assert np.array_equal(got, np.select([src == 2, src == 255], [2, 255], 0))
    assert (tmp_path / "b" / "classes.txt").read_text().split() == ["background", "_unused_1", "nucleus"]

    with pytest.raises(ExportError, match="unknown class"):
        export_dataset(project, tmp_path / "c", ExportOptions(classes=("mitochondrion",)))


def test_link_mode_symlinks_the_images(project, tmp_path):
    out = tmp_path / "ds"
    export_dataset(project, out, ExportOptions(images="link"))
    e = project.images[0]
    linked = out / "images" / e.split / f"{e.id}.png"
    assert linked.is_symlink() and linked.resolve() == project.image_path(e).resolve()


@pytest.mark.parametrize("workers", [1, 2])
def test_cancel_leaves_nothing_behind(tmp_path, workers):
    project = make_project(tmp_path / "p", n=12)
    token = CancelToken()
    seen = []

    def progress(p):
        seen.append(p)
        token.cancel()

    with pytest.raises(Cancelled):
        export_dataset(project, tmp_path / "out" / "ds", ExportOptions(workers=workers),
                       on_progress=progress, cancel=token)
    assert seen and seen[0].total == 12 and seen[0].message in {e.id for e in project.images}
    assert list((tmp_path / "out").iterdir()) == []


def test_a_failure_midway_leaves_nothing_and_keeps_the_old_folder(project, tmp_path):
    out = tmp_path / "ds"
    export_dataset(project, out, ExportOptions())
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    project.masks.png_path(project.images[4].id).write_bytes(b"not a png")
    with pytest.raises(Exception, match="truncated or not a PNG"):
        export_dataset(project, out, ExportOptions(overwrite=True))
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".ds")] == []


def test_existing_folder_needs_overwrite(project, tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "old.txt").write_text("x")
    with pytest.raises(ExportError, match="already exists"):
        export_dataset(project, out, ExportOptions())
    with pytest.raises(ExportError, match="not an earlier SegStudio dataset export"):
        export_dataset(project, out, ExportOptions(overwrite=True))     # not ours: kept
    assert (out / "old.txt").read_text() == "x"
    (out / "old.txt").unlink()
    export_dataset(project, out, ExportOptions())                       # empty: fine
    (out / "stale.txt").write_text("from the earlier export")
    export_dataset(project, out, ExportOptions(overwrite=True))         # an earlier export: replaced
    assert not (out / "stale.txt").exists() and (out / "classes.json").exists()


def test_missing_optional_package_says_how_to_install(project, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pycocotools", None)
    with pytest.raises(ImportError, match="pip install pycocotools"):
        export_dataset(project, tmp_path / "ds", ExportOptions(format="coco", coco_mode="rle"))
    assert not (tmp_path / "ds").exists()
    # polygons need no pycocotools
    export_dataset(project, tmp_path / "ds", ExportOptions(format="coco", coco_mode="polygon"))


def test_cli_export_and_its_errors(project, tmp_path, capsys):
    from segstudio.cli import main

    out = tmp_path / "ds"
    assert main(["export", str(project.root), "--format", "yolo", "--out", str(out),
                 "--split", "0.5,0.5", "--classes", "cell"]) == 0
    assert "exported 6 item(s)" in capsys.readouterr().out
    assert (out / "data.yaml").exists()
    assert main(["export", str(project.root), "--format", "png", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_a_killed_exports_leftovers_are_removed_and_the_manifest_is_written(project, tmp_path):
    stale = tmp_path / ".ds.partial-deadbeef"          # what a killed process leaves
    (stale / "masks").mkdir(parents=True)
    out = tmp_path / "ds"
    export_dataset(project, out, ExportOptions(split="ratios", seed=3))
    assert not stale.exists()
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["format"] == "png" and manifest["options"]["seed"] == 3
    assert sum(manifest["counts"].values()) == len(project.images)
