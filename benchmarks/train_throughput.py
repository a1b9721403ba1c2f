"""Images/s of SegStudio's training step vs a plain PyTorch loop, same model and tensors.

Prints ONE JSON line. The two loops alternate in rounds inside one process so machine noise
hits both alike; `ratio` = ours / plain (median over rounds). `peak_fraction` relates our
step's FLOP rate (counted by torch's FlopCounterMode) to a measured fp32 matmul rate.

    python benchmarks/train_throughput.py [--preset fast] [--batch 8] [--patch 192] [--rounds 5]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def matmul_peak(seconds: float = 1.0, n: int = 2048) -> float:
    """Sustained fp32 GFLOP/s of a large square matmul on this CPU with torch's threads."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    c = torch.empty(n, n)
    torch.mm(a, b, out=c)
    best, t_end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        torch.mm(a, b, out=c)
        best = max(best, 2 * n**3 / (time.perf_counter() - t0) / 1e9)
    return best


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--patch", type=int, default=None)
    ap.add_argument("--steps", type=int, default=6, help="steps per round and loop")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--classes", type=int, default=2)
    ap.add_argument("--no-allocator-tuning", action="store_true")
    args = ap.parse_args()

    from segstudio.ml.allocator import allocator_report, tune_allocator

    if not args.no_allocator_tuning:
        tune_allocator()
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from segstudio.ml.device import pick_device
    from segstudio.ml.models import build_model
    from segstudio.ml.train import SegLoss, TrainConfig, TrainStep

    cfg = TrainConfig(preset=args.preset)
    batch, patch = args.batch or cfg.batch_size, args.patch or cfg.patch_size
    device = pick_device("auto")
    spec = cfg.model_spec()
    torch.manual_seed(0)
    base = build_model(spec.pop("name"), args.channels, args.classes, **spec)
    x = torch.randn(batch, args.channels, patch, patch)
    y = torch.randint(0, args.classes, (batch, patch, patch))
    y[:, :8] = 255

    ours = TrainStep(copy.deepcopy(base), SegLoss(args.classes), cfg, device)
    xo, yo = ours.to_device(x.numpy(), y.to(torch.uint8).numpy())

    plain_model = copy.deepcopy(base).to(device)
    plain_loss = SegLoss(args.classes).to(device)
    plain_opt = torch.optim.AdamW(plain_model.parameters(), lr=cfg.lr,
                                  weight_decay=cfg.weight_decay)
    xp, yp = x.to(device), y.to(device)

    def plain_step() -> float:
        loss = plain_loss(plain_model(xp), yp)
        plain_opt.zero_grad()
        loss.backward()
        plain_opt.step()
        return loss.item()

    def timed(fn) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return args.steps * batch / (time.perf_counter() - t0)

    for _ in range(2):                       # warm-up: oneDNN primitives, allocator pools
        ours(xo, yo)
        plain_step()
    ours_ips, plain_ips = [], []
    for r in range(args.rounds):
        if r % 2:                            # alternate which loop goes first
            plain_ips.append(timed(plain_step))
            ours_ips.append(timed(lambda: ours(xo, yo)))
        else:
            ours_ips.append(timed(lambda: ours(xo, yo)))
            plain_ips.append(timed(plain_step))

    with FlopCounterMode(display=False) as counter:
        ours(xo, yo)
    flops_per_image = counter.get_total_flops() / batch
    peak = matmul_peak()
    ours_med, plain_med = statistics.median(ours_ips), statistics.median(plain_ips)
    print(json.dumps({
        "benchmark": "train_throughput", "device": str(device), "preset": args.preset,
        "batch": batch, "patch": patch, "threads": torch.get_num_threads(),
        "ours_images_per_s": round(ours_med, 3), "plain_images_per_s": round(plain_med, 3),
        "ratio": round(ours_med / plain_med, 3),
        "ours_rounds": [round(v, 2) for v in ours_ips],
        "plain_rounds": [round(v, 2) for v in plain_ips],
        "gflop_per_image": round(flops_per_image / 1e9, 3),
        "ours_gflops": round(ours_med * flops_per_image / 1e9, 2),
        "matmul_peak_gflops": round(peak, 2),
        "peak_fraction": round(ours_med * flops_per_image / 1e9 / peak, 3),
        "allocator": allocator_report(), "cpu_count": os.cpu_count(),
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
