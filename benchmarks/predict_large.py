"""Peak memory of predicting one huge image: 16000 x 16000 RGB by default.

Prints one JSON line with the wall time and the peak RSS (VmHWM) of our tiled predictor, at
the product's tile and batch defaults (`TileOptions()`, those of Predict and Measure), which
includes the 768 MB image itself, the uint8 labels and the float16 entropy and margin maps. The
model is deliberately small (this measures the predictor's memory, not a network's speed).

Baseline in the same run: MONAI's `sliding_window_inference` on the same image, model, tile,
overlap 0.25 (Gaussian) and batch, returning class ids as ours does. Each side runs in its own
child process, so each peak RSS is its own. MONAI is not a SegStudio dependency: the baseline
runs with `--monai-python` (default: the anchors' venv that side_by_side.sh makes, else this
Python) and is reported as missing, with the reason, where MONAI cannot be imported.

    python benchmarks/predict_large.py [--size 16000] [--tile T] [--batch B] [--no-monai]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from segstudio.ml.predict import TileOptions  # noqa: E402


def rss_mb(field: str) -> float:
    try:
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def huge_image(size: int) -> np.ndarray:
    """Structured content without a float temporary the size of the image."""
    rng = np.random.default_rng(0)
    patch = rng.integers(0, 256, (1000, 1000, 3), dtype=np.uint8)
    img = np.empty((size, size, 3), np.uint8)
    for y in range(0, size, 1000):
        for x in range(0, size, 1000):
            h, w = min(1000, size - y), min(1000, size - x)
            img[y:y + h, x:x + w] = np.roll(patch, (y // 7 + x // 13), axis=1)[:h, :w]
    return img


def small_model(classes: int):
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, classes, 1)).eval()


def run_ours(args) -> dict:
    from segstudio.ml.predict import Normalisation, count_tiles, predict_tiled

    model = small_model(args.classes)
    image = huge_image(args.size)
    before = rss_mb("VmRSS")
    opts = TileOptions(tile=args.tile, overlap=args.overlap, batch_size=args.batch)
    t0 = time.perf_counter()
    pred = predict_tiled(model, image, Normalisation(in_channels=3), opts,
                         uncertainty=not args.no_uncertainty)
    seconds = time.perf_counter() - t0
    outputs = sum(a.nbytes for a in (pred.labels, pred.entropy, pred.margin) if a is not None)
    return {"seconds": round(seconds, 1), "tiles": count_tiles(args.size, args.size, opts),
            "image_mb": round(image.nbytes / 2**20, 1), "outputs_mb": round(outputs / 2**20, 1),
            "rss_before_mb": round(before, 1), "peak_rss_mb": round(rss_mb("VmHWM"), 1),
            "labels_checksum": int(pred.labels[:: max(1, args.size // 1000)].sum())}


def run_monai(args) -> dict:
    """The same workload through MONAI: float32 input, Gaussian blending, argmax at the end."""
    import monai
    import torch
    from monai.inferers import sliding_window_inference

    model = small_model(args.classes)
    image = huge_image(args.size)
    before = rss_mb("VmRSS")
    t0 = time.perf_counter()
    with torch.inference_mode():
        x = torch.from_numpy(image).permute(2, 0, 1)[None].float().div_(255.0)
        mean = x.mean(dim=(2, 3), keepdim=True)
        std = x.std(dim=(2, 3), keepdim=True).clamp_min(1e-6)
        x.sub_(mean).div_(std)
        logits = sliding_window_inference(x, (args.tile, args.tile), args.batch, model,
                                          overlap=args.overlap, mode="gaussian")
        labels = logits.argmax(1)[0].to(torch.uint8).numpy()
    seconds = time.perf_counter() - t0
    return {"seconds": round(seconds, 1), "peak_rss_mb": round(rss_mb("VmHWM"), 1),
            "rss_before_mb": round(before, 1), "monai": monai.__version__,
            "labels_checksum": int(labels[:: max(1, args.size // 1000)].sum())}


def child(python: str, side: str, args) -> tuple[dict | None, str | None]:
    cmd = [python, str(Path(__file__).resolve()), "--side", side, "--size", str(args.size),
           "--tile", str(args.tile), "--overlap", str(args.overlap), "--batch", str(args.batch),
           "--classes", str(args.classes)] + (["--no-uncertainty"] if args.no_uncertainty else [])
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return None, f"{side} side failed: {last}"
    return json.loads(out.stdout.strip().splitlines()[-1]), None


def main() -> int:
    defaults = TileOptions()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=16000)
    ap.add_argument("--tile", type=int, default=defaults.tile)
    ap.add_argument("--overlap", type=float, default=defaults.overlap)
    ap.add_argument("--batch", type=int, default=defaults.batch_size)
    ap.add_argument("--classes", type=int, default=3)
    ap.add_argument("--no-uncertainty", action="store_true")
    ap.add_argument("--no-monai", action="store_true", help="skip the MONAI baseline")
    ap.add_argument("--monai-python", default=None,
                    help="a Python with MONAI (default: .venv-anchors, else this one)")
    ap.add_argument("--side", choices=("ours", "monai"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.side:
        print(json.dumps(run_ours(args) if args.side == "ours" else run_monai(args)))
        return 0

    ours, problem = child(sys.executable, "ours", args)
    if ours is None:
        raise SystemExit(problem)
    monai_side, why = None, "--no-monai"
    if not args.no_monai:
        anchors = REPO / ".venv-anchors" / "bin" / "python"
        python = args.monai_python or (str(anchors) if anchors.exists() else sys.executable)
        monai_side, why = child(python, "monai", args)
    opts = TileOptions(tile=args.tile, overlap=args.overlap, batch_size=args.batch)
    peak = ours["peak_rss_mb"]
    print(json.dumps({
        "benchmark": "predict_large", "image": f"{args.size}x{args.size}x3 uint8",
        "tile": opts.tile, "overlap": opts.overlap, "batch": opts.batch_size,
        "defaults": "TileOptions() (Predict and Measure)" if opts == TileOptions() else "changed",
        "classes": args.classes, "uncertainty": not args.no_uncertainty, **ours,
        "mp_per_s": round(args.size * args.size / 1e6 / ours["seconds"], 2),
        "float32_probability_map_would_be_mb": round(
            args.classes * args.size * args.size * 4 / 2**20, 1),
        "baseline": ("monai sliding_window_inference (float32 image and logits, Gaussian)"
                     if monai_side else None),
        "baseline_missing": None if monai_side else why,
        "baseline_peak_rss_mb": monai_side["peak_rss_mb"] if monai_side else None,
        "baseline_seconds": monai_side["seconds"] if monai_side else None,
        "peak_rss_ratio_ours_to_baseline": (round(peak / monai_side["peak_rss_mb"], 3)
                                            if monai_side else None),
        "target_peak_rss_mb": 4096, "ok": peak < 4096,
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
