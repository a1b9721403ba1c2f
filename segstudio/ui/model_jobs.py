"""Job bodies of the model loop: each imports segstudio.ml on its worker, never the GUI thread.

The first import of torch takes ~1 s; done in a slot it would freeze the window.
"""

from __future__ import annotations

from pathlib import Path

from segstudio.core.jobs import Progress
from segstudio.io.project import Project
from segstudio.ml.config import TrainConfig
from segstudio.workers.preload import load_torch


def train_job(project_root: Path, cfg: TrainConfig, init_from: Path | None, *,
               on_progress=None, cancel=None):
    load_torch("segstudio.ml.train", "segstudio.ml.allocator", "segstudio.ml.device")
    from segstudio.ml.allocator import tune_allocator
    from segstudio.ml.device import describe, pick_device
    from segstudio.ml.train import train

    tune_allocator()     # keep freed training buffers for reuse: ~1.7x on big CPU steps
    if on_progress:
        on_progress(Progress(0, 1000, f"device: {describe(pick_device(cfg.device))}"))
    return train(Project.open(project_root), cfg, init_from=init_from,
                 on_progress=on_progress, cancel=cancel)


def click_train_job(project_root: Path, options: dict, *, on_progress=None, cancel=None):
    """A click model from the project's labelled objects (ml/click_model.py), CUDA when present;
    `options` are ClickConfig fields (minutes, steps, ...)."""
    load_torch("segstudio.ml.click_model")
    from segstudio.ml.click_model import ClickConfig, train_click_model

    return train_click_model(Project.open(project_root), ClickConfig(**options),
                             on_progress=on_progress, cancel=cancel)


def warm_up_job(*, on_progress=None, cancel=None) -> None:
    """Import the training stack ahead of need.

    Its first import holds the GIL for a while; done while the window is idle after opening,
    it no longer stalls the window when the user presses Train. Torch's libraries load first
    without the GIL (workers/preload.py). The trainer's own optimizer (ml/optim.py) never
    imports torch._dynamo, which torch.optim's first step would (over a second, GIL held).
    """
    load_torch("segstudio.ml.train")


def in_worker(module: str, name: str):
    """A job body that imports `module` on the worker thread, not the GUI's.

    The first import of torch takes ~1 s; done in a slot it would freeze the window.
    """
    def run(*args, **kwargs):
        import importlib

        load_torch(module)              # the first model job loads torch: without long GIL holds

        return getattr(importlib.import_module(module), name)(*args, **kwargs)
    run.__name__ = name
    return run


def doctor_job(*, on_progress=None, cancel=None) -> str:
    load_torch("segstudio.ml.device")
    from segstudio.ml.device import doctor

    return doctor()
