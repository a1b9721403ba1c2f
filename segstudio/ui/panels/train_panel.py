"""TrainPanel: presets, device, Start/Cancel, progress with ETA, live curves, and the runs list.

It only builds the config and shows what the job reports; the window starts the job (torch is
imported when training starts, never at start-up).
"""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout,
                               QHBoxLayout, QHeaderView, QLabel, QProgressBar, QPushButton, QSpinBox,
                               QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from segstudio.core.jobs import Progress
# torch-free: the presets and the events are declared once, in ml, and read here
from segstudio.ml.config import PRESET_LABELS as PRESETS
from segstudio.ml.events import EpochDone, PlanMade, StepDone
from segstudio.ui.curves import CurvePlot

DEVICES = ("auto", "cuda", "mps", "cpu")


def _fmt_s(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds < 3600 else \
        f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class TrainPanel(QWidget):
    start_requested = Signal()
    cancel_requested = Signal()
    run_activated = Signal(object)        # Path of the run folder chosen as active

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.preset = QComboBox()
        for key, text in PRESETS.items():
            self.preset.addItem(text, key)
        self.epochs = QSpinBox()
        self.epochs.setRange(1, 10_000)
        self.epochs.setValue(40)
        self.minutes = QDoubleSpinBox()
        self.minutes.setRange(0, 24 * 60)
        self.minutes.setDecimals(1)
        self.minutes.setValue(3.0)
        self.minutes.setSpecialValueText("no limit")
        self.minutes.setToolTip("Time budget: training stops at the budget or the epochs, whichever comes first")
        self.device = QComboBox()
        self.device.addItems(DEVICES)
        self.working = QSpinBox()
        self.working.setRange(0, 16384)
        self.working.setSingleStep(64)
        self.working.setSuffix(" px")
        self.working.setSpecialValueText("from the plan")
        self.working.setToolTip("The longer side every image is resampled to for training and "
                                "prediction; masks always come back at full size. 'From the "
                                "plan' measures the labelled objects and picks it")
        self.mirroring = QComboBox()
        for text, value in (("from the plan", None), ("on", True), ("off", False)):
            self.mirroring.addItem(text, value)
        self.mirroring.setToolTip("Mirrors and 90° rotations. The plan turns them off where "
                                  "they would swap labels (left and right lung, sky and road)")
        self.plan_line = QLabel("Plan: made from the labelled images when training starts")
        self.plan_line.setWordWrap(True)
        self.device_line = QLabel("Device: found when training starts")
        self.device_line.setWordWrap(True)
        self.balance = QCheckBox("Balance rare classes")
        self.balance.setToolTip("Weight each class by how rare it is in the masks, so thin or small "
                                "classes are learnt too (on by default with 3 or more classes)")
        self.finetune = QCheckBox("Fine-tune the active run")
        self.finetune.setToolTip("Start from the active run's weights (new classes get a new head)")
        self.start_button = QPushButton("Train")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.start_button.clicked.connect(self.start_requested)
        self.cancel_button.clicked.connect(self.cancel_requested)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.loss_plot = CurvePlot("training loss")
        self.loss_plot.add_series("loss", "#D55E00")
        self.val_plot = CurvePlot("validation")
        self.val_plot.add_series("mean Dice", "#0072B2")
        self.val_plot.add_series("mean IoU", "#009E73")
        self.runs = QTableWidget(0, 5)
        self.runs.setHorizontalHeaderLabels(["run", "status", "mean Dice", "epochs", "device"])
        self.runs.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        # "broken: <reason>" can be long: the status column keeps its width and elides (the
        # tooltip has it all)
        self.runs.setWordWrap(False)
        self.runs.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Interactive)
        self.runs.setColumnWidth(1, 150)
        self.runs.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.runs.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.runs.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.runs.itemSelectionChanged.connect(self._on_runs_selection_changed)
        self.active_label = QLabel("Active run: none")

        form = QFormLayout()
        form.addRow("Model", self.preset)
        form.addRow("Epochs", self.epochs)
        form.addRow("Minutes", self.minutes)
        form.addRow("Device", self.device)
        form.addRow("Working size", self.working)
        form.addRow("Mirroring", self.mirroring)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(form)
        layout.addWidget(self.balance)
        layout.addWidget(self.finetune)
        layout.addWidget(self.plan_line)
        layout.addWidget(self.device_line)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.loss_plot, 1)
        layout.addWidget(self.val_plot, 1)
        layout.addWidget(self.active_label)
        layout.addWidget(self.runs, 1)
        self._started = 0.0
        self._run_dirs: list[Path] = []
        self._active: Path | None = None
        self._plans: dict[Path, dict] = {}        # run folder -> the plan its card stores

    # -- config ----------------------------------------------------------------------------
    def config_values(self) -> dict:
        """What the user chose, as TrainConfig fields."""
        minutes = self.minutes.value()
        values = {"preset": self.preset.currentData(), "epochs": self.epochs.value(),
                  "minutes": minutes if minutes > 0 else None,
                  "device": self.device.currentText(),
                  "class_weights": "balanced" if self.balance.isChecked() else None}
        if self.working.value() > 0:
            values["working_size"] = self.working.value()
        mirror = self.mirroring.currentData()
        if mirror is not None:
            values.update(flip_h=mirror, flip_v=mirror, rot90=mirror)
        return values

    # -- a run in progress -----------------------------------------------------------------
    def set_running(self, running: bool) -> None:
        self.start_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        for w in (self.preset, self.epochs, self.minutes, self.device, self.balance, self.finetune,
                  self.working, self.mirroring):
            w.setEnabled(not running)
        if running:
            self._started = time.monotonic()
            self.progress.reset()        # not setValue(0): that repaints the window at once
            self.loss_plot.clear()
            self.loss_plot.add_series("loss", "#D55E00")
            self.val_plot.clear()
            self.val_plot.add_series("mean Dice", "#0072B2")
            self.val_plot.add_series("mean IoU", "#009E73")
            self.status.setText("starting…")

    def show_progress(self, p: Progress) -> None:
        if p.total:
            self.progress.setValue(int(1000 * p.done / p.total))
        elapsed = time.monotonic() - self._started
        eta = ""
        if p.total and p.done > 0 and p.done < p.total:
            eta = f", about {_fmt_s(elapsed * (p.total - p.done) / p.done)} left"
        self.status.setText(f"{p.message} — {_fmt_s(elapsed)} elapsed{eta}")
        match p:
            case PlanMade(summary=summary, lines=lines):
                self.show_plan(summary, lines)
            case StepDone(step=step, loss=loss):
                self.loss_plot.append("loss", step, loss)
            case EpochDone(epoch=epoch):
                self.val_plot.append("mean Dice", epoch, p.mean_dice)
                self.val_plot.append("mean IoU", epoch, p.mean_iou)

    def show_plan(self, summary: str, lines: tuple[str, ...] | list[str]) -> None:
        """The plan the run uses, in one line; every item with its reason in the tooltip."""
        self.plan_line.setText(f"Plan: {summary}")
        self.plan_line.setToolTip("\n".join(lines))

    def show_config_problem(self, message: str) -> None:
        """Settings that cannot train, said where they were chosen; nothing was started."""
        self.status.setText(f"Cannot train with these settings: {message}")

    def show_device(self, text: str) -> None:
        self.device_line.setText(text)

    # -- runs ------------------------------------------------------------------------------
    def set_runs(self, cards: list[dict], active: Path | None = None) -> None:
        """One row per card; a broken card's row says "broken: <reason>" (cards come from
        segstudio.ml.cards.list_run_cards, so their fields have the types read here)."""
        self.runs.blockSignals(True)
        self.runs.setRowCount(0)
        self._run_dirs = []
        for card in cards:
            row = self.runs.rowCount()
            self.runs.insertRow(row)
            best = (card.get("metrics") or {}).get("best") or {}
            dice = best.get("mean_dice")
            broken = card.get("broken")
            # the folder's name, not the card's run_id: it is what `--run` takes, and a copied
            # run keeps the run_id of its original
            cells = [Path(card["run_dir"]).name,
                     str(card.get("status", "?")),
                     f"{dice:.3f}" if isinstance(dice, (int, float)) and dice == dice else "—",
                     str(card.get("epochs", "")), str(card.get("device", ""))]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(f"{card['run_dir']}\n{broken}" if broken else card["run_dir"])
                if broken:
                    item.setForeground(QColor("#B00020"))
                self.runs.setItem(row, col, item)
            self._run_dirs.append(Path(card["run_dir"]))
            plan = card.get("plan")
            if isinstance(plan, dict) and isinstance(plan.get("lines"), list):
                self._plans[Path(card["run_dir"])] = plan
        self.runs.blockSignals(False)
        if active is not None:
            self.set_active(active, emit=False)
        elif self._active not in self._run_dirs:
            self.runs.clearSelection()

    def set_active(self, run_dir: Path | None, emit: bool = True) -> None:
        self._active = run_dir
        self.active_label.setText(f"Active run: {run_dir.name if run_dir else 'none'}")
        plan = self._plans.get(run_dir) if run_dir is not None else None
        if plan is not None and self.start_button.isEnabled():
            lines = [str(x) for x in plan["lines"]]
            self.show_plan(f"{run_dir.name} used: " + "; ".join(
                x.split(" — ")[0] for x in lines[:2]), lines)
        self.runs.blockSignals(True)
        if run_dir in self._run_dirs:
            self.runs.selectRow(self._run_dirs.index(run_dir))
        else:
            self.runs.clearSelection()
        self.runs.blockSignals(False)
        if emit and run_dir is not None:
            self.run_activated.emit(run_dir)

    @property
    def active_run(self) -> Path | None:
        return self._active

    def _on_runs_selection_changed(self) -> None:
        rows = {i.row() for i in self.runs.selectedItems()}
        if rows:
            self.set_active(self._run_dirs[min(rows)])



