"""The window's parts without a window: ImageOpener and DisplayControl on a bare MaskCanvas,
with a real project, a real ProjectSaver and a JobRunner of their own."""

import threading
from pathlib import Path

import numpy as np
import pytest

from segstudio.core.display import auto_range
from segstudio.core.document import ImageDocument
from segstudio.core.history import History
from segstudio.io.image_base import ImageInfo, LoadedImage
from segstudio.io.project import Project, labelled_fraction
from segstudio.ui.canvas import MaskCanvas
from segstudio.ui.display_control import DisplayControl
from segstudio.ui.image_opener import ImageOpener
from segstudio.ui.job_runner import JobRunner
from segstudio.ui.panels.display_panel import AUTO, HEADER, DisplayPanel
from segstudio.ui.saving import ProjectSaver
from segstudio.workers.job import Job


@pytest.fixture
def opened(qtbot, sample_copy):
    """An opener over the sample project, with what it said collected."""
    said = {"errors": [], "messages": [], "edited": [], "history": [], "entries": []}
    project = Project.open(sample_copy)
    saver = ProjectSaver(lambda title, message, details="": said["errors"].append(message),
                         autosave_delay=0.01)
    saver.attach(project)
    runner = JobRunner(lambda title, message, details="": said["errors"].append(message))
    canvas = MaskCanvas()
    qtbot.addWidget(canvas)
    canvas.resize(300, 300)
    histories = {}                   # the window passes Editing.history_for
    opener = ImageOpener(canvas, saver, project=lambda: project, start_job=runner.start,
                         history_for=lambda image_id: histories.setdefault(image_id, History()),
                         report_error=lambda title, message, details="": said["errors"].append(message),
                         show_message=lambda text, ms: said["messages"].append(text))
    opener.edited.connect(said["edited"].append)
    opener.history_changed.connect(lambda u, r: said["history"].append((u, r)))
    opener.entry_changed.connect(said["entries"].append)
    yield project, saver, runner, canvas, opener, said
    saver.detach()
    qtbot.waitUntil(lambda: not runner.jobs, timeout=10_000)


def _open(qtbot, opener, image_id):
    with qtbot.waitSignal(opener.image_shown, timeout=10_000) as shown:
        opener.show_image(image_id)
    assert shown.args == [image_id]


def test_an_edit_is_one_signal_and_is_on_disk_after_leaving_the_image(qtbot, opened, sample_copy):
    project, saver, runner, canvas, opener, said = opened
    first, second = (e.id for e in project.images[:2])
    _open(qtbot, opener, first)
    doc = canvas.document
    assert opener.current.id == first and doc.shape == opener.loaded.data.shape[:2]
    assert said["history"][-1] == (False, False)
    new = doc.mask.copy()
    corner = new[:20, :20]
    corner[...] = 255 if (corner != 255).any() else 1    # the labelled fraction moves either way
    doc.apply(new, "square")
    assert said["edited"] == [first]                      # one change, one signal
    assert said["history"][-1] == (True, False)
    _open(qtbot, opener, second)                          # leaving folds the journal into the PNG
    assert [e.id for e in said["entries"]] == [first]     # its label status moved, once
    assert said["entries"][0].labelled == pytest.approx(labelled_fraction(new))
    # project.json is rewritten once the user pauses, not within the slice change itself
    stored = lambda: Project.open(sample_copy).entry(first).labelled
    assert stored() != pytest.approx(labelled_fraction(new)) and saver.manifest_dirty
    qtbot.waitUntil(lambda: not saver.manifest_dirty, timeout=5_000)
    assert stored() == pytest.approx(labelled_fraction(new))
    assert saver.flush(10)
    again = Project.open(sample_copy)
    assert np.array_equal(again.load_mask(again.entry(first), new.shape), new)
    _open(qtbot, opener, first)                           # and it opens with the change
    assert np.array_equal(canvas.document.mask, new)
    opener.undo()                                         # the image kept its history
    assert said["history"][-1] == (False, True)
    assert said["errors"] == []


def test_an_image_asked_for_while_masks_are_rewritten_opens_afterwards(qtbot, opened):
    project, saver, runner, canvas, opener, said = opened
    ids = [e.id for e in project.images[:3]]
    _open(qtbot, opener, ids[0])
    release = threading.Event()
    job = Job(lambda *, on_progress=None, cancel=None: release.wait(10), name="rewriting")
    opener.open_after(job, "Masks are being rewritten; the image opens afterwards")
    runner.start(job)
    opener.show_image(ids[1])
    opener.show_image(ids[2])                             # the last one asked for wins
    assert said["messages"][-1] == "Masks are being rewritten; the image opens afterwards"
    assert opener.current.id == ids[0] and not canvas.loading
    with qtbot.waitSignal(opener.image_shown, timeout=10_000) as shown:
        release.set()
    assert shown.args == [ids[2]] and opener.blocking_job is None


def _grey16(window=None) -> LoadedImage:
    data = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 7 + 30000)
    info = ImageInfo(Path("a.png"), None, 64, 64, 1, "uint16", "raster", window=window)
    return LoadedImage(info, data)


def test_display_control_stretches_grey_data_and_says_when_a_header_has_no_window(qtbot):
    canvas, panel = MaskCanvas(), DisplayPanel()
    qtbot.addWidget(canvas)
    qtbot.addWidget(panel)
    loaded, messages = _grey16(), []
    display = DisplayControl(canvas, panel, loaded=lambda: loaded,
                             show_message=lambda text, ms: messages.append(text))
    display.show(loaded, ImageDocument(np.full((64, 64), 255, np.uint8)))
    assert canvas.display_range == auto_range(loaded.data)
    assert panel.preset.currentText() == AUTO
    assert panel.low.value() == pytest.approx(canvas.display_range.low, abs=0.1)
    display.apply_preset("CT lung")
    assert canvas.display_range.low == -1350.0 and panel.low.value() == -1350.0
    display.apply_preset(HEADER)
    assert messages == ["This file's header has no window; using auto contrast"]
    assert canvas.display_range == auto_range(loaded.data)
    windowed = _grey16(window=(31000.0, 2000.0))          # the next image keeps the user's preset
    display.show(windowed, ImageDocument(np.full((64, 64), 255, np.uint8)))
    assert (canvas.display_range.low, canvas.display_range.high) == (30000.0, 32000.0)
