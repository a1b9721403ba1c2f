"""Model > Train Click Model: the Click tool learns from the project's own labelled objects.

One background Job (ui/model_jobs.click_train_job: progress in the jobs view, cancel there,
CUDA when present) that first waits until every stroke is on disk. The run lands in
`<project>/runs/click/`; when it is done the Click tool drops the model it had loaded, so the
next click is answered by the new run (a SAM file chosen in the list stays chosen).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from segstudio.ui.model_jobs import click_train_job
from segstudio.workers.job import Job

DEFAULT_MINUTES = 5.0


class ClickTraining:
    """Starts the click model's training for the open project; one run at a time."""

    def __init__(self, tool: Any, *, project: Callable[[], Any],
                 start_job: Callable[..., Job], show_message: Callable[[str, int], None],
                 after_saving: Callable[[Callable], Callable] = lambda fn: fn,
                 options: dict | None = None) -> None:
        self.tool = tool
        self.project = project
        self.start_job = start_job
        self.show_message = show_message
        self.after_saving = after_saving
        self.options = dict(options or {"minutes": DEFAULT_MINUTES})   # ClickConfig fields
        self.job: Job | None = None

    def start(self) -> Job | None:
        project = self.project()
        if project is None:
            self.show_message("Open a project first: the click model learns its labels", 6000)
            return None
        if self.job is not None:
            self.show_message("The click model is training already", 4000)
            return self.job
        job = Job(self.after_saving(click_train_job), project.root, dict(self.options),
                  name="Training the click model")
        job.signals.progress.connect(lambda p: self.show_message(p.message, 3000))
        job.signals.succeeded.connect(self._on_succeeded)
        job.signals.finished.connect(self._on_finished)
        self.job = job
        minutes = self.options.get("minutes", DEFAULT_MINUTES)
        self.show_message(f"Training the click model on your labels ({minutes:g} min at most; "
                          f"cancel in the jobs list)", 6000)
        return self.start_job(job, visible=True)

    def _on_succeeded(self, result) -> None:
        from segstudio.ui.click_tool import is_sam

        sam = is_sam(self.tool.backend)
        if not sam:
            self.tool.backend = None          # the next click loads the new run
        if getattr(self.tool, "models", None) is not None:
            self.tool.models.changed.emit()
        then = ("pick 'ours' in the Click model list to use it" if sam else
                "the Click tool (K) answers with it")
        self.show_message(f"Click model {result.run_dir.name} ready ({result.steps} steps, "
                          f"{result.status}): {then}", 10000)

    def _on_finished(self) -> None:
        self.job = None


def attach(tool: Any, window: Any) -> ClickTraining:
    """Bind Model > Train Click Model of a MainWindow; returns the QAction's owner."""
    training = ClickTraining(
        tool, project=lambda: window.project, start_job=window.runner.start,
        show_message=lambda text, ms=0: window.statusBar().showMessage(text, ms),
        after_saving=window.saver.flushed if getattr(window, "saver", None) else (lambda fn: fn))
    training.action = window.action_registry.bind("model.train_click", training.start)
    return training
