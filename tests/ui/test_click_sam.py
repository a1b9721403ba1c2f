"""SAM-style model files in the window: added through Model > Add SAM Model File…, embedded on a
worker, clicked with real mouse events, pre-computed for the next images. The ONNX pair is the
small randomly initialised one tests/ml/sam_models.py exports (its decoder answers a disk
around each positive click, so the geometry can be checked)."""

from __future__ import annotations

import re
import threading

import cv2
import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QFileDialog

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from segstudio.io.project import Project  # noqa: E402
from segstudio.ml.sam_onnx import SamOnnxBackend  # noqa: E402
from segstudio.ui.click_models import OURS, ClickModels, image_key, sam_paths  # noqa: E402
from tests.ml.sam_models import export_pair  # noqa: E402

N_IMAGES = 5


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return export_pair(tmp_path_factory.mktemp("sam-pair"), "sam")


@pytest.fixture
def win(qtbot, tmp_path, open_window):
    raw = tmp_path / "raw"
    raw.mkdir()
    rng = np.random.default_rng(0)
    for i in range(N_IMAGES):
        img = rng.integers(0, 60, (120, 160, 3), dtype=np.uint8)
        cv2.circle(img, (80, 60), 12 + i, (200, 200, 200), -1)
        cv2.imwrite(str(raw / f"img{i}.png"), img)
    Project.from_folder(raw, tmp_path / "proj")
    w = open_window(tmp_path / "proj", size=(1100, 700))
    w.class_panel.select_id(1)
    QTest.keyClick(w, Qt.Key.Key_K)
    assert w.canvas.tool == "click"
    return w


def models_of(w) -> ClickModels:
    return w.canvas.tools["click"].models


def pick_files(monkeypatch, *paths):
    """The user's choice in the file dialog (the only part not driven by the window itself)."""
    monkeypatch.setattr(QFileDialog, "getOpenFileNames",
                        staticmethod(lambda *a, **k: ([str(p) for p in paths], "")))


def add_model(qtbot, w, monkeypatch, pair):
    pick_files(monkeypatch, *pair)
    w.action_registry.qaction("model.add_sam_files").trigger()
    models = models_of(w)
    qtbot.waitUntil(lambda: models.backend is not None, timeout=20_000)
    return models


def at(w, y, x) -> QPoint:
    p = w.canvas.image_to_widget(y + 0.5, x + 0.5)
    return QPoint(int(round(p.x())), int(round(p.y())))


def test_a_sam_file_pair_answers_clicks_and_enter_commits_one_step(qtbot, win, pair,
                                                                   monkeypatch):
    w = win
    threads = []
    real_prepare = SamOnnxBackend.prepare

    def spy(self, *args, **kwargs):          # the real prepare, noting where it ran
        threads.append(threading.current_thread())
        return real_prepare(self, *args, **kwargs)

    monkeypatch.setattr(SamOnnxBackend, "prepare", spy)
    action = w.action_registry.qaction("model.add_sam_files")
    model_menu = next(a.menu() for a in w.menuBar().actions() if a.text() == "&Model")
    assert action in model_menu.actions()
    models = add_model(qtbot, w, monkeypatch, pair)
    tool = w.canvas.tools["click"]
    assert tool.backend is models.backend and models.choice == str(pair[0])
    embedded = r"image embedded \(embedding ~(<0\.1|\d+\.\d) s per image\)"
    # the tool bar says so once the embedding job has finished (its last signal)
    qtbot.waitUntil(lambda: models.current_image_id() in models.embedded
                    and bool(re.search(embedded, w.click_model_bar.status.text())),
                    timeout=20_000)
    assert threads and all(t is not threading.main_thread() for t in threads)
    status = w.click_model_bar.status.text()
    assert "sam.encoder.onnx + sam.decoder.onnx" in status
    assert "licence: not stated in file" in status
    assert w.canvas.toolTip().startswith("Click to segment: SAM file: sam · licence: not stated")
    assert w.click_model_bar.combo.currentText() == "SAM file: sam"
    assert [w.click_model_bar.combo.itemData(i) for i in range(2)] == [OURS, str(pair[0])]

    doc = w.canvas.document
    qtbot.mouseClick(w.canvas, Qt.MouseButton.LeftButton, pos=at(w, 60, 80))
    qtbot.waitUntil(lambda: w.canvas.proposal is not None, timeout=10_000)
    assert (doc.mask == 255).all()                              # nothing written before Enter
    QTest.keyClick(w.canvas, Qt.Key.Key_Return)
    assert w.canvas.proposal is None
    ys, xs = np.nonzero(doc.mask == 1)
    assert doc.mask[60, 80] == 1 and 50 < len(ys) < 2000        # a disk around the click
    assert abs(ys.mean() - 60.5) < 2 and abs(xs.mean() - 80.5) < 2
    assert set(np.unique(doc.mask)) == {1, 255}
    w.undo_action.trigger()
    assert (doc.mask == 255).all()                              # one step took it all back

    # remembered in the app settings: a new session lists it and has it chosen
    again = ClickModels(tool, start_job=lambda job, **k: job, report_error=print)
    assert again.choice == str(pair[0]) and str(pair[0]) in again.pairs


def test_a_click_during_the_embedding_waits_for_it_not_the_window(qtbot, win, pair,
                                                                 monkeypatch):
    w = win
    gate = threading.Event()
    real_prepare = SamOnnxBackend.prepare

    def held(self, *args, **kwargs):        # the real prepare, started when the test says
        gate.wait(20)
        return real_prepare(self, *args, **kwargs)

    monkeypatch.setattr(SamOnnxBackend, "prepare", held)
    pick_files(monkeypatch, *pair)
    w.action_registry.qaction("model.add_sam_files").trigger()
    models = models_of(w)
    qtbot.waitUntil(models.embedding_running, timeout=20_000)
    qtbot.mouseClick(w.canvas, Qt.MouseButton.LeftButton, pos=at(w, 60, 80))
    tool = w.canvas.tools["click"]
    assert tool.job is None or tool.job.token.cancelled           # waits for the embedding
    assert "embedding this image…" in w.statusBar().currentMessage()
    assert "embedding this image…" in w.click_model_bar.status.text()
    QTest.keyClick(w.canvas, Qt.Key.Key_M)      # the window still answers keys meanwhile
    assert not w.mask_action.isChecked()
    QTest.keyClick(w.canvas, Qt.Key.Key_M)
    assert w.mask_action.isChecked() and models.embedding_running()
    gate.set()
    qtbot.waitUntil(lambda: w.canvas.proposal is not None, timeout=20_000)
    assert tool._mask[60, 80] and w.current.id == "img0"
    assert models.backend.tile_ready(models.current_image_id(), w.canvas.image_data.shape,
                                     models.backend.tiling(120, 160).at(0, 0))


def test_a_corrupt_onnx_file_gives_one_sentence_and_the_window_goes_on(qtbot, win, pair,
                                                                       monkeypatch, tmp_path):
    w = win
    bad = tmp_path / "broken.encoder.onnx"
    bad.write_bytes(b"\x08\x07 not really a protobuf, half a download")
    pick_files(monkeypatch, bad, pair[1])
    n = len(w.errors)
    w.action_registry.qaction("model.add_sam_files").trigger()
    qtbot.waitUntil(lambda: len(w.errors) > n, timeout=20_000)
    message = w.errors[-1]
    assert "broken.encoder.onnx" in message and "not an ONNX model" in message
    assert "Traceback" not in message and "\n" not in message
    models = models_of(w)
    assert models.choice == OURS and models.backend is None and not models.pairs
    assert w.click_model_bar.combo.count() == 1
    # the window still answers: the next image opens
    w.step_image(1)
    qtbot.waitUntil(lambda: w.current.id == "img1" and w.canvas.document is not None,
                    timeout=10_000)


def test_switching_images_pre_computes_the_next_ones(qtbot, win, pair, monkeypatch):
    w = win
    models = add_model(qtbot, w, monkeypatch, pair)
    backend = models.backend
    ids = w.images.visible_ids()
    assert ids[0] == w.current.id
    ids = [image_key(w.project, i) for i in ids]
    qtbot.waitUntil(lambda: all(backend.is_prepared(i) for i in ids[1:3]), timeout=20_000)
    assert not backend.is_prepared(ids[3])                      # only two ahead
    runs = backend.encoder_runs
    w.step_image(1)
    qtbot.waitUntil(lambda: models.current_image_id() == ids[1], timeout=10_000)
    qtbot.waitUntil(lambda: backend.is_prepared(ids[3]), timeout=20_000)
    assert backend.encoder_runs == runs + 1     # the shown image came from the pre-compute
    assert ids[1] in models.embedded

    # choosing ours stops the SAM work and ours answers from then on
    w.step_image(1)
    w.click_model_bar.combo.activated.emit(0)
    assert models.choice == OURS and models.precomputing is None
    assert models.embedding is None and w.canvas.tools["click"].backend is None
    assert w.click_model_bar.combo.currentIndex() == 0


def test_a_folder_holding_the_pair_is_accepted(pair, tmp_path):
    enc, dec = pair
    assert sam_paths([enc.parent]) == [enc, dec]
    unnamed = tmp_path / "blobs"                  # osam keeps its files under hashes
    unnamed.mkdir()
    (unnamed / "sha256-aa").write_bytes(dec.read_bytes())
    (unnamed / "sha256-bb").write_bytes(enc.read_bytes())
    for p in unnamed.iterdir():
        p.rename(p.with_suffix(".onnx"))
    from segstudio.ui.click_models import open_model

    backend = open_model([unnamed / "sha256-aa.onnx", unnamed / "sha256-bb.onnx"])
    assert backend.encoder_path.name == "sha256-bb.onnx"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="holds 0 .onnx file"):
        sam_paths([empty])


def test_the_chosen_model_is_opened_again_in_the_next_session(qtbot, win, pair, monkeypatch,
                                                              open_window):
    models = add_model(qtbot, win, monkeypatch, pair)
    root = win.project.root
    win.close()
    assert models.choice == str(pair[0])
    w = open_window(root)                          # same settings folder: the next session
    again = models_of(w)
    qtbot.waitUntil(lambda: again.backend is not None, timeout=20_000)
    assert again.backend.encoder_path == pair[0]
    assert w.click_model_bar.combo.currentData() == str(pair[0])
    qtbot.waitUntil(lambda: again.current_image_id() in again.embedded, timeout=20_000)
    assert again.backend.encoder_runs == 0          # the disk cache had img0 from before


def test_a_large_image_embeds_the_tiles_in_view_and_a_click_there_waits_for_none(
        qtbot, tmp_path, pair, monkeypatch, open_window):
    raw = tmp_path / "big"
    raw.mkdir()
    img = np.random.default_rng(0).integers(0, 60, (2300, 2300), dtype=np.uint8)
    cv2.imwrite(str(raw / "big.png"), img)
    Project.from_folder(raw, tmp_path / "proj")
    w = open_window(tmp_path / "proj", size=(1100, 700))
    w.editing.set_tool("click")
    w.canvas.actual_size()
    w.canvas.center_on(1500, 1500)
    models = add_model(qtbot, w, monkeypatch, pair)
    backend = models.backend
    tool = w.canvas.tools["click"]
    region = tool.canvas_region()
    tiles = backend.tiling(2300, 2300).overlapping(region)
    assert 1 <= len(tiles) <= 4 and len(tiles) < 9            # 3 x 3 tiles in all
    qtbot.waitUntil(lambda: backend.encoder_runs == len(tiles) and models.embedding is None,
                    timeout=20_000)
    assert all(backend.tile_ready(models.current_image_id(), img.shape, t) for t in tiles)
    qtbot.mouseClick(w.canvas, Qt.MouseButton.LeftButton, pos=at(w, 1500, 1500))
    qtbot.waitUntil(lambda: w.canvas.proposal is not None, timeout=10_000)
    assert tool._mask[1500, 1500] and backend.encoder_runs == len(tiles)
