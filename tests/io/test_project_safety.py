"""Two writers on one project never overwrite each other; odd project.json values get a message."""

import json
import subprocess
import sys

import numpy as np
import pytest

from segstudio.io.project import Project, ProjectError
from tests.conftest import REPO


def _manifest(root):
    return json.loads((root / "project.json").read_text())


def test_a_second_writer_is_refused_and_named(sample_copy):
    a = Project.open(sample_copy)
    assert a.lock_for_writing("window A") is None
    b = Project.open(sample_copy)
    why = b.lock_for_writing("window B")
    assert why and "window A" in why and "read-only" in why
    assert b.read_only == why
    with pytest.raises(ProjectError, match="not saved"):
        b.save()
    with pytest.raises(ProjectError, match="window A"):
        Project.open(sample_copy).require_writable()
    a.release_lock()
    assert Project.open(sample_copy).lock_for_writing() is None


def test_a_killed_holder_leaves_no_stale_lock(sample_copy):
    code = ("import sys, time; from segstudio.io.project import Project; "
            "p = Project.open(sys.argv[1]); assert p.lock_for_writing('child') is None; "
            "print('locked', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(sample_copy)], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        why = Project.open(sample_copy).lock_for_writing()
        assert why and f"pid {proc.pid}" in why
    finally:
        proc.kill()
        proc.wait()
    assert Project.open(sample_copy).lock_for_writing() is None


def test_saving_merges_what_another_writer_changed(sample_copy):
    a = Project.open(sample_copy)
    b = Project.open(sample_copy)
    b.add_class("cell")                               # e.g. `segstudio-cli import --new-classes`
    a.update_entry(a.images[0].id, split="test")      # a stale copy saves its own change
    a.save()
    on_disk = Project.open(sample_copy)
    assert "cell" in [c.name for c in on_disk.classes], "the other writer's class was dropped"
    assert on_disk.entry(a.images[0].id).split == "test"
    assert "cell" in [c.name for c in a.classes]       # and the stale copy now knows it


def test_a_deletion_on_one_side_survives_the_merge(sample_copy):
    a = Project.open(sample_copy)
    b = Project.open(sample_copy)
    gone = a.images[-1].id
    b.images = [e for e in b.images if e.id != gone]
    b.save()
    a.update_entry(a.images[0].id, reviewed=True)
    a.save()
    ids = [e.id for e in Project.open(sample_copy).images]
    assert gone not in ids and a.images[0].id in ids


@pytest.mark.parametrize("mutate, expected", [
    (lambda m: m["classes"][0].__setitem__("id", "abc"), "'id' must be a whole number, got 'abc'"),
    (lambda m: m["images"][0].__setitem__("labelled", "half"), "'labelled' must be a number"),
    (lambda m: m["images"][0].__setitem__("frame", 1.5), "'frame' must be a whole number"),
    (lambda m: m.__setitem__("images", {"a": 1}), "'images' must be a list"),
    (lambda m: m["settings"].__setitem__("max_pixels", "many"), "'max_pixels' must be a whole number"),
    (lambda m: m["settings"].__setitem__("val_fraction", 3), "'val_fraction' must be in [0, 1)"),
    (lambda m: m.__setitem__("name", ["x"]), "'name' must be text"),
])
def test_wrong_types_in_project_json_are_named(sample_copy, mutate, expected):
    m = _manifest(sample_copy)
    m.setdefault("settings", {})
    mutate(m)
    (sample_copy / "project.json").write_text(json.dumps(m))
    with pytest.raises(ProjectError) as e:
        Project.open(sample_copy)
    assert expected in str(e.value) and "project.json" in str(e.value)


def test_a_deeply_nested_project_json_is_refused_not_a_crash(sample_copy):
    (sample_copy / "project.json").write_text('{"format": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(ProjectError, match="nested too deeply"):
        Project.open(sample_copy)


def test_cli_new_leaves_nothing_behind_when_it_fails(tmp_path, monkeypatch):
    """A reader error part-way must not leave a half-created project that a rerun refuses."""
    import cv2

    from segstudio import cli
    from segstudio.io import project as project_module

    (tmp_path / "imgs").mkdir()
    for k in range(3):
        cv2.imwrite(str(tmp_path / "imgs" / f"{k}.png"), np.zeros((8, 8), np.uint8))

    def copy_fails(src, dest):
        raise KeyboardInterrupt        # the user pressed Ctrl+C while images were copied
    monkeypatch.setattr(project_module.shutil, "copy2", copy_fails)
    assert cli.main(["new", str(tmp_path / "imgs"), "--out", str(tmp_path / "proj"), "--copy"]) != 0
    assert not (tmp_path / "proj").exists()
    monkeypatch.undo()
    assert cli.main(["new", str(tmp_path / "imgs"), "--out", str(tmp_path / "proj")]) == 0
