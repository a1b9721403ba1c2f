"""Class names are one line of at most 64 characters: checked where classes are made, cleaned
when an old project.json holds one that is not (the project still opens)."""

from __future__ import annotations

import json
import logging

import cv2
import numpy as np
import pytest

from segstudio.core.classes import (ClassError, LabelClass, clean_class_name, validate_class_name,
                                    validate_classes)
from segstudio.io.project import Project, ProjectError

RULE = "class names are one line of at most 64 characters"


def test_a_name_is_stripped_and_kept():
    assert validate_class_name("  tumour core \n") == "tumour core"
    assert validate_class_name("Zelle (groß)") == "Zelle (groß)"
    assert validate_class_name("x" * 64) == "x" * 64


@pytest.mark.parametrize("name, what", [
    ("a\nb", "contains a line break"),
    ("a\r\nb", "contains a line break"),
    ("a\u2028b", "contains a line break"),
    ("a\tb", "contains a tab"),
    ("a\x00b", "contains a NUL character"),
    ("a\u200bb", "contains the invisible control character U+200B"),
    ("   ", "is empty"),
    ("x" * 65, "is 65 characters long"),
])
def test_names_that_break_files_are_refused_with_the_rule(name, what):
    with pytest.raises(ClassError) as e:
        validate_class_name(name)
    assert what in str(e.value) and RULE in str(e.value)


def test_the_message_shows_the_escaped_name():
    with pytest.raises(ClassError) as e:
        validate_class_name("a\nb")
    assert str(e.value) == f"class name 'a\\nb' contains a line break; {RULE}"


def test_a_huge_name_is_not_repeated_in_the_message():
    with pytest.raises(ClassError) as e:
        validate_class_name("lol" * 1_000_000)
    assert "3000000 characters" in str(e.value) and len(str(e.value)) < 300


def test_validate_classes_checks_every_name():
    with pytest.raises(ClassError, match="line break"):
        validate_classes([LabelClass(0, "background", "#000000"), LabelClass(1, "a\nb", "#ffffff")])


def test_clean_class_name_replaces_controls_with_spaces():
    assert clean_class_name("a\nb\x00c\t d") == "a b c d"
    assert clean_class_name("\x00\n") == ""
    assert len(clean_class_name("y" * 500)) == 64


def test_set_classes_refuses_a_bad_name(tmp_path):
    project = Project.create(tmp_path / "p")
    with pytest.raises(ProjectError, match="line break"):
        project.add_class("cell\nnucleus")
    assert [c.name for c in Project.open(tmp_path / "p").classes] == ["background", "foreground"]


def test_an_old_project_with_bad_names_still_opens_with_cleaned_names(tmp_path, caplog):
    root = tmp_path / "old"
    Project.create(root)
    doc = json.loads((root / "project.json").read_text())
    doc["classes"] += [{"id": 2, "name": "cell\nnucleus", "color": "#E69F00"},
                       {"id": 3, "name": "bad\x00", "color": "#009E73"},
                       {"id": 4, "name": "\n", "color": "#CC79A7"},
                       {"id": 5, "name": "cell nucleus", "color": "#0072B2"}]
    (root / "project.json").write_text(json.dumps(doc))
    with caplog.at_level(logging.WARNING):
        project = Project.open(root)
    names = [c.name for c in project.classes]
    assert names == ["background", "foreground", "cell nucleus (2)", "bad", "class 4",
                     "cell nucleus"]
    assert "cell\\nnucleus" in caplog.text
    validate_classes(project.classes)          # so the class panel can edit them again
    project.add_class("membrane")
    assert [c.name for c in Project.open(root).classes][-1] == "membrane"


def _images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.zeros((8, 8), np.uint8))
    return folder


@pytest.mark.parametrize("classes, what", [("background,cell\nnucleus", "line break"),
                                           ("background,a\tb", "a tab"),
                                           ("background," + "n" * 70, "70 characters")])
def test_cli_new_refuses_bad_class_names(tmp_path, capsys, classes, what):
    from segstudio.cli import main

    folder = _images(tmp_path)
    assert main(["new", str(folder), "--out", str(tmp_path / "p"), "--classes", classes]) == 2
    err = capsys.readouterr().err
    assert what in err and RULE in err and "Traceback" not in err
    assert not (tmp_path / "p").exists()


def test_cli_new_strips_names(tmp_path, capsys):
    from segstudio.cli import main

    folder = _images(tmp_path)
    assert main(["new", str(folder), "--out", str(tmp_path / "p"),
                 "--classes", " background , cell "]) == 0
    assert [c.name for c in Project.open(tmp_path / "p").classes] == ["background", "cell"]
