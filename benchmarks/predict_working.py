"""Predicting a radiograph-sized image at a working size, with masks back at full size.

A 3000 x 3000 grey image (a chest film's size) goes through the "fast" U-Net the plan gives
such a project (depth 4) with the run's working scale "longer side 256 px": the image is
resampled, predicted at 256 px and the class probabilities are brought back to 3000 x 3000,
where labels, entropy and margin are computed. Baseline in the same run: the same model on the
same image at full resolution (what every run did before the plan). Prints one JSON line with
the median of `--repeats` warm runs and the ratio baseline / working.

    python benchmarks/predict_working.py [--size 3000] [--working 256] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from segstudio.ml.models import build_model  # noqa: E402
from segstudio.ml.normalise import Normalisation  # noqa: E402
from segstudio.ml.predict import predict_tiled  # noqa: E402
from segstudio.ml.resample import WorkingScale  # noqa: E402


def radiograph(size: int) -> np.ndarray:
    """Two dark lung fields in a brighter body, with noise: the shapes of a chest film."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size].astype(np.float32) / size
    img = 180 - 60 * (((xx - 0.3) / 0.15) ** 2 + ((yy - 0.5) / 0.3) ** 2 < 1)
    img = img - 60 * (((xx - 0.7) / 0.15) ** 2 + ((yy - 0.5) / 0.3) ** 2 < 1)
    img = img + rng.normal(0, 8, (size, size)).astype(np.float32)
    return img.clip(0, 255).astype(np.uint8)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=3000)
    ap.add_argument("--working", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.manual_seed(0)
    model = build_model("unet", 1, 3, depth=4, width=16).eval()
    image = radiograph(args.size)
    working = Normalisation("percentile", in_channels=1,
                            working=WorkingScale("long_side", long_side=args.working))
    native = Normalisation("percentile", in_channels=1)
    predict_tiled(model, image, working)                 # warm-up: oneDNN kernels, allocator
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        pred = predict_tiled(model, image, working)
        times.append(time.perf_counter() - t)
    assert pred.labels.shape == image.shape
    t = time.perf_counter()
    full = predict_tiled(model, image, native)
    baseline = time.perf_counter() - t
    assert full.labels.shape == image.shape
    median = statistics.median(times)
    print(json.dumps({"benchmark": "predict_working", "size": args.size,
                      "working_long_side": args.working, "repeats": args.repeats,
                      "median_s": round(median, 3), "min_s": round(min(times), 3),
                      "baseline_full_resolution_s": round(baseline, 2),
                      "ratio": round(baseline / median, 1), "threads": torch.get_num_threads(),
                      "cpus": os.cpu_count(), "output_shape": list(pred.labels.shape),
                      "uncertainty": True}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
