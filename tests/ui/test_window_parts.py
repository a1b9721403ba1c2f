"""FileMenu and ClassControl without a window: a real project, a JobRunner and plain callables."""

import shutil

import numpy as np
import pytest

from segstudio.core.classes import UNLABELED
from segstudio.core.document import ImageDocument
from segstudio.io.project import Project
from segstudio.ui.canvas import MaskCanvas
from segstudio.ui.class_control import ClassControl
from segstudio.ui.file_menu import FileMenu
from segstudio.ui.job_runner import JobRunner
from segstudio.ui.panels.class_panel import ClassPanel
from segstudio.ui.saving import ProjectSaver


@pytest.fixture
def said():
    return {"errors": [], "messages": [], "opened": [], "joined": [], "waits": []}


def _report(said):
    return lambda title, message, details="": said["errors"].append(f"{title}: {message}")


@pytest.fixture
def files(qtbot, said, sample_copy):
    project = {"now": Project.open(sample_copy)}
    canvas = MaskCanvas()
    qtbot.addWidget(canvas)
    runner = JobRunner(_report(said))
    saver = ProjectSaver(_report(said))

    def open_project(p):
        said["opened"].append(p)
        project["now"] = p

    menu = FileMenu(canvas, project=lambda: project["now"], open_project=open_project,
                    report_error=_report(said), start_job=runner.start, saver=saver, canvas=canvas,
                    show_message=lambda text, ms: said["messages"].append(text),
                    images_joined=said["joined"].append)
    yield menu, project, runner
    qtbot.waitUntil(lambda: not runner.jobs, timeout=10_000)


def test_dropped_files_join_the_project_and_a_dropped_project_opens(qtbot, files, said, sample_copy,
                                                                    tmp_path):
    menu, project, runner = files
    folder = tmp_path / "dropped"
    folder.mkdir()
    shutil.copy(sample_copy / "images" / "nuclei_03.png", folder / "new.png")
    (folder / "notes.txt").write_text("not an image")
    menu.drop([folder])                       # a folder of files: only the images are added
    assert runner.jobs and said["joined"] == []     # the scan runs on a worker
    qtbot.waitUntil(lambda: bool(said["joined"]), timeout=10_000)
    assert [e.display_name for e in said["joined"][0]] == ["new.png"]
    assert len(Project.open(sample_copy).images) == 15 and said["errors"] == []
    other = tmp_path / "other"
    shutil.copytree(sample_copy, other)
    menu.drop([other / "project.json"])       # a project (or its project.json) opens instead
    assert [p.root for p in said["opened"]] == [other.resolve()]


def test_a_folder_that_is_no_project_is_refused_with_the_reason(files, said, tmp_path):
    menu, _, _ = files
    assert not menu.open_project_path(tmp_path / "nothing here")
    assert said["opened"] == [] and said["errors"][0].startswith("Cannot open project: ")
    assert "nothing here" in said["errors"][0]


def test_deleting_a_class_clears_it_on_screen_in_one_step_and_in_every_saved_mask(
        qtbot, said, sample_copy):
    project = Project.open(sample_copy)
    first = project.images[0]
    mask = project.load_mask(first, project.read_image(first).data.shape[:2])
    assert (mask == 1).any()

    def saved_masks(p):
        return {e.id: p.load_mask(e, p.read_image(e).data.shape[:2]) for e in p.images[1:]}
    with_class = [i for i, m in saved_masks(project).items() if (m == 1).any()]
    assert len(with_class) > 1
    canvas = MaskCanvas()
    qtbot.addWidget(canvas)
    doc = ImageDocument(mask)
    canvas.set_content(np.zeros(mask.shape, np.uint8), doc)
    runner = JobRunner(_report(said))
    histories_forgotten = []
    control = ClassControl(ClassPanel(), canvas, project=lambda: project, current=lambda: first,
                           start_job=runner.start,
                           open_after=lambda job, why: said["waits"].append(why),
                           forget_histories=lambda keep=None: histories_forgotten.append(keep),
                           report_error=_report(said),
                           show_message=lambda text, ms: said["messages"].append(text))
    control.delete(1)
    assert not (doc.mask == 1).any() and len(doc.history) == 1     # on screen: one undo step
    assert said["waits"] == ["Removing the class from every mask; the image opens when that is done"]
    qtbot.waitUntil(lambda: not runner.jobs, timeout=20_000)
    assert histories_forgotten == [first.id] and said["errors"] == []
    assert said["messages"][-1] == f"Class removed from {len(with_class)} saved mask(s)"
    after = saved_masks(Project.open(sample_copy))
    assert not any((m == 1).any() for m in after.values())
    assert all((after[i] == UNLABELED).any() for i in with_class)    # became unlabeled
    doc.undo()
    assert np.array_equal(doc.mask, mask)
