"""The model half of the window: train, predict, accept, retrain, measure, label next.

Owns the Training, Prediction and Metrics panels and the Model menu; every piece of work is a
Job on the pool (torch loads with the first of them, never at start-up).
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

from PySide6.QtCore import QTimer, Qt
from PySide6.QtWidgets import QMessageBox

from segstudio.core.jobs import Progress
from segstudio.io.bundled import starter_models
from segstudio.io.project import Project
# no torch in ml.cards (tests/test_layers.py checks the window starts without it): runs are
# listed, and scores worded, long before any model is loaded
from segstudio.ml.cards import describe_score, list_run_cards
from segstudio.ml.config import TrainConfig, check_config     # torch-free: checked on Train
from segstudio.ui.panels.metrics_panel import MetricsPanel
from segstudio.ui.panels.predict_panel import PredictPanel
from segstudio.ui.panels.train_panel import TrainPanel
from segstudio.workers.job import Job

log = logging.getLogger(__name__)

STARTER_MODELS = starter_models()     # inside the installed package (io/bundled.py)
AUTO_PREDICT_MAX_PIXELS = 4_000_000     # bigger images are predicted on request only
WARM_UP_DELAY_MS = 1500


def _train_job(project_root: Path, cfg: TrainConfig, init_from: Path | None, *,
               on_progress=None, cancel=None):
    from segstudio.ml.allocator import tune_allocator
    from segstudio.ml.device import describe, pick_device
    from segstudio.ml.train import train

    tune_allocator()     # keep freed training buffers for reuse: ~1.7x on big CPU steps
    if on_progress:
        on_progress(Progress(0, 1000, f"device: {describe(pick_device(cfg.device))}"))
    return train(Project.open(project_root), cfg, init_from=init_from,
                 on_progress=on_progress, cancel=cancel)


def _warm_up_job(*, on_progress=None, cancel=None) -> None:
    """Import the training stack ahead of need.

    Its first import runs ~1 s of Python bytecode holding the GIL (torch.optim pulls in sympy);
    done while the window is idle after opening, it no longer stalls the window when the user
    presses Train.
    """
    import torch

    import segstudio.ml.train  # noqa: F401

    torch.optim.AdamW([torch.zeros(1, requires_grad=True)])


def _in_worker(module: str, name: str):
    """A job body that imports `module` on the worker thread, not the GUI's.

    The first import of torch takes ~1 s; done in a slot it would freeze the window.
    """
    def run(*args, **kwargs):
        import importlib

        return getattr(importlib.import_module(module), name)(*args, **kwargs)
    run.__name__ = name
    return run


def _doctor_job(*, on_progress=None, cancel=None) -> str:
    from segstudio.ml.device import doctor

    return doctor()


class ModelLoop:
    def __init__(self, window) -> None:
        self.w = window
        self.train_panel = TrainPanel()
        self.predict_panel = PredictPanel()
        self.metrics_panel = MetricsPanel()
        docks = [window._dock(t, p, Qt.DockWidgetArea.RightDockWidgetArea)
                 for t, p in (("Training", self.train_panel), ("Prediction", self.predict_panel),
                              ("Metrics", self.metrics_panel))]
        window.tabifyDockWidget(docks[0], docks[1])
        window.tabifyDockWidget(docks[1], docks[2])
        docks[0].raise_()
        self.docks = docks
        self.active_run: Path | None = None
        self.prediction = None            # ImagePrediction on the canvas now
        self.train_job: Job | None = None
        self._predict_generation = 0
        self._predict_job: Job | None = None
        self._warmed = False
        self._cards: dict[Path, dict] = {}       # run folder -> its card, as last listed
        self._runs_before: set[Path] = set()     # run folders when training started
        self._build_menu()
        tp, pp, mp = self.train_panel, self.predict_panel, self.metrics_panel
        tp.start_requested.connect(self.start_training)
        tp.cancel_requested.connect(self.cancel_training)
        tp.run_activated.connect(self._on_train_panel_run_activated)
        docks[0].visibilityChanged.connect(self._on_runs_dock_visibility_changed)
        pp.predict_requested.connect(self.predict_current)
        pp.predict_all_requested.connect(self.predict_all)
        pp.accept_requested.connect(self.accept)
        pp.retrain_requested.connect(self.retrain)
        pp.rank_requested.connect(self.rank)
        pp.next_requested.connect(self.label_next)
        pp.image_requested.connect(window.show_image)
        pp.view_changed.connect(window.canvas.set_view_mode)
        pp.opacity_changed.connect(window.canvas.set_prediction_opacity)
        mp.evaluate_requested.connect(self.measure)
        mp.image_requested.connect(window.show_image)
        window.image_shown.connect(self._on_window_image_shown)
        window.images.predict_requested.connect(self.predict_selected)

    def _build_menu(self) -> None:
        w = self.w
        m = w.menuBar().addMenu("&Model")
        w._action(m, "Train", self.start_training, "Ctrl+T")
        w._action(m, "Cancel Training", self.cancel_training)
        w._action(m, "Retrain from Active Run", self.retrain, "Ctrl+Shift+T")
        m.addSeparator()
        w._action(m, "Predict Image", self.predict_current, "Ctrl+P")
        w._action(m, "Predict All Images", self.predict_all)
        w._action(m, "Accept Prediction", lambda: self.accept(self.predict_panel.accept_mode.currentData()), "A")
        m.addSeparator()
        w._action(m, "Measure (Metrics)", lambda: self.measure(self.metrics_panel.split.currentData()), "Ctrl+M")
        w._action(m, "Rank Images to Label", self.rank)
        w._action(m, "Next Image to Label", self.label_next, "N")
        m.addSeparator()
        w._action(m, "Export Model…", self.export_model_dialog,
                  tip="The active run's checkpoint, model card and an ONNX file")
        w._action(m, "Device Doctor…", self.device_doctor)

    # -- runs ------------------------------------------------------------------------------
    def project_opened(self, project: Project) -> None:
        self.prediction = None
        self.train_panel.balance.setChecked(len(project.classes) > 2)
        try:
            self.refresh_runs(select_latest=True)
        except Exception as e:       # a damaged runs folder must never keep a project closed
            log.exception("listing the runs failed")
            self.w.report_error("Runs not listed", f"{project.runs_dir}: {e}")
        if not self._warmed:
            self._warmed = True
            QTimer.singleShot(WARM_UP_DELAY_MS, lambda: self.w._start_job(Job(_warm_up_job, name="warm-up")))

    def refresh_runs(self, select_latest: bool = False, dialog: bool = False) -> Path | None:
        """Re-list the runs from disk; a broken one is listed as broken and never made active.

        Returns the active run when it was deleted from disk meanwhile: it is dropped, the
        window says so (a dialog when `dialog`, else the status bar) and falls back to the
        starter model, or to no model.
        """
        project = self.w.project
        if project is None:
            return None
        cards = list_run_cards(project.runs_dir)
        self._cards = {Path(c["run_dir"]): c for c in cards}
        usable = [Path(c["run_dir"]) for c in cards if c.get("has_checkpoint") and not c.get("broken")]
        active = self.active_run
        deleted = active if active is not None and not active.exists() else None
        if deleted is not None:
            active = self._starter_for(project)
        elif select_latest or active is None or (self._is_run(active) and active not in usable):
            active = usable[0] if usable else self._starter_for(project)
        self.train_panel.set_runs(cards, active)
        self.set_active_run(active)
        if deleted is not None:
            now = f"using the starter model {active.name}" if active is not None else \
                "no active model now: train one, or pick another run"
            message = f"run {deleted.name} was deleted; {now}"
            self.train_panel.status.setText(message)
            if dialog:
                self.w.report_error("Run deleted", message)
            else:
                self.w.statusBar().showMessage(message, 10000)
        return deleted

    def _active_ready(self, dialog: bool = False) -> bool:
        """False (and the window says why) when the active run was deleted from disk."""
        if self.active_run is None or self.active_run.exists():
            return True
        self.refresh_runs(dialog=dialog)
        return False

    def _on_runs_dock_visibility_changed(self, visible: bool) -> None:
        if visible and self.w.project is not None:
            self.refresh_runs()

    def _on_train_panel_run_activated(self, run_dir: Path) -> None:
        card = self._cards.get(Path(run_dir)) or {}
        problem = card.get("broken")
        if problem is None and not Path(run_dir).exists():
            problem = "its folder was deleted"
        elif problem is None and not card.get("has_checkpoint", True):
            problem = "it has no checkpoint yet (best.pt or last.pt)"
        if problem is not None:
            message = f"run {Path(run_dir).name} cannot be used: {problem}"
            self.train_panel.status.setText(message)
            self.w.statusBar().showMessage(message, 10000)
            self.train_panel.set_active(self.active_run, emit=False)   # keep the model we had
            if not Path(run_dir).exists():
                self.refresh_runs()
            return
        self.set_active_run(run_dir)

    def _starter_for(self, project: Project) -> Path | None:
        """The bundled starter model, when its classes match the project's."""
        from segstudio.io.runs_index import starter_matches

        try:
            return starter_matches(STARTER_MODELS, [c.name for c in project.classes])
        except Exception as e:       # a damaged starter card means no starter, not no window
            log.warning("starter models in %s not usable: %s", STARTER_MODELS, e)
            return None

    def set_active_run(self, run_dir: Path | None) -> None:
        if run_dir == self.active_run:
            return
        self.active_run = run_dir
        self.train_panel.set_active(run_dir, emit=False)
        self.predict_panel.set_model_ready(run_dir is not None, run_dir.name if run_dir else "")
        self.w.canvas.set_prediction(None)
        self.prediction = None
        if run_dir is not None and self.w.current is not None:
            self._auto_predict()

    # -- training --------------------------------------------------------------------------
    def start_training(self, init_from: Path | None = None) -> None:
        w = self.w
        if w.project is None or self.train_job is not None:
            return
        if init_from is None and self.train_panel.finetune.isChecked() and not self._active_ready(True):
            return
        cfg, problem = check_config(self.train_panel.config_values())
        if cfg is None:      # said in the panel, before any job (and torch) starts
            self.train_panel.show_config_problem(problem or "these settings cannot train")
            return
        w.save_now()
        if init_from is None and self.train_panel.finetune.isChecked() and self._is_run(self.active_run):
            init_from = self.active_run
        self._runs_before = self._run_folders()
        job = Job(_train_job, w.project.root, cfg, init_from, name="Training")
        job.signals.progress.connect(self.train_panel.show_progress)
        job.signals.succeeded.connect(self._on_train_succeeded)
        job.signals.cancelled.connect(self._on_train_cancelled)
        job.signals.finished.connect(self._on_train_finished)
        self.train_job = job
        self.train_panel.set_running(True)
        self.docks[0].raise_()
        w._start_job(job, visible=True)

    def _is_run(self, run_dir: Path | None) -> bool:
        return run_dir is not None and self.w.project is not None and \
            self.w.project.runs_dir in run_dir.parents

    def _run_folders(self) -> set[Path]:
        runs_dir = self.w.project.runs_dir if self.w.project is not None else None
        try:
            return {d for d in runs_dir.iterdir() if d.is_dir()} if runs_dir else set()
        except OSError:
            return set()

    def cancel_training(self) -> None:
        if self.train_job is not None:
            self.train_job.token.cancel()

    def retrain(self) -> None:
        """Fine-tune the active run on the masks as they are now, in one click."""
        if self.w.project is None or self.train_job is not None:
            return
        if self.refresh_runs(dialog=True) is not None:      # the active run was deleted
            return
        self.start_training(init_from=self.active_run if self.active_run else None)

    def _on_train_succeeded(self, result) -> None:
        summary = describe_score(result.best_metrics)
        self.w.statusBar().showMessage(
            f"Training finished ({result.status}, {summary}). The prediction is on the image; "
            "Measure in the Metrics panel says how good it is.", 12000)
        self.train_panel.status.setText(f"Finished: {result.status}, best epoch {result.best_epoch}, {summary}")
        for warning in result.warnings:
            log.info("training: %s", warning)
        self.refresh_runs()
        self.set_active_run(result.run_dir)

    def _on_train_cancelled(self) -> None:
        new = sorted(d for d in self._run_folders() - self._runs_before
                     if any((d / c).is_file() for c in ("best.pt", "last.pt")))
        if not new:
            text = "Cancelled before the first checkpoint; nothing saved."
        else:
            kept = [c for c in ("best.pt", "last.pt") if (new[-1] / c).is_file()]
            text = f"Cancelled; run {new[-1].name} keeps {' and '.join(kept)}."
        self.train_panel.status.setText(text)
        self.w.statusBar().showMessage(f"Training {text[0].lower()}{text[1:]}", 8000)
        self.refresh_runs()

    def _on_train_finished(self) -> None:
        self.train_job = None
        self.train_panel.set_running(False)

    # -- prediction ------------------------------------------------------------------------
    def _on_window_image_shown(self, image_id: str) -> None:
        self.prediction = None
        if self.active_run is not None:
            self._auto_predict()

    def _auto_predict(self) -> None:
        loaded = self.w.loaded
        if loaded is not None and loaded.data.shape[0] * loaded.data.shape[1] <= AUTO_PREDICT_MAX_PIXELS:
            self.predict_current()

    def predict_current(self) -> None:
        w = self.w
        if self.active_run is None or w.current is None or w.project is None or not self._active_ready():
            return
        self._predict([w.current.id], name="Predicting")

    def predict_all(self) -> None:
        w = self.w
        if self.active_run is None or w.project is None or not self._active_ready():
            return
        self._predict([e.id for e in w.project.images], name="Predicting all images")

    def predict_selected(self, ids: list[str]) -> None:
        if self.w.project is not None and not self._active_ready():
            return
        if self.active_run is None or self.w.project is None:
            self.w.statusBar().showMessage("No model yet: train one first", 4000)
            return
        self._predict(list(ids), name=f"Predicting {len(ids)} image(s)")

    def _predict(self, ids: list[str], name: str) -> None:
        predict_images = _in_worker("segstudio.ml.session", "predict_images")
        self._predict_generation += 1
        if self._predict_job is not None:
            self._predict_job.token.cancel()     # only the newest request matters
        job = Job(predict_images, self.w.project.root, self.active_run, ids, name=name)
        self._predict_job = job
        job.signals.finished.connect(lambda: setattr(self, "_predict_job", None)
                                     if self._predict_job is job else None)
        job.signals.succeeded.connect(partial(self._on_predict_succeeded, self._predict_generation))
        self.w._start_job(job, visible=True)

    def _on_predict_succeeded(self, generation: int, results) -> None:
        w = self.w
        if w.project is None:
            return
        for r in results:
            entry = w.project.entry(r.image_id)
            if not entry.predicted:
                w.images.update_entry(w.project.update_entry(r.image_id, predicted=True))
        w.saver.save_manifest()
        current = next((r for r in results if w.current is not None and r.image_id == w.current.id), None)
        if current is not None and w.canvas.image_shape == current.labels.shape and \
                (generation == self._predict_generation or len(results) > 1):
            self.prediction = current
            w.canvas.set_prediction(current.labels, current.uncertainty)
        if len(results) > 1:
            w.statusBar().showMessage(f"Predicted {len(results)} images with {results[0].run_id}", 6000)

    def accept(self, mode: str) -> bool:
        """Copy the prediction into the mask as one undo step."""
        from segstudio.core.prediction import accept_prediction

        w = self.w
        doc = w.canvas.document
        if doc is None or self.prediction is None:
            w.statusBar().showMessage("No prediction to accept: predict the image first", 4000)
            return False
        if doc.read_only:
            w.report_error("This mask is read-only", doc.read_only)
            return False
        edit = accept_prediction(doc, self.prediction.labels, mode,
                                 classes=[w.canvas.class_value] if mode == "classes" else None)
        if edit is None:
            w.statusBar().showMessage("The mask already says what the prediction says", 4000)
            return False
        w._on_canvas_stroke_finished()
        w.statusBar().showMessage("Prediction accepted (Ctrl+Z undoes it); correct it, then Retrain", 6000)
        return True

    # -- metrics and ranking ---------------------------------------------------------------
    def measure(self, split: str = "val") -> None:
        measure = _in_worker("segstudio.ml.session", "measure")
        w = self.w
        if w.project is not None and not self._active_ready():
            return
        if self.active_run is None or w.project is None:
            w.statusBar().showMessage("No model to measure: train one first", 4000)
            return
        w.save_now()
        run = self.active_run
        job = Job(measure, w.project.root, run, split, name="Measuring")
        job.signals.succeeded.connect(lambda report: self._on_measure_succeeded(report, run, split))
        self.docks[2].raise_()
        w._start_job(job, visible=True)

    def _on_measure_succeeded(self, report, run: Path, split: str) -> None:
        self.metrics_panel.show_report(report, run.name, split)
        if not report.images:
            self.w.statusBar().showMessage(f"No labelled images in the {split} split to measure", 6000)

    def rank(self) -> None:
        rank = _in_worker("segstudio.ml.session", "rank")
        w = self.w
        if self.active_run is None or w.project is None or not self._active_ready():
            return
        job = Job(rank, w.project.root, self.active_run, name="Ranking images")
        job.signals.succeeded.connect(self._on_rank_succeeded)
        self.docks[1].raise_()
        w._start_job(job, visible=True)

    def _on_rank_succeeded(self, scores) -> None:
        project = self.w.project
        if project is None:
            return
        rows = [(s.image_id, project.entry(s.image_id).display_name, s.value()) for s in scores]
        self.predict_panel.set_ranking(rows)

    def label_next(self) -> None:
        ids = self.predict_panel.ranked_ids()
        current = self.w.current.id if self.w.current else None
        project = self.w.project
        for image_id in ids:
            if image_id != current and project is not None and project.entry(image_id).labelled < 1.0:
                self.w.show_image(image_id)
                return
        self.w.statusBar().showMessage("Nothing ranked yet: press 'Rank unlabeled images'", 4000)

    def export_model_dialog(self) -> None:
        from PySide6.QtWidgets import QFileDialog

        if self.w.project is not None and not self._active_ready(dialog=True):
            return
        if self.active_run is None:
            self.w.statusBar().showMessage("No model to export: train one first", 4000)
            return
        folder = QFileDialog.getExistingDirectory(self.w, "Export the model into")
        if folder:
            self.export_model(Path(folder) / f"{self.active_run.name}-export")

    def export_model(self, out: Path, onnx: bool = True) -> Job | None:
        export_run = _in_worker("segstudio.ml.export_model", "export_run")
        if self.active_run is None or self.w.project is None:
            return None
        job = Job(export_run, self.w.project.root, self.active_run, out, onnx=onnx,
                  name="Exporting the model")
        job.signals.succeeded.connect(lambda s: self.w.statusBar().showMessage(
            f"Model exported to {s['out']}" + (" (ONNX checked against torch)"
                                               if s["onnx"] and s["onnx"]["checked_with_onnxruntime"] else ""),
            12000))
        return self.w._start_job(job, visible=True)

    def device_doctor(self) -> None:
        job = Job(_doctor_job, name="Checking devices")
        job.signals.succeeded.connect(self._on_doctor_succeeded)
        self.w._start_job(job)

    def _on_doctor_succeeded(self, text: str) -> None:
        self.train_panel.show_device(text.splitlines()[0] if text else "")
        box = QMessageBox(QMessageBox.Icon.Information, "Device doctor", text,
                          QMessageBox.StandardButton.Ok, self.w)
        box.setModal(False)
        box.show()
        self._doctor_box = box
