"""NoC@IoU for the click model against the watershed tool, same robot clicks, one JSON line.

    python benchmarks/interactive.py DATASET [--model RUN] [--max-clicks 20] [--iou 0.85]
        [--objects 200] [--threads 1]

DATASET has images/ and masks/ (instances/ when present: one object per stored id, else one
per connected region of one class). Objects of images the model card lists as training data
are left out. The standard robot: the first click at the object's interior point farthest from
its edge, each next click at the centre of the largest error region (positive in a false
negative, negative in a false positive), at most --max-clicks. The watershed tool
(segstudio/edit/regions.watershed: the app's seed-based classical tool) gets the same clicks
as foreground / background seeds. Latency: per click of the click model, after the image's
preparation (its normalisation statistics; there is no embedding step).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _read(path: Path) -> np.ndarray:
    from PIL import Image

    a = np.asarray(Image.open(path))
    if a.ndim == 3 and a.shape[2] == 4:
        a = a[..., :3]
    if a.ndim == 3 and np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 1], a[..., 2]):
        a = a[..., 0]
    return a


def run_protocol(propose, target, max_clicks, thresholds):
    """Clicks needed per IoU threshold (max_clicks + 1 when never reached)."""
    from segstudio.core.clicks import ClickPrompt
    from segstudio.ml import click_sim

    clicks = [click_sim.first_click(target)]
    prev = None
    reached = {t: max_clicks + 1 for t in thresholds}
    times = []
    for n in range(1, max_clicks + 1):
        t0 = time.perf_counter()
        pred = propose(ClickPrompt(tuple(clicks), None, prev))
        times.append(time.perf_counter() - t0)
        score = click_sim.iou(pred, target)
        for t in thresholds:
            if score >= t and reached[t] > max_clicks:
                reached[t] = n
        if all(v <= max_clicks for v in reached.values()):
            break
        c = click_sim.next_click(target, pred)
        if c is None:
            break
        clicks.append(c)
        prev = pred
    return reached, times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", type=Path)
    ap.add_argument("--model", type=Path, default=REPO / "models" / "starter-click-nuclei")
    ap.add_argument("--max-clicks", type=int, default=20)
    ap.add_argument("--iou", type=float, default=0.85)
    ap.add_argument("--objects", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from segstudio.edit.regions import watershed
    from segstudio.ml import click_sim
    from segstudio.ml.click_backend import OursBackend

    backend = OursBackend(args.model)
    trained_on = set((backend.model.card.get("data") or {}).get("images") or [])
    ids = sorted(p.stem for p in (args.dataset / "images").glob("*.png") if p.stem not in trained_on)
    thresholds = sorted({args.iou, 0.90})
    ours = {t: [] for t in thresholds}
    classic = {t: [] for t in thresholds}
    latencies: list[float] = []
    n_obj = 0
    for i in ids:
        if n_obj >= args.objects:
            break
        img = _read(args.dataset / "images" / f"{i}.png")
        mask = _read(args.dataset / "masks" / f"{i}.png")
        inst_path = args.dataset / "instances" / f"{i}.png"
        inst = _read(inst_path).astype(np.uint32) if inst_path.is_file() else None
        classes = frozenset(int(c) for c in np.unique(mask) if c not in (0, 255))
        labels = click_sim.object_labels(mask, inst, classes if inst is not None else frozenset())
        backend.prepare(i, img)
        for ref in click_sim.object_refs(labels, 0):
            if n_obj >= args.objects:
                break
            n_obj += 1
            target = labels == ref.label
            got, times = run_protocol(lambda p: backend.propose(i, img, p), target,
                                      args.max_clicks, thresholds)
            latencies += times
            for t in thresholds:
                ours[t].append(got[t])

            def ws(prompt):
                fg = [(int(c.y), int(c.x)) for c in prompt.clicks if c.positive]
                bg = [(int(c.y), int(c.x)) for c in prompt.clicks if not c.positive]
                prop = watershed(img, fg, bg)
                out = np.zeros(target.shape, bool)
                if not prop.empty:
                    out[prop.rect.slices] = prop.region
                return out

            got, _ = run_protocol(ws, target, args.max_clicks, thresholds)
            for t in thresholds:
                classic[t].append(got[t])
    lat = np.array(latencies) * 1000
    key = {t: f"noc{round(t * 100)}" for t in thresholds}
    result = {"dataset": args.dataset.name, "model": str(backend.model.run_id),
              "objects": n_obj, "test_images": len(ids), "max_clicks": args.max_clicks,
              "threads": args.threads}
    for t in thresholds:
        result[key[t]] = round(float(np.mean(ours[t])), 2)
        result[f"failed{round(t * 100)}"] = round(float(np.mean(np.array(ours[t]) > args.max_clicks)), 3)
        result[f"watershed_{key[t]}"] = round(float(np.mean(classic[t])), 2)
        result[f"watershed_failed{round(t * 100)}"] = round(
            float(np.mean(np.array(classic[t]) > args.max_clicks)), 3)
    result["latency_ms_p50"] = round(float(np.percentile(lat, 50)), 1)
    result["latency_ms_p95"] = round(float(np.percentile(lat, 95)), 1)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
