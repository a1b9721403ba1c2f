"""JobRunner: starts the window's jobs on the thread pool, keeps them alive, reports failures.

Every part that starts work (opening an image, thumbnails, the File menu, the model loop) is
given `runner.start`, not the window, so a part is built and tested with a runner of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from PySide6.QtCore import QThreadPool

from segstudio.workers.job import Job, plain_error


class JobRunner:
    """Runs jobs on the global pool; `visible` ones show progress and Cancel in `indicator`."""

    def __init__(self, report_error: Callable[..., None], indicator=None) -> None:
        self._report_error = report_error
        self._indicator = indicator       # a JobsIndicator (or anything with track(job))
        self.jobs: set[Job] = set()

    def start(self, job: Job, report_failure: bool = True, visible: bool = False) -> Job:
        """Run `job`; unless `report_failure` is false, its failure reaches report_error."""
        self.jobs.add(job)   # keep it alive until it finishes, or Python may collect it mid-run
        if visible and self._indicator is not None:
            self._indicator.track(job)
        job.signals.finished.connect(lambda: self.jobs.discard(job))
        if report_failure:
            job.signals.failed.connect(partial(self._on_job_failed, job.name))
        QThreadPool.globalInstance().start(job)
        return job

    def cancel_all(self, wait_ms: int = 5000) -> None:
        """On close: cancel what runs, then give the pool `wait_ms` to wind down."""
        for job in list(self.jobs):
            job.token.cancel()
        QThreadPool.globalInstance().waitForDone(wait_ms)

    def _on_job_failed(self, name: str, details: str) -> None:
        self._report_error(f"{name} failed", plain_error(details), details)
