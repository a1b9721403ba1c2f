"""One optimisation step and the learning-rate schedule: the code the loop runs, nothing else.

The throughput benchmark times `TrainStep` itself, so what it measures is what training does.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from segstudio.ml.config import TrainConfig
from segstudio.ml.device import cpu_bf16_fast
from segstudio.ml.optim import AdamW


def lr_factor(progress: float, schedule: str, warmup: float) -> float:
    """Multiplier of the peak learning rate at `progress` in [0, 1] of the run (steps or time)."""
    p = min(max(progress, 0.0), 1.0)
    if schedule == "onecycle":
        up = max(warmup, 0.3)
        if p < up:
            return 0.04 + 0.96 * (1 - math.cos(math.pi * p / up)) / 2
        q = (p - up) / (1 - up)
        return 1e-4 + (1 - 1e-4) * (1 + math.cos(math.pi * q)) / 2
    if warmup > 0 and p < warmup:
        return 0.01 + 0.99 * p / warmup
    q = (p - warmup) / max(1e-9, 1 - warmup)
    return 0.01 + 0.99 * (1 + math.cos(math.pi * q)) / 2


class TrainStep:
    """One optimisation step, the exact code the loop runs (the throughput benchmark times it).

    The model is moved to `device` in channels_last when configured; on CUDA it runs under
    autocast (bf16 where supported, else fp16 with a gradient scaler) with cudnn's autotuner,
    on a CPU with AMX under bf16 autocast when `cfg.cpu_bf16` asks (weights and the optimizer
    stay fp32).
    `wrap` (DistributedDataParallel) and `cfg.compile` change only the forward that trains
    (`self.net`); `self.model` stays the plain module that validation and checkpoints use.
    """

    def __init__(self, model: nn.Module, loss_fn: nn.Module, cfg: TrainConfig,
                 device: torch.device, wrap: Any = None) -> None:
        self.device = device
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.model = model.to(device, memory_format=self.memory_format)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True     # patches have one fixed size: tune once
        self.net = wrap(self.model) if wrap is not None else self.model
        if cfg.compile:
            self.net = torch.compile(self.net)
        self.loss_fn = loss_fn.to(device)
        self.amp_dtype = None
        if cfg.amp and device.type == "cuda":
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        elif cfg.cpu_bf16 and device.type == "cpu" and cpu_bf16_fast():
            self.amp_dtype = torch.bfloat16       # AMX: bf16 convolutions in hardware
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        # torch's AdamW arithmetic without torch.optim's first-step import of torch._dynamo
        # (a second of GIL-holding imports that stalls the window when training starts)
        self.opt = AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    def host_batch(self, xb: np.ndarray, yb: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """CPU tensors of a numpy batch, page-locked on CUDA (the prefetch thread calls this)."""
        x, y = torch.from_numpy(xb), torch.from_numpy(yb)
        if self.device.type == "cuda":
            x, y = x.pin_memory(), y.pin_memory()
        return x, y

    def to_device(self, xb: np.ndarray | torch.Tensor, yb: np.ndarray | torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch on the device; from pinned memory the copy overlaps the GPU's work."""
        if not isinstance(xb, torch.Tensor):
            xb, yb = self.host_batch(xb, yb)
        nb = self.device.type == "cuda"
        x = xb.to(self.device, non_blocking=nb).contiguous(memory_format=self.memory_format)
        return x, yb.to(self.device, non_blocking=nb).long()

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Forward, backward, update; returns the loss (NaN/inf checked by the caller)."""
        with torch.autocast(self.device.type, dtype=self.amp_dtype,
                            enabled=self.amp_dtype is not None):
            loss = self.loss_fn(self.net(x), y)
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()
        return float(loss.detach())
