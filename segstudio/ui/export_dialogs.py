"""Export and Import dialogs: they edit option dataclasses; the window runs the jobs.

The format lists, and which option rows apply to which format, come from the registries
(io.formats.base.WRITERS / READERS).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import QThreadPool, Qt, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox,
                               QFileDialog, QFormLayout, QHBoxLayout, QLabel, QLineEdit,
                               QListWidget, QListWidgetItem, QPushButton, QSpinBox, QTableWidget,
                               QTableWidgetItem, QVBoxLayout, QWidget)

from segstudio.io.export import WRITERS, ExportOptions, unlabeled_warning
from segstudio.io.imports import READERS, UNLABELED_TARGET, ImportOptions
from segstudio.workers.job import Job, plain_error

NEW_CLASS = "(new class)"


def _path_row(edit: QLineEdit, pick) -> QWidget:
    row = QWidget()
    lay = QHBoxLayout(row)
    lay.setContentsMargins(0, 0, 0, 0)
    lay.addWidget(edit, 1)
    b = QPushButton("Browse…")
    b.clicked.connect(pick)
    lay.addWidget(b)
    return row


class ExportDialog(QDialog):
    """`label_status` = (partly labelled, labelled) image counts (io.export.label_status: from
    the manifest, no mask is read): a format that cannot say "unlabeled" shows a warning."""

    def __init__(self, class_names: list[str], default_out: Path, parent: QWidget | None = None,
                 *, label_status: tuple[int, int] = (0, 0)) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export dataset")
        self._label_status = label_status
        self.warning = QLabel()
        self.warning.setWordWrap(True)
        self.warning.setStyleSheet("color: #b35900;")
        self.format = QComboBox()
        for f in WRITERS.values():
            self.format.addItem(f.description, f.name)
        self.out = QLineEdit(str(default_out))
        self.split = QComboBox()
        self.split.addItem("the project's train/validation split", "project")
        self.split.addItem("new random split by ratios", "ratios")
        self.ratios = [QDoubleSpinBox() for _ in range(3)]
        for box, v in zip(self.ratios, (0.8, 0.2, 0.0)):
            box.setRange(0, 1)
            box.setSingleStep(0.05)
            box.setValue(v)
        self.seed = QSpinBox()
        self.seed.setRange(0, 1_000_000)
        self.images = QComboBox()
        for key, text in (("copy", "copy images"), ("link", "link images"), ("none", "masks only")):
            self.images.addItem(text, key)
        self.unlabeled = QComboBox()
        self.unlabeled.addItem("stay unlabeled (255, ignored by training)", "ignore")
        self.unlabeled.addItem("become background (0)", "background")
        self.unlabeled.addItem("the value after the last class (declared, nnU-Net style)", "label")
        self.only_full = QCheckBox("Only fully labelled images")
        self.coco_rle = QCheckBox("COCO as RLE (lossless; polygons cannot hold holes)")
        self.overwrite = QCheckBox("Replace the folder if it exists")
        self.classes = QListWidget()
        for name in class_names[1:]:
            item = QListWidgetItem(name)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked)
            self.classes.addItem(item)
        ratio_row = QWidget()
        rl = QHBoxLayout(ratio_row)
        rl.setContentsMargins(0, 0, 0, 0)
        for label, box in zip(("train", "val", "test"), self.ratios):
            rl.addWidget(QLabel(label))
            rl.addWidget(box)
        rl.addWidget(QLabel("seed"))
        rl.addWidget(self.seed)
        form = QFormLayout()
        form.addRow("Format", self.format)
        form.addRow("Folder", _path_row(self.out, self._pick_out))
        form.addRow("Split", self.split)
        form.addRow("Ratios", ratio_row)
        form.addRow("Images", self.images)
        form.addRow("Unlabeled pixels", self.unlabeled)
        form.addRow("Classes", self.classes)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Export")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        for w in (self.only_full, self.coco_rle, self.overwrite, self.warning):
            layout.addWidget(w)
        layout.addWidget(buttons)
        self.format.currentIndexChanged.connect(self._on_format_changed)
        self.only_full.toggled.connect(self._update_warning)
        self.unlabeled.currentIndexChanged.connect(self._update_warning)
        self._on_format_changed()

    def _on_format_changed(self, _index: int = 0) -> None:
        """Options only some formats read are enabled for those (the registry says which)."""
        self.coco_rle.setEnabled("coco_mode" in WRITERS[self.format.currentData()].options)
        self._update_warning()

    def _update_warning(self, *_args) -> None:
        text = unlabeled_warning(self.options()[1], *self._label_status)
        self.warning.setText(text or "")
        self.warning.setVisible(bool(text))

    def _pick_out(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export into", self.out.text())
        if folder:
            self.out.setText(str(Path(folder) / "dataset"))

    def options(self) -> tuple[Path, ExportOptions]:
        kept = tuple(self.classes.item(i).text() for i in range(self.classes.count())
                     if self.classes.item(i).checkState() == Qt.CheckState.Checked)
        all_kept = len(kept) == self.classes.count()
        opts = replace(ExportOptions(), format=self.format.currentData(),
                       split=self.split.currentData(),
                       ratios=tuple(b.value() for b in self.ratios), seed=self.seed.value(),
                       images=self.images.currentData(), unlabeled=self.unlabeled.currentData(),
                       only_fully_labelled=self.only_full.isChecked(),
                       classes=None if all_kept else kept,
                       coco_mode="rle" if self.coco_rle.isChecked() else "polygon",
                       overwrite=self.overwrite.isChecked())
        return Path(self.out.text()), opts


class ImportDialog(QDialog):
    """Pick a source and format; after 'Check', map the source's class names to the project's.

    Check reads the whole source (a big COCO file takes a while) on a worker; `checked(ok)`
    says when it is done."""

    checked = Signal(bool)

    def __init__(self, project_classes: list[str], preview_fn, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Import masks")
        self._preview_fn = preview_fn
        self._job = None
        self._project_classes = project_classes
        self.format = QComboBox()
        for f in READERS.values():
            self.format.addItem(f.description, f.name)
        self.src = QLineEdit()
        self.unannotated = QComboBox()
        self.unannotated.addItem("background (0)", "background")
        self.unannotated.addItem("unlabeled (255)", "ignore")
        self.skip_unmatched = QCheckBox("Skip files for images that are not in the project")
        self.as_objects = QCheckBox("Classes hold objects: one object per annotation or shape")
        self.as_objects.setToolTip(
            "COCO: one object per annotation (crowd regions stay class pixels); YOLO: one per "
            "line; labelme: one per "
            "shape, shapes with the same label and group_id are one object. Classes already "
            "marked 'objects' get objects without this; instance label images always give them.")
        self.check_button = QPushButton("Check")
        self.check_button.clicked.connect(self.check)
        self.summary = QLabel("Choose the source and press Check.")
        self.summary.setWordWrap(True)
        self.mapping = QTableWidget(0, 2)
        self.mapping.setHorizontalHeaderLabels(["in the source", "becomes"])
        self.mapping.horizontalHeader().setStretchLastSection(True)
        form = QFormLayout()
        form.addRow("Format", self.format)
        form.addRow("Source", _path_row(self.src, self._pick_src))
        form.addRow("Pixels no shape covers", self.unannotated)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Import")
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(False)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.skip_unmatched)
        layout.addWidget(self.as_objects)
        layout.addWidget(self.check_button)
        layout.addWidget(self.summary)
        layout.addWidget(self.mapping, 1)
        layout.addWidget(self.buttons)
        self.resize(560, 480)
        self.format.currentIndexChanged.connect(self._on_format_changed)
        self._on_format_changed()

    def _on_format_changed(self, _index: int = 0) -> None:
        options = READERS[self.format.currentData()].options
        self.unannotated.setEnabled("unannotated" in options)
        self.as_objects.setEnabled("as_objects" in options)

    def _pick_src(self) -> None:
        fmt = READERS[self.format.currentData()]
        if fmt.file_filter:
            path, _ = QFileDialog.getOpenFileName(self, fmt.description, "", fmt.file_filter)
        else:
            path = QFileDialog.getExistingDirectory(self, "Folder to import")
        if path:
            self.src.setText(path)

    def options(self, mapping: dict[str, str] | None = None) -> tuple[Path, ImportOptions]:
        mapping = self.current_mapping() if mapping is None else mapping
        new = any(v == NEW_CLASS for v in mapping.values())
        return Path(self.src.text()), ImportOptions(
            format=self.format.currentData(),
            mapping={k: (k if v == NEW_CLASS else v) for k, v in mapping.items()} or None,
            new_classes=new, unannotated=self.unannotated.currentData(),
            skip_unmatched=self.skip_unmatched.isChecked(),
            as_objects=self.as_objects.isEnabled() and self.as_objects.isChecked())

    def check(self):
        """Read the whole source on a worker (nothing is written), then fill the class mapping."""
        src, opts = self.options(mapping={})
        preview_fn = self._preview_fn

        def body(*, on_progress=None, cancel=None):
            return preview_fn(src, replace(opts, new_classes=True))
        self.check_button.setEnabled(False)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(False)
        self.summary.setText(f"Reading {src}…")
        self._job = job = Job(body, name="Checking the import")
        job.signals.succeeded.connect(self._on_preview_ready)
        job.signals.failed.connect(self._on_preview_failed)
        job.signals.finished.connect(lambda: self.check_button.setEnabled(True))
        QThreadPool.globalInstance().start(job)
        return job

    def _on_preview_failed(self, details: str) -> None:
        # the importer's errors name the file and place
        self.summary.setText(f"<b>Cannot import:</b> {plain_error(details)}")
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(False)
        self.checked.emit(False)

    def _on_preview_ready(self, preview) -> None:
        self.summary.setText(f"{len(preview.images)} image(s) get a mask; classes in the source: "
                             f"{', '.join(preview.source_classes) or 'none'}"
                             + (f"; skipped: {len(preview.skipped)}" if preview.skipped else "")
                             + (f"; objects of: {', '.join(preview.object_classes)}"
                                if preview.object_classes else ""))
        self.mapping.setRowCount(0)
        lowered = {c.casefold(): c for c in self._project_classes}
        for name in preview.source_classes:
            row = self.mapping.rowCount()
            self.mapping.insertRow(row)
            self.mapping.setItem(row, 0, QTableWidgetItem(name))
            combo = QComboBox()
            # "unlabeled": its pixels become 255, not a class (labelme's __ignore__ is, unasked)
            combo.addItems([*self._project_classes, UNLABELED_TARGET, NEW_CLASS])
            default = {"__ignore__": UNLABELED_TARGET,
                       "_background_": self._project_classes[0]}.get(name, NEW_CLASS)
            combo.setCurrentText(lowered.get(name.casefold(), default))
            self.mapping.setCellWidget(row, 1, combo)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(bool(preview.images))
        self.checked.emit(True)

    def current_mapping(self) -> dict[str, str]:
        return {self.mapping.item(r, 0).text(): self.mapping.cellWidget(r, 1).currentText()
                for r in range(self.mapping.rowCount())}
