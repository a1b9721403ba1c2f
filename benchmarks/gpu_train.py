"""Images/s and peak GPU memory of SegStudio's training step, fp32 and AMP, vs a plain loop.

Prints ONE JSON line. Four configurations run in the same process on the same model weights,
batch and device: our `TrainStep` (the exact step `train()` runs: channels_last, autocast in
bf16 where supported else fp16 with a gradient scaler, cudnn.benchmark, AdamW foreach) with
AMP off and on, and a plain PyTorch loop (model.to(device), NCHW input, AdamW, autocast in the
same dtype, GradScaler for fp16, no per-step sync) with AMP off and on. Each configuration is
built fresh, warmed up, timed, and freed, so its peak memory is its own (weights, gradients,
optimizer state and activations); this repeats for `--rounds` rounds in rotating order, and
the median images/s per configuration is reported.

    python benchmarks/gpu_train.py                         # CUDA, preset "fast", batch 16, 256 px
    python benchmarks/gpu_train.py --device cpu --batch 2 --patch 64 --steps 2 --rounds 1

Targets (issue 7, on an H100): ours_amp / plain_amp >= 0.95 and ours_amp / ours_fp32 >= 2.
Off CUDA, autocast is off in both loops (`amp_dtype` null): the AMP rows then repeat fp32 and
only prove that the script runs; `"cuda": false` says so.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CONFIGS = ("ours_fp32", "ours_amp", "plain_fp32", "plain_amp")


def _plain_step(model, loss_fn, opt, scaler, amp_dtype, device_type):
    """The textbook loop body: what someone would write without SegStudio."""
    import torch

    def step(x, y):
        with torch.autocast(device_type, dtype=amp_dtype, enabled=amp_dtype is not None):
            loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        return loss
    return step


def measure(name: str, base, args, cfg, device, x_np, y_np) -> dict:
    """Build one configuration from `base`, warm it up, time it; returns images/s and peak MiB."""
    import torch

    from segstudio.ml.train import SegLoss, TrainStep

    cuda = device.type == "cuda"
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    amp = name.endswith("_amp")
    if name.startswith("ours"):
        ours = TrainStep(copy.deepcopy(base), SegLoss(args.classes), replace(cfg, amp=amp), device)
        x, y = ours.to_device(x_np, y_np)
        amp_dtype = ours.amp_dtype
        step = ours
    else:
        model = copy.deepcopy(base).to(device)
        loss_fn = SegLoss(args.classes).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        amp_dtype = None
        if amp and cuda:
            amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
        step = _plain_step(model, loss_fn, opt, scaler, amp_dtype, device.type)
        x = torch.from_numpy(x_np).to(device)
        y = torch.from_numpy(y_np).to(device).long()
    for _ in range(args.warmup):
        step(x, y)
    if cuda:
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step(x, y)
    if cuda:
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    peak = (torch.cuda.max_memory_allocated(device) - before) / 2**20 if cuda else None
    del step, x, y
    return {"images_per_s": args.steps * args.batch / seconds, "peak_mib": peak,
            "amp_dtype": str(amp_dtype).replace("torch.", "") if amp_dtype else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu for a smoke run")
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--patch", type=int, default=256)
    ap.add_argument("--channels", type=int, default=3)
    ap.add_argument("--classes", type=int, default=4)
    ap.add_argument("--steps", type=int, default=30, help="timed steps per configuration and round")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps first (cudnn autotuning)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--compile", action="store_true", help="torch.compile our step too")
    args = ap.parse_args()

    from segstudio.ml.allocator import tune_allocator

    tune_allocator()                  # as `segstudio-cli train` does (CPU: glibc keeps its heap)
    import torch

    from segstudio.ml.device import describe, pick_device
    from segstudio.ml.models import build_model
    from segstudio.ml.train import TrainConfig

    device = pick_device(args.device)
    cfg = TrainConfig(preset=args.preset, batch_size=args.batch, patch_size=args.patch,
                      compile=args.compile)
    spec = cfg.model_spec()
    name = spec.pop("name")
    torch.manual_seed(0)
    base = build_model(name, args.channels, args.classes, **spec)
    gen = torch.Generator().manual_seed(0)
    x_np = torch.randn(args.batch, args.channels, args.patch, args.patch, generator=gen).numpy()
    y = torch.randint(0, args.classes, (args.batch, args.patch, args.patch), generator=gen)
    y[:, :8] = 255                                   # some unlabelled pixels, as in scribbles
    y_np = y.to(torch.uint8).numpy()

    # untimed: the first configuration would otherwise pay for CUDA context, cuDNN/oneDNN
    # kernel selection and allocator pools of the whole process
    warm = argparse.Namespace(**{**vars(args), "steps": 1})
    measure("ours_amp", base, warm, cfg, device, x_np, y_np)
    measure("plain_amp", base, warm, cfg, device, x_np, y_np)
    runs: dict[str, list[dict]] = {c: [] for c in CONFIGS}
    for r in range(args.rounds):
        order = CONFIGS[r % len(CONFIGS):] + CONFIGS[:r % len(CONFIGS)]   # rotate who goes first
        for c in order:
            runs[c].append(measure(c, base, args, cfg, device, x_np, y_np))

    def summary(c: str) -> dict:
        ips = [m["images_per_s"] for m in runs[c]]
        peaks = [m["peak_mib"] for m in runs[c] if m["peak_mib"] is not None]
        return {"images_per_s": round(statistics.median(ips), 3),
                "rounds": [round(v, 3) for v in ips],
                "peak_mib": round(max(peaks), 1) if peaks else None}

    out = {c: summary(c) for c in CONFIGS}
    ratio = lambda a, b: round(out[a]["images_per_s"] / out[b]["images_per_s"], 3)  # noqa: E731
    cuda = device.type == "cuda"
    print(json.dumps({
        "benchmark": "gpu_train", "cuda": cuda, "device": describe(device),
        "torch": torch.__version__, "preset": args.preset, "model": name,
        "batch": args.batch, "patch": args.patch, "channels": args.channels,
        "classes": args.classes, "steps": args.steps, "rounds": args.rounds,
        "compile": args.compile, "amp_dtype": runs["ours_amp"][0]["amp_dtype"],
        **out,
        "ours_amp_vs_plain_amp": ratio("ours_amp", "plain_amp"),
        "ours_amp_vs_ours_fp32": ratio("ours_amp", "ours_fp32"),
        "targets": {"ours_amp_vs_plain_amp": 0.95, "ours_amp_vs_ours_fp32": 2.0},
        "note": None if cuda else "no CUDA: autocast off, AMP rows are fp32; smoke run only",
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
