"""The model half of the window: train, predict, accept, retrain, measure, label next.

Owns the Training, Prediction and Metrics panels and binds the Model menu's actions; every piece
of work is a Job (torch loads with the first of them, never at start-up). It talks to the rest
of the app through `ModelSeams` (a job starter, the open image, messages), not through a window,
so it is built and tested without one; `ModelLoop.for_window` wires it into the MainWindow.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from PySide6.QtCore import QTimer, Qt
from PySide6.QtWidgets import QMessageBox, QWidget

from segstudio.io.bundled import starter_models
from segstudio.io.project import Project
# no torch in ml.cards (tests/test_layers.py checks the window starts without it): runs are
# listed, and scores worded, long before any model is loaded
from segstudio.ml.cards import describe_score, list_run_cards
from segstudio.ml.config import check_config     # torch-free: checked when Train is pressed
from segstudio.ui.panels.metrics_panel import MetricsPanel
from segstudio.ui.panels.predict_panel import PredictPanel
from segstudio.ui.panels.train_panel import TrainPanel
from segstudio.ui.model_jobs import doctor_job, in_worker, train_job, warm_up_job
from segstudio.workers.job import Job

log = logging.getLogger(__name__)

STARTER_MODELS = starter_models()     # inside the installed package (io/bundled.py)
AUTO_PREDICT_MAX_PIXELS = 4_000_000     # bigger images are predicted on request only
WARM_UP_DELAY_MS = 1500


@dataclass(frozen=True)
class ModelSeams:
    """What the model loop needs from around it: no window, just these.

    `state()` is (project, current image entry, loaded image) as they are now; the others are
    the few things the loop asks of the rest of the app. `for_window` wires them to a window;
    a test passes its own (tests/ui/test_model_loop.py builds a loop with no window at all).
    """

    state: Callable[[], tuple[Any, Any, Any]]
    start_job: Callable[..., Job]                 # start_job(job, visible=False) -> job
    show_message: Callable[[str, int], None]      # a transient line (the status bar)
    report_error: Callable[..., None]             # report_error(title, message[, details])
    show_image: Callable[[str], None] = lambda _id: None
    save: Callable[[], None] = lambda: None       # cheap GUI-side part: label status, manifest
    # fn -> fn that first waits, on its worker, until every stroke is on disk (jobs read masks)
    after_saving: Callable[[Callable], Callable] = lambda fn: fn
    mask_edited: Callable[[], None] = lambda: None          # after "accept": one edit done
    entry_changed: Callable[[Any], None] = lambda _e: None  # an image's entry (predicted)
    save_manifest: Callable[[], None] = lambda: None
    bind: Callable[[str, Callable], Any] | None = None     # action id -> slot (the registry)
    parent: QWidget | None = None                 # for the loop's own dialogs


class ModelLoop:
    """Train, predict, accept, retrain, measure and label next around one canvas."""

    def __init__(self, canvas, seams: ModelSeams) -> None:
        self.canvas = canvas
        self.seams = seams
        self.train_panel = TrainPanel()
        self.predict_panel = PredictPanel()
        self.metrics_panel = MetricsPanel()
        self.docks: list = []             # Training, Prediction, Metrics, when docked
        self.active_run: Path | None = None
        self.prediction = None            # ImagePrediction on the canvas now
        self.train_job: Job | None = None
        self._predict_generation = 0
        self._predict_job: Job | None = None
        self._warmed = False
        self._cards: dict[Path, dict] = {}       # run folder -> its card, as last listed
        self._runs_before: set[Path] = set()     # run folders when training started
        if seams.bind is not None:
            self._bind_actions(seams.bind)
        tp, pp, mp = self.train_panel, self.predict_panel, self.metrics_panel
        tp.start_requested.connect(self.start_training)
        tp.cancel_requested.connect(self.cancel_training)
        tp.run_activated.connect(self._on_train_panel_run_activated)
        pp.predict_requested.connect(self.predict_current)
        pp.predict_all_requested.connect(self.predict_all)
        pp.accept_requested.connect(self.accept)
        pp.retrain_requested.connect(self.retrain)
        pp.rank_requested.connect(self.rank)
        pp.next_requested.connect(self.label_next)
        pp.image_requested.connect(seams.show_image)
        pp.view_changed.connect(canvas.set_view_mode)
        pp.opacity_changed.connect(canvas.set_prediction_opacity)
        mp.evaluate_requested.connect(self.measure)
        mp.image_requested.connect(seams.show_image)

    @classmethod
    def for_window(cls, window) -> ModelLoop:
        """The loop of a MainWindow: its canvas, job runner, status bar, actions and docks."""
        seams = ModelSeams(
            state=lambda: (window.project, window.current, window.loaded),
            start_job=window.runner.start,
            show_message=lambda text, ms=0: window.statusBar().showMessage(text, ms),
            report_error=window.report_error, show_image=window.show_image,
            save=window.prepare_for_job, after_saving=window.saver.flushed,
            mask_edited=window.opener.note_edit,
            entry_changed=window.images.update_entry,
            save_manifest=lambda: window.saver.save_manifest(),
            bind=window.action_registry.bind, parent=window)
        loop = cls(window.canvas, seams)
        docks = [window.add_dock(t, p, Qt.DockWidgetArea.RightDockWidgetArea)
                 for t, p in (("Training", loop.train_panel), ("Prediction", loop.predict_panel),
                              ("Metrics", loop.metrics_panel))]
        window.tabifyDockWidget(docks[0], docks[1])
        window.tabifyDockWidget(docks[1], docks[2])
        docks[0].raise_()
        loop.docks = docks
        docks[0].visibilityChanged.connect(loop._on_runs_dock_visibility_changed)
        window.image_shown.connect(loop._on_window_image_shown)
        window.images.predict_requested.connect(loop.predict_selected)
        return loop

    def _bind_actions(self, bind: Callable[[str, Callable], Any]) -> None:
        """The Model menu's actions are declared in ui/actions.py (MODEL_ACTIONS); bound here."""
        for action_id, slot in (
                ("model.train", self.start_training),
                ("model.cancel_training", self.cancel_training),
                ("model.retrain", self.retrain),
                ("model.predict", self.predict_current), ("model.predict_all", self.predict_all),
                ("model.predict_volume", self.predict_volume),
                ("model.accept",
                 lambda: self.accept(self.predict_panel.accept_mode.currentData())),
                ("model.measure",
                 lambda: self.measure(self.metrics_panel.split.currentData())),
                ("model.rank", self.rank), ("model.next_to_label", self.label_next),
                ("model.export", self.export_model_dialog), ("model.doctor", self.device_doctor)):
            bind(action_id, slot)

    # -- what is open now ------------------------------------------------------------------
    @property
    def project(self) -> Project | None:
        return self.seams.state()[0]

    @property
    def current(self):
        return self.seams.state()[1]

    @property
    def loaded(self):
        return self.seams.state()[2]

    def _raise(self, index: int) -> None:
        if self.docks:
            self.docks[index].raise_()

    # -- runs ------------------------------------------------------------------------------
    def project_opened(self, project: Project) -> None:
        self.prediction = None
        self.train_panel.balance.setChecked(len(project.classes) > 2)
        try:
            self.refresh_runs(select_latest=True)
        except Exception as e:       # a damaged runs folder must never keep a project closed
            log.exception("listing the runs failed")
            self.seams.report_error("Runs not listed", f"{project.runs_dir}: {e}")
        if not self._warmed:
            self._warmed = True
            QTimer.singleShot(WARM_UP_DELAY_MS, lambda: self.seams.start_job(Job(warm_up_job, name="warm-up")))

    def refresh_runs(self, select_latest: bool = False, dialog: bool = False) -> Path | None:
        """Re-list the runs from disk; a broken one is listed as broken and never made active.

        Returns the active run when it was deleted from disk meanwhile: it is dropped, the
        window says so (a dialog when `dialog`, else the status bar) and falls back to the
        starter model, or to no model.
        """
        project = self.project
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
                self.seams.report_error("Run deleted", message)
            else:
                self.seams.show_message(message, 10000)
        return deleted

    def _active_ready(self, dialog: bool = False) -> bool:
        """False (and the window says why) when the active run was deleted from disk."""
        if self.active_run is None or self.active_run.exists():
            return True
        self.refresh_runs(dialog=dialog)
        return False

    def _on_runs_dock_visibility_changed(self, visible: bool) -> None:
        if visible and self.project is not None:
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
            self.seams.show_message(message, 10000)
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
        self.canvas.set_prediction(None)
        self.prediction = None
        if run_dir is not None and self.current is not None:
            self._auto_predict()

    # -- training --------------------------------------------------------------------------
    def start_training(self, init_from: Path | None = None) -> None:
        if self.project is None or self.train_job is not None:
            return
        if init_from is None and self.train_panel.finetune.isChecked() and not self._active_ready(True):
            return
        cfg, problem = check_config(self.train_panel.config_values())
        if cfg is None:      # said in the panel, before any job (and torch) starts
            self.train_panel.show_config_problem(problem or "these settings cannot train")
            return
        self.seams.save()
        if init_from is None and self.train_panel.finetune.isChecked() and self._is_run(self.active_run):
            init_from = self.active_run
        self._runs_before = self._run_folders()
        job = Job(self.seams.after_saving(train_job), self.project.root, cfg, init_from,
                  name="Training")
        job.signals.progress.connect(self.train_panel.show_progress)
        job.signals.succeeded.connect(self._on_train_succeeded)
        job.signals.cancelled.connect(self._on_train_cancelled)
        job.signals.finished.connect(self._on_train_finished)
        self.train_job = job
        self.train_panel.set_running(True)
        self._raise(0)
        self.seams.start_job(job, visible=True)

    def _is_run(self, run_dir: Path | None) -> bool:
        return run_dir is not None and self.project is not None and \
            self.project.runs_dir in run_dir.parents

    def _run_folders(self) -> set[Path]:
        runs_dir = self.project.runs_dir if self.project is not None else None
        try:
            return {d for d in runs_dir.iterdir() if d.is_dir()} if runs_dir else set()
        except OSError:
            return set()

    def cancel_training(self) -> None:
        if self.train_job is not None:
            self.train_job.token.cancel()

    def retrain(self) -> None:
        """Fine-tune the active run on the masks as they are now, in one click."""
        if self.project is None or self.train_job is not None:
            return
        if self.refresh_runs(dialog=True) is not None:      # the active run was deleted
            return
        self.start_training(init_from=self.active_run if self.active_run else None)

    def _on_train_succeeded(self, result) -> None:
        summary = describe_score(result.best_metrics)
        self.seams.show_message(
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
        self.seams.show_message(f"Training {text[0].lower()}{text[1:]}", 8000)
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
        loaded = self.loaded
        if loaded is not None and loaded.data.shape[0] * loaded.data.shape[1] <= AUTO_PREDICT_MAX_PIXELS:
            self.predict_current()

    def predict_current(self) -> None:
        if self.active_run is None or self.current is None or self.project is None or not self._active_ready():
            return
        self._predict([self.current.id], name="Predicting")

    def predict_all(self) -> None:
        if self.active_run is None or self.project is None or not self._active_ready():
            return
        self._predict([e.id for e in self.project.images], name="Predicting all images")

    def predict_volume(self) -> None:
        """Every slice of the volume open, as one job (progress, cancel)."""
        entry = self.current
        if self.project is None or entry is None or entry.series is None:
            self.seams.show_message("Predict Volume works on a slice of a volume", 4000)
            return
        self.predict_selected([e.id for e in self.project.slices_of(entry.series)])

    def predict_selected(self, ids: list[str]) -> None:
        if self.project is not None and not self._active_ready():
            return
        if self.active_run is None or self.project is None:
            self.seams.show_message("No model yet: train one first", 4000)
            return
        self._predict(list(ids), name=f"Predicting {len(ids)} image(s)")

    def _predict(self, ids: list[str], name: str) -> None:
        predict_images = in_worker("segstudio.ml.session", "predict_images")
        self._predict_generation += 1
        if self._predict_job is not None:
            self._predict_job.token.cancel()     # only the newest request matters
        job = Job(predict_images, self.project.root, self.active_run, ids, name=name)
        self._predict_job = job
        job.signals.finished.connect(lambda: setattr(self, "_predict_job", None)
                                     if self._predict_job is job else None)
        job.signals.succeeded.connect(partial(self._on_predict_succeeded, self._predict_generation))
        self.seams.start_job(job, visible=True)

    def _on_predict_succeeded(self, generation: int, results) -> None:
        if self.project is None:
            return
        for r in results:
            entry = self.project.entry(r.image_id)
            if not entry.predicted:
                self.seams.entry_changed(self.project.update_entry(r.image_id, predicted=True))
        self.seams.save_manifest()
        current = next((r for r in results if self.current is not None and r.image_id == self.current.id), None)
        if current is not None and self.canvas.image_shape == current.labels.shape and \
                (generation == self._predict_generation or len(results) > 1):
            self.prediction = current
            self.canvas.set_prediction(current.labels, current.uncertainty)
        if len(results) > 1:
            self.seams.show_message(f"Predicted {len(results)} images with {results[0].run_id}", 6000)

    def accept(self, mode: str) -> bool:
        """Copy the prediction into the mask as one undo step."""
        from segstudio.core.prediction import accept_prediction
        doc = self.canvas.document
        if doc is None or self.prediction is None:
            self.seams.show_message("No prediction to accept: predict the image first", 4000)
            return False
        if doc.read_only:
            self.seams.report_error("This mask is read-only", doc.read_only)
            return False
        edit = accept_prediction(doc, self.prediction.labels, mode,
                                 classes=[self.canvas.class_value] if mode == "classes" else None,
                                 objects=self.prediction.objects)
        if edit is None:
            self.seams.show_message("The mask already says what the prediction says", 4000)
            return False
        self.seams.mask_edited()
        self.seams.show_message("Prediction accepted (Ctrl+Z undoes it); correct it, then Retrain", 6000)
        return True

    # -- metrics and ranking ---------------------------------------------------------------
    def measure(self, split: str = "val") -> None:
        measure = in_worker("segstudio.ml.session", "measure")
        if self.project is not None and not self._active_ready():
            return
        if self.active_run is None or self.project is None:
            self.seams.show_message("No model to measure: train one first", 4000)
            return
        self.seams.save()
        run = self.active_run
        job = Job(self.seams.after_saving(measure), self.project.root, run, split,
                  name="Measuring")
        job.signals.succeeded.connect(lambda report: self._on_measure_succeeded(report, run, split))
        self._raise(2)
        self.seams.start_job(job, visible=True)

    def _on_measure_succeeded(self, report, run: Path, split: str) -> None:
        self.metrics_panel.show_report(report, run.name, split)
        if not report.images:
            self.seams.show_message(f"No labelled images in the {split} split to measure", 6000)

    def rank(self) -> None:
        rank = in_worker("segstudio.ml.session", "rank")
        if self.active_run is None or self.project is None or not self._active_ready():
            return
        job = Job(rank, self.project.root, self.active_run, name="Ranking images")
        job.signals.succeeded.connect(self._on_rank_succeeded)
        self._raise(1)
        self.seams.start_job(job, visible=True)

    def _on_rank_succeeded(self, scores) -> None:
        project = self.project
        if project is None:
            return
        rows = [(s.image_id, project.entry(s.image_id).display_name, s.value()) for s in scores]
        self.predict_panel.set_ranking(rows)

    def label_next(self) -> None:
        ids = self.predict_panel.ranked_ids()
        current = self.current.id if self.current else None
        project = self.project
        for image_id in ids:
            if image_id != current and project is not None and project.entry(image_id).labelled < 1.0:
                self.seams.show_image(image_id)
                return
        self.seams.show_message("Nothing ranked yet: press 'Rank unlabeled images'", 4000)

    def export_model_dialog(self) -> None:
        from PySide6.QtWidgets import QFileDialog

        if self.project is not None and not self._active_ready(dialog=True):
            return
        if self.active_run is None:
            self.seams.show_message("No model to export: train one first", 4000)
            return
        folder = QFileDialog.getExistingDirectory(self.seams.parent, "Export the model into")
        if folder:
            self.export_model(Path(folder) / f"{self.active_run.name}-export")

    def export_model(self, out: Path, onnx: bool = True) -> Job | None:
        export_run = in_worker("segstudio.ml.export_model", "export_run")
        if self.active_run is None or self.project is None:
            return None
        job = Job(export_run, self.project.root, self.active_run, out, onnx=onnx,
                  name="Exporting the model")
        job.signals.succeeded.connect(lambda s: self.seams.show_message(
            f"Model exported to {s['out']}" + (" (ONNX checked against torch)"
                                               if s["onnx"] and s["onnx"]["checked_with_onnxruntime"] else ""),
            12000))
        return self.seams.start_job(job, visible=True)

    def device_doctor(self) -> None:
        job = Job(doctor_job, name="Checking devices")
        job.signals.succeeded.connect(self._on_doctor_succeeded)
        self.seams.start_job(job)

    def _on_doctor_succeeded(self, text: str) -> None:
        self.train_panel.show_device(text.splitlines()[0] if text else "")
        box = QMessageBox(QMessageBox.Icon.Information, "Device doctor", text,
                          QMessageBox.StandardButton.Ok, self.seams.parent)
        box.setModal(False)
        box.show()
        self._doctor_box = box
