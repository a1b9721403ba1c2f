"""Editing without a window: a bare canvas, an ImageDocument, a registry and plain callables."""

import cv2
import numpy as np
import pytest

from segstudio.core.document import ImageDocument
from segstudio.io.project import Project
from segstudio.ui.actions import ActionRegistry
from segstudio.ui.canvas import MaskCanvas
from segstudio.ui.editing import Editing


@pytest.fixture
def parts(qtbot):
    canvas = MaskCanvas()
    qtbot.addWidget(canvas)
    canvas.resize(300, 300)
    reg = ActionRegistry()
    said = {"errors": [], "messages": [], "flushes": 0}
    image = {"project": None, "entry": None}

    def flush():
        said["flushes"] += 1
        return True

    editing = Editing(canvas, reg, report_error=lambda title, message: said["errors"].append((title, message)),
                      show_message=lambda text, ms: said["messages"].append(text),
                      image=lambda: (image["project"], image["entry"]), flush=flush)
    return canvas, reg, editing, said, image


def ring_document(read_only=None) -> ImageDocument:
    """Class 1 as a ring: a closed outline with an unlabeled hole in the middle."""
    mask = np.full((60, 60), 255, np.uint8)
    cv2.circle(mask, (30, 30), 20, 1, 4)
    return ImageDocument(mask, read_only=read_only)


def test_fill_holes_from_its_action_is_one_undo_step(parts):
    canvas, reg, editing, said, _ = parts
    doc = ring_document()
    canvas.set_content(np.zeros((60, 60), np.uint8), doc)
    canvas.class_value = 1
    before = doc.mask.copy()
    reg.qaction("mask.fill_holes").trigger()
    assert doc.mask[30, 30] == 1 and (doc.mask == 1).sum() > (before == 1).sum()
    assert len(doc.history) == 1
    doc.undo()
    assert np.array_equal(doc.mask, before)
    assert editing.run_op("fill_holes")                     # after the undo: a change again
    assert not editing.run_op("fill_holes")                 # nothing left to fill
    assert said["messages"][-1] == "Nothing to change" and said["errors"] == []


def test_a_read_only_mask_is_refused_with_the_reason(parts):
    canvas, reg, editing, said, _ = parts
    doc = ring_document(read_only="Read-only: the project is on a read-only disk")
    canvas.set_content(np.zeros((60, 60), np.uint8), doc)
    before = doc.mask.copy()
    assert not editing.run_op("clear_class")
    assert np.array_equal(doc.mask, before)
    assert said["errors"] == [("This mask is read-only", "Read-only: the project is on a read-only disk")]


def test_tool_actions_set_the_canvas_tool_and_its_hint(parts):
    canvas, reg, editing, _, _ = parts
    reg.qaction("tools.watershed").trigger()
    assert canvas.tool == "watershed" and editing.tool_actions["watershed"].isChecked()
    assert editing.hint_label.text().strip() == canvas.tools["watershed"].hint
    reg.qaction("tools.eraser").trigger()
    assert canvas.tool == "eraser" and not editing.tool_actions["watershed"].isChecked()
    radius = canvas.brush_radius
    reg.qaction("tools.smaller_brush").trigger()
    assert canvas.brush_radius == pytest.approx(radius / 1.25)
    assert editing.size_spin.value() == round(radius / 1.25)
    reg.qaction("tools.protect").trigger()
    assert canvas.protect_others


def test_copy_previous_mask_flushes_then_reads_the_saved_mask(parts, tmp_path):
    canvas, reg, editing, said, image = parts
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(raw / name), np.zeros((40, 50), np.uint8))
    project = Project.from_folder(raw, tmp_path / "proj")
    first, second = project.images
    saved = np.full((40, 50), 255, np.uint8)
    saved[5:15, 10:30] = 1
    project.masks.write(first.id, saved)
    doc = ImageDocument(np.full((40, 50), 255, np.uint8))
    canvas.set_content(np.zeros((40, 50), np.uint8), doc)

    image["project"], image["entry"] = project, first
    assert not editing.copy_previous_mask()
    assert said["errors"][-1] == ("No previous image", f"{first.display_name} is the first image")

    image["entry"] = second
    reg.qaction("mask.copy_previous").trigger()
    assert np.array_equal(doc.mask, saved) and len(doc.history) == 1
    assert said["flushes"] == 1                 # pending strokes reach the disk before the read
    assert not editing.copy_previous_mask()
    assert said["messages"][-1] == "The masks are the same already"
