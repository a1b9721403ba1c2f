"""JobsIndicator: the running job's name, progress and Cancel, in the status bar."""

from __future__ import annotations

from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QWidget

from segstudio.core.jobs import Progress


class JobsIndicator(QWidget):
    """Shows the newest visible job; hidden when none runs."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.label = QLabel("")
        self.bar = QProgressBar()
        self.bar.setMaximumWidth(160)
        self.bar.setTextVisible(True)
        self.cancel_button = QPushButton("Cancel")
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.label)
        row.addWidget(self.bar)
        row.addWidget(self.cancel_button)
        self._jobs: list = []
        self.cancel_button.clicked.connect(self._on_cancel_clicked)
        self.hide()

    def track(self, job) -> None:
        self._jobs.append(job)
        job.signals.progress.connect(lambda p, j=job: self._on_job_progress(j, p))
        job.signals.finished.connect(lambda j=job: self._on_job_finished(j))
        self._show(job)
        self.bar.setRange(0, 0)       # busy until the first progress report

    def _show(self, job) -> None:
        self.label.setText(job.name)
        self.cancel_button.setEnabled(True)
        self.show()

    def _on_job_progress(self, job, p: Progress) -> None:
        if not self._jobs or job is not self._jobs[-1]:
            return
        if p.total > 0:
            self.bar.setRange(0, p.total)
            self.bar.setValue(min(p.done, p.total))
        if p.message:
            self.label.setText(f"{job.name}: {p.message}")

    def _on_job_finished(self, job) -> None:
        if job in self._jobs:
            self._jobs.remove(job)
        if self._jobs:
            self._show(self._jobs[-1])
        else:
            self.hide()

    def _on_cancel_clicked(self) -> None:
        if self._jobs:
            self._jobs[-1].token.cancel()
            self.cancel_button.setEnabled(False)
            self.label.setText(f"{self._jobs[-1].name}: cancelling…")
