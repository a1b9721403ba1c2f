"""Peak memory of predicting one huge image: 16000 x 16000 RGB by default.

Prints one JSON line with the wall time and the process's peak RSS (VmHWM), which includes
the 768 MB image itself, the uint8 labels and the float16 entropy and margin maps. The model
is deliberately small (this measures the predictor's memory, not a network's speed on CPU).

    python benchmarks/predict_large.py [--size 16000] [--tile 512] [--no-uncertainty]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from segstudio.ml.predict import Normalisation, TileOptions, count_tiles, predict_tiled  # noqa


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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=16000)
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--overlap", type=float, default=0.25)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--classes", type=int, default=3)
    ap.add_argument("--no-uncertainty", action="store_true")
    args = ap.parse_args()

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Conv2d(8, args.classes, 1)).eval()
    image = huge_image(args.size)
    before = rss_mb("VmRSS")
    opts = TileOptions(tile=args.tile, overlap=args.overlap, batch_size=args.batch)
    t0 = time.perf_counter()
    pred = predict_tiled(model, image, Normalisation(in_channels=3), opts,
                         uncertainty=not args.no_uncertainty)
    seconds = time.perf_counter() - t0
    outputs = sum(a.nbytes for a in (pred.labels, pred.entropy, pred.margin) if a is not None)
    peak = rss_mb("VmHWM")
    print(json.dumps({
        "benchmark": "predict_large", "image": f"{args.size}x{args.size}x3 uint8",
        "tile": args.tile, "overlap": args.overlap, "batch": args.batch,
        "classes": pred.num_classes, "tiles": count_tiles(args.size, args.size, opts),
        "uncertainty": not args.no_uncertainty, "seconds": round(seconds, 1),
        "mp_per_s": round(args.size * args.size / 1e6 / seconds, 2),
        "image_mb": round(image.nbytes / 2**20, 1), "outputs_mb": round(outputs / 2**20, 1),
        "rss_before_mb": round(before, 1), "peak_rss_mb": round(peak, 1),
        "float32_probability_map_would_be_mb": round(
            pred.num_classes * args.size * args.size * 4 / 2**20, 1),
        "target_peak_rss_mb": 4096, "ok": peak < 4096,
        "labels_checksum": int(pred.labels[:: max(1, args.size // 1000)].sum()),
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
