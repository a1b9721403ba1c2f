"""A CT series in the window: one list row, a slice bar, Up/Down and Shift+wheel change slice,
painting on two slices lands on those slices, and all of it is there after reopening."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from segstudio.core.classes import LabelClass
from segstudio.io.project import Project
from tests.io.phantom_series import make_phantom, write_ct_series


@pytest.fixture
def ct_project(tmp_path):
    ph = write_ct_series(tmp_path / "scan", make_phantom(n=12, rows=64, cols=80))
    Project.from_folder(tmp_path / "scan", tmp_path / "proj", classes=[
        LabelClass(0, "background", "#000000"), LabelClass(1, "liver", "#aa3322")])
    return tmp_path / "proj", ph


def _on_slice(qtbot, w, k):
    qtbot.waitUntil(lambda: w.current is not None and w.current.slice == k
                    and w.canvas.document is not None, timeout=10_000)


def _stroke(qtbot, w, y, x0, x1):
    canvas = w.canvas
    a, b = canvas.image_to_widget(y, x0), canvas.image_to_widget(y, x1)
    pts = [QPoint(int(a.x() + (b.x() - a.x()) * t / 8), int(a.y())) for t in range(9)]
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=pts[0])
    for p in pts[1:]:
        QTest.mouseMove(canvas, p)
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=pts[-1])


def _shift_wheel(canvas, steps: int) -> None:
    pos = QPointF(canvas.width() / 2, canvas.height() / 2)
    event = QWheelEvent(pos, canvas.mapToGlobal(pos), QPoint(0, 0), QPoint(0, 120 * steps),
                        Qt.MouseButton.NoButton, Qt.KeyboardModifier.ShiftModifier,
                        Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(canvas, event)


def test_change_slice_paint_two_slices_and_reopen(qtbot, open_window, ct_project):
    root, ph = ct_project
    w = open_window(root)
    assert w.images.list.count() == 1                     # one row for the whole series
    row = w.images.list.item(0).text()
    assert "0/12 slices labelled" in row and "CT" in row
    _on_slice(qtbot, w, 6)                                 # opens at the middle slice
    assert w.slices.isVisible() and "Slice 7 / 12" in w.slices.label.text()
    w.set_brush_radius(10)                                 # brush size in mm: spacing 0.7, 0.9
    mm_spin = w.editing.mm_spin
    assert w.size_spin.text() == "size 10 px" and mm_spin.isVisible()
    assert mm_spin.text() == "= 8.0 mm"
    mm_spin.selectAll()                                    # set in mm: typed as a user does
    QTest.keyClicks(mm_spin, "4")
    QTest.keyClick(mm_spin, Qt.Key.Key_Return)
    assert w.canvas.brush_radius == pytest.approx(4 / 0.8) and w.size_spin.value() == 5
    # the slice shown holds that slice's HU
    assert np.allclose(w.canvas.image_data, ph.hu[6], atol=1.0)
    # the status bar: position in patient millimetres, the value in HU
    w.canvas.hovered.emit(10, 20)
    mm = ph.affine_lps() @ np.array([20, 10, 6, 1.0])
    assert f"({mm[0]:.1f}, {mm[1]:.1f}, {mm[2]:.1f}) mm" in w.position_label.text()
    assert w.value_label.text() == f"{ph.hu[6, 10, 20]:.4g} HU"
    w.canvas.zoom_by(2.0)                                  # zoomed in on a part
    zoom, offset, contrast = w.canvas.zoom, w.canvas.offset, w.canvas.display_range
    w.canvas.setFocus()
    QTest.keyClick(w.canvas, Qt.Key.Key_Down)
    _on_slice(qtbot, w, 7)
    # the next slice keeps the view and the contrast (no re-fit, no flicker)
    assert (w.canvas.zoom, w.canvas.offset) == (zoom, offset)
    assert w.canvas.display_range == contrast
    w.class_panel.select_id(1)
    w.set_brush_radius(3)
    _stroke(qtbot, w, 30, 10, 60)
    QTest.keyClick(w.canvas, Qt.Key.Key_Up)
    QTest.keyClick(w.canvas, Qt.Key.Key_Up)
    _on_slice(qtbot, w, 5)
    _shift_wheel(w.canvas, 1)                              # wheel up: the previous slice
    _on_slice(qtbot, w, 4)
    _stroke(qtbot, w, 20, 5, 40)
    # the bar lists the labelled slices; the row counts them
    QTest.keyClick(w.canvas, Qt.Key.Key_Down)
    _on_slice(qtbot, w, 5)
    qtbot.waitUntil(lambda: "2/12 slices labelled" in w.images.list.item(0).text(),
                    timeout=10_000)
    assert "labelled: 5, 8" in w.slices.label.text()
    w.saver.flush()
    w.close()

    again = Project.open(root)
    slices = again.slices_of(next(iter(again.series)))
    labelled = [e.slice for e in slices if again.masks.has_mask(e.id)]
    assert labelled == [4, 7]
    m7 = again.load_mask(slices[7], (64, 80))
    m4 = again.load_mask(slices[4], (64, 80))
    assert (m7[30, 15:55] == 1).all() and (m7[20] == 255).all()
    assert (m4[20, 10:35] == 1).all() and (m4[30] == 255).all()


def test_up_down_pan_in_a_plain_image(qtbot, open_window, sample_copy):
    w = open_window(sample_copy, size=(1000, 700))
    assert not w.slices.isVisible() and not w.canvas.in_volume
    assert not w.editing.mm_spin.isVisible() and w.size_spin.text().endswith(" px") is False
    before, y_before = w.current.id, w.canvas.offset.y()
    w.canvas.setFocus()
    QTest.keyClick(w.canvas, Qt.Key.Key_Down)
    assert w.current.id == before and w.canvas.offset.y() < y_before     # panned, same image


def test_interpolate_undo_redo_export_and_reopen(qtbot, open_window, ct_project, tmp_path,
                                                 export_in_window):
    import nibabel as nib

    root, ph = ct_project
    w = open_window(root)
    _on_slice(qtbot, w, 6)
    w.class_panel.select_id(1)
    w.set_brush_radius(4)
    w.canvas.setFocus()
    for _ in range(4):                                   # key slice 2: a short bar
        QTest.keyClick(w.canvas, Qt.Key.Key_Up)
    _on_slice(qtbot, w, 2)
    _stroke(qtbot, w, 30, 20, 40)
    for _ in range(6):                                   # key slice 8: a long bar
        QTest.keyClick(w.canvas, Qt.Key.Key_Down)
    _on_slice(qtbot, w, 8)
    _stroke(qtbot, w, 30, 10, 70)
    QTest.keyClick(w, Qt.Key.Key_I)                      # Volume > Interpolate: a proposal
    qtbot.waitUntil(lambda: w.volume_edits.pending is not None, timeout=20_000)
    project = Project.open(root)
    slices = project.slices_of(next(iter(project.series)))
    assert not project.masks.has_mask(slices[5].id)      # nothing written yet
    assert w.canvas.proposal is None                     # a key slice: the fill is elsewhere
    for _ in range(3):
        QTest.keyClick(w.canvas, Qt.Key.Key_Up)
    _on_slice(qtbot, w, 5)
    qtbot.waitUntil(lambda: w.canvas.proposal is not None, timeout=5_000)
    shown = w.canvas.proposal.region
    assert shown[30].sum() > 25 and not shown[5].any()   # the bar's fill, in yellow
    assert (w.canvas.document.mask == 255).all()
    QTest.keyClick(w.canvas, Qt.Key.Key_Escape)          # dropped: nothing changes
    assert w.volume_edits.pending is None and w.canvas.proposal is None
    QTest.keyClick(w, Qt.Key.Key_I)                      # proposed again, from slice 5
    qtbot.waitUntil(lambda: w.canvas.proposal is not None, timeout=20_000)
    QTest.keyClick(w.canvas, Qt.Key.Key_Return)          # applied, one step
    qtbot.waitUntil(lambda: w.volume_edits.busy is None and
                    "7/12 slices labelled" in w.images.list.item(0).text(), timeout=20_000)
    assert w.volume_edits.pending is None and w.canvas.proposal is None
    assert (w.canvas.document.mask[30] == 1).sum() > 25
    for _ in range(3):
        QTest.keyClick(w.canvas, Qt.Key.Key_Down)
    _on_slice(qtbot, w, 8)
    assert w.saver.flush(10)                             # slice 5's fill went by its journal
    mid = Project.open(root).load_mask(slices[5], (64, 80))
    # midway the bar is between the two: longer than slice 2's, shorter than slice 8's
    width = int((mid[30] == 1).sum())
    assert 25 < width < 62, width
    assert (mid[5] == 255).all()                         # far from both bars: unlabeled
    # one undo step on the key slice open undoes every filled slice
    w.undo_action.trigger()
    qtbot.waitUntil(lambda: w.volume_edits.busy is None, timeout=10_000)
    qtbot.waitUntil(lambda: "2/12 slices labelled" in w.images.list.item(0).text(),
                    timeout=10_000)
    assert (Project.open(root).load_mask(slices[5], (64, 80)) == 255).all()
    assert (w.canvas.document.mask[30, 15:65] == 1).all()      # the painted bar stays
    w.redo_action.trigger()
    qtbot.waitUntil(lambda: w.volume_edits.busy is None and
                    "7/12 slices labelled" in w.images.list.item(0).text(), timeout=10_000)
    # a filled slice opens with the fill, and undo there undoes the whole step too
    QTest.keyClick(w.canvas, Qt.Key.Key_Up)
    _on_slice(qtbot, w, 7)
    assert (w.canvas.document.mask[30] == 1).sum() > 30
    w.undo_action.trigger()
    qtbot.waitUntil(lambda: w.volume_edits.busy is None and
                    "2/12 slices labelled" in w.images.list.item(0).text(), timeout=10_000)
    assert (w.canvas.document.mask == 255).all()
    w.redo_action.trigger()
    qtbot.waitUntil(lambda: w.volume_edits.busy is None and
                    "7/12 slices labelled" in w.images.list.item(0).text(), timeout=10_000)
    result = export_in_window(w, tmp_path / "out", "nifti")
    assert result is not None
    w.saver.flush()
    w.close()

    again = Project.open(root)
    labelled = [e.slice for e in again.slices_of(next(iter(again.series)))
                if again.masks.has_mask(e.id)]
    assert labelled == [2, 3, 4, 5, 6, 7, 8]
    vol = next((tmp_path / "out").rglob("masks/*/*.nii.gz"))
    data = np.asarray(nib.load(str(vol)).dataobj)
    assert data.shape == (80, 64, 12)
    assert [k for k in range(12) if (data[:, :, k] == 1).any()] == [2, 3, 4, 5, 6, 7, 8]


def test_the_brush_paints_only_within_the_intensity_range(qtbot, open_window, ct_project):
    root, ph = ct_project
    w = open_window(root)
    _on_slice(qtbot, w, 6)
    panel = w.display_panel
    panel.paint_low.setValue(-500)
    panel.paint_high.setValue(200)
    panel.paint_only.click()       # the Display dock may be tabbed away: the button itself
    assert w.canvas.paint_range == (-500.0, 200.0)
    w.class_panel.select_id(1)
    w.set_brush_radius(2)
    _stroke(qtbot, w, 32, 5, 75)                 # across the phantom: air, tissue, air
    painted = w.canvas.document.mask[31:34] == 1
    inside = (ph.hu[6, 31:34] >= -500) & (ph.hu[6, 31:34] <= 200)
    assert painted.any() and not (painted & ~inside).any()     # never on air
    # unchecked: the brush paints everything again
    panel.paint_only.click()       # the Display dock may be tabbed away: the button itself
    assert w.canvas.paint_range is None
    _stroke(qtbot, w, 50, 5, 20)
    assert (w.canvas.document.mask[50, 8:18] == 1).all()


def test_predict_volume_predicts_every_slice_in_one_job(qtbot, open_window, sample_copy,
                                                        tmp_path):
    pytest.importorskip("torch")
    write_ct_series(tmp_path / "scan", make_phantom(n=5, rows=48, cols=56))
    project = Project.open(sample_copy)
    project.add_images(sorted((tmp_path / "scan").iterdir()))
    project.save()
    w = open_window(sample_copy)
    loop = w.model_loop
    assert loop.active_run is not None                     # the sample's starter model
    series = next(iter(w.project.series))
    slices = w.project.slices_of(series)
    w.show_image(slices[1].id)
    _on_slice(qtbot, w, 1)
    assert not any(w.project.entry(e.id).predicted for e in slices)
    w.action_registry.qaction("model.predict_volume").trigger()
    qtbot.waitUntil(lambda: all(w.project.entry(e.id).predicted for e in slices),
                    timeout=120_000)
    assert loop.prediction is not None and loop.prediction.image_id == slices[1].id
