"""Tiled inference speed: our predictor against MONAI's sliding_window_inference.

Prints one JSON line. Both sides run the same model on the same 4096 x 4096 RGB image with
256 px tiles, overlap 0.25 and the same Gaussian weights (MONAI gets ours as roi_weight_map,
so the outputs must agree); both produce full float32 class probabilities, normalisation
included in the time. Without MONAI installed, the baseline is a plain sliding-window loop
over a whole-image float32 tensor, the way such loops are usually written.

    python benchmarks/tiled_inference.py [--size 4096] [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from segstudio.ml.predict import (Normalisation, TileOptions, gaussian_weights,  # noqa: E402
                                  predict_probabilities, tile_starts)


class BenchNet(nn.Module):
    """A small two-level U-Net: the size of model a labelling session trains on a CPU."""

    def __init__(self, in_channels: int = 3, num_classes: int = 3, width: int = 16) -> None:
        super().__init__()

        def block(a: int, b: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(a, b, 3, padding=1), nn.BatchNorm2d(b), nn.ReLU(True))

        self.enc1 = block(in_channels, width)
        self.enc2 = nn.Sequential(nn.MaxPool2d(2), block(width, 2 * width), block(2 * width,
                                                                               2 * width))
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.dec = block(3 * width, width)
        self.head = nn.Conv2d(width, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.enc1(x)
        b = self.up(self.enc2(a))
        return self.head(self.dec(torch.cat([a, b], 1)))


def peak_reset() -> None:
    """Reset the kernel's peak-RSS mark (VmHWM) so each phase is measured on its own."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_mb() -> float:
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_image(size: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (size // 32 + 1, size // 32 + 1, 3), dtype=np.uint8)
    img = np.repeat(np.repeat(small, 32, 0), 32, 1)[:size, :size]   # blobs, like real content
    noise = rng.integers(0, 32, (size, size, 3), dtype=np.uint8)
    return np.ascontiguousarray(img // 2 + noise)


def plain_sliding_window(model: nn.Module, image: np.ndarray, norm: Normalisation, tile: int,
                         overlap: float, batch: int, weights: np.ndarray) -> np.ndarray:
    """The usual loop: normalise the whole image, full-size float32 sums, one add per tile."""
    x = torch.from_numpy(norm(image))
    h, w = x.shape[1:]
    wt = torch.from_numpy(weights)
    out = None
    count = torch.zeros(h, w)
    boxes = [(y, xx) for y in tile_starts(h, tile, overlap) for xx in tile_starts(w, tile, overlap)]
    with torch.inference_mode():
        for i in range(0, len(boxes), batch):
            part = boxes[i:i + batch]
            tiles = torch.stack([x[:, y:y + tile, xx:xx + tile] for y, xx in part])
            p = torch.softmax(model(tiles), 1)
            if out is None:
                out = torch.zeros(p.shape[1], h, w)
            for k, (y, xx) in enumerate(part):
                out[:, y:y + tile, xx:xx + tile] += p[k] * wt
                count[y:y + tile, xx:xx + tile] += wt
    assert out is not None
    return (out / count).numpy()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--overlap", type=float, default=0.25)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--classes", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=1, help="best of N timings per method")
    ap.add_argument("--no-monai", action="store_true", help="use the plain baseline")
    args = ap.parse_args()

    torch.manual_seed(0)
    model = BenchNet(3, args.classes).eval()
    image = test_image(args.size)
    norm = Normalisation(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), in_channels=3)
    opts = TileOptions(tile=args.tile, overlap=args.overlap, batch_size=args.batch)
    weights = gaussian_weights(args.tile, opts.sigma_scale, opts.min_weight)

    swi = None
    why_plain = "--no-monai"
    if not args.no_monai:
        try:
            from monai.inferers import sliding_window_inference as swi
        except ImportError:
            swi, why_plain = None, "monai not installed"
    if swi is not None:
        import monai

        baseline = f"monai {monai.__version__} sliding_window_inference"
        roi_map = torch.from_numpy(weights)

        def run_baseline() -> np.ndarray:
            x = torch.from_numpy(norm(image))[None]
            with torch.inference_mode():
                y = swi(x, (args.tile, args.tile), args.batch,
                        lambda t: torch.softmax(model(t), 1), overlap=args.overlap,
                        mode="gaussian", roi_weight_map=roi_map)
            return y[0].numpy()
    else:
        baseline = f"plain sliding window ({why_plain})"

        def run_baseline() -> np.ndarray:
            return plain_sliding_window(model, image, norm, args.tile, args.overlap, args.batch,
                                        weights)

    def run_ours() -> np.ndarray:
        return predict_probabilities(model, image, norm, opts)

    # warm up both (oneDNN kernel selection, allocator) on a small crop
    small = image[:2 * args.tile, :2 * args.tile]
    with torch.inference_mode():
        model(torch.from_numpy(norm(small))[None])
    predict_probabilities(model, small, norm, opts)

    # interleaved, best of N each: other work on a shared machine hits both sides alike
    best = {"base": float("inf"), "ours": float("inf")}
    peak = {"base": 0.0, "ours": 0.0}
    outs: dict[str, np.ndarray] = {}
    for _ in range(args.repeat):
        for key, fn in (("base", run_baseline), ("ours", run_ours)):
            outs.pop(key, None)
            peak_reset()
            before = peak_mb()
            t0 = time.perf_counter()
            outs[key] = fn()
            best[key] = min(best[key], time.perf_counter() - t0)
            peak[key] = max(peak[key], peak_mb() - before)
    t_base, t_ours = best["base"], best["ours"]
    out_base, out_ours = outs["base"], outs["ours"]
    mem_base, mem_ours = peak["base"], peak["ours"]
    mp = args.size * args.size / 1e6
    print(json.dumps({
        "benchmark": "tiled_inference",
        "image": f"{args.size}x{args.size}x3 uint8", "tile": args.tile, "overlap": args.overlap,
        "blending": "gaussian", "batch": args.batch, "model": "BenchNet (2-level U-Net, 16 ch)",
        "classes": args.classes, "threads": torch.get_num_threads(),
        "ours_mp_per_s": round(mp / t_ours, 3), "baseline_mp_per_s": round(mp / t_base, 3),
        "ratio": round(t_base / t_ours, 3), "baseline": baseline,
        "max_abs_diff": float(np.abs(out_ours - out_base).max()),
        "outputs_equal_within_1e-4": bool(np.abs(out_ours - out_base).max() < 1e-4),
        "ours_does": "row bands, channels_last, BatchNorm folded into convs",
        "peak_rss_mb_ours": round(mem_ours, 1), "peak_rss_mb_baseline": round(mem_base, 1),
        "peak_rss_mb_process": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "torch": torch.__version__, "cpu_count": os.cpu_count(),
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
