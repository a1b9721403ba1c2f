"""Why objects are missed: each true object of a project's images sorted by what a run made
of it, and each predicted object that matches none; for one or several seed margins.

    python benchmarks/object_errors.py PROJECT INSTANCES_DIR [--split test] [--run RUN_ID]
        [--checkpoint best|last] [--seed-margins 0,0.6,0.8,0.9,0.95]

INSTANCES_DIR holds the true object ids (uint16 PNG/TIFF, 0 = background) named by image id
(`<id>.png`). The run's objects come from the product's predictor (`predict_tiled` with the
run's object head; `--seed-margins` replaces the head's `seed_margin`, the probability by which
an object class must beat the boundary for a pixel to seed an object, one read-out each). A
true object is

- "matched": a predicted object overlaps it at IoU >= 0.5 (the AP@0.5 rule);
- "merged": the predicted object covering most of it also covers > 30 % of another true one;
- "missed": predicted objects cover < 20 % of it;
- "poor": the rest (found, but its outline is off).

A predicted object without a match is "spurious" (< 20 % of it on true objects), "split" (its
true object is shared by two or more predictions) or "poor". Prints ONE JSON line with, per
margin, the counts, the median equivalent diameter of the objects in each group, and AP@0.5,
AP@0.75 and mean AP 0.5-0.95 by `segstudio.core.metrics` (as `benchmarks/instances.py`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def classify(truth: np.ndarray, pred: np.ndarray) -> tuple[dict, dict, dict]:
    """(true-object groups, predicted-object groups, diameters per true group)."""
    t, p = truth.astype(np.int64), pred.astype(np.int64)
    nt, npr = int(t.max()) + 1, int(p.max()) + 1
    inter = np.bincount((t * npr + p).ravel(), minlength=nt * npr).reshape(nt, npr)
    area_t, area_p = inter.sum(1), inter.sum(0)
    iou = inter / np.maximum(area_t[:, None] + area_p[None, :] - inter, 1)
    true_groups = {"matched": 0, "merged": 0, "missed": 0, "poor": 0}
    pred_groups = {"spurious": 0, "split": 0, "poor": 0}
    diam: dict[str, list[float]] = {k: [] for k in true_groups}
    for i in range(1, nt):
        if area_t[i] == 0:
            continue
        on_pred = inter[i, 1:]
        if npr > 1 and iou[i, 1:].max() >= 0.5:
            group = "matched"
        elif on_pred.sum() < 0.2 * area_t[i]:
            group = "missed"
        else:
            j = int(np.argmax(on_pred)) + 1
            others = inter[1:, j].astype(np.float64)
            others[i - 1] = 0
            group = "merged" if (others > 0.3 * area_t[1:]).any() else "poor"
        true_groups[group] += 1
        diam[group].append(float(np.sqrt(4 * area_t[i] / np.pi)))
    for j in range(1, npr):
        if area_p[j] == 0 or (nt > 1 and iou[1:, j].max() >= 0.5):
            continue
        if inter[1:, j].sum() < 0.2 * area_p[j]:
            pred_groups["spurious"] += 1
            continue
        i = int(np.argmax(inter[1:, j])) + 1
        shared = (inter[i, 1:] > 0.2 * area_t[i]).sum() >= 2
        pred_groups["split" if shared else "poor"] += 1
    return true_groups, pred_groups, diam


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("project", type=Path)
    ap.add_argument("instances", type=Path)
    ap.add_argument("--split", default="test")
    ap.add_argument("--run", default=None, help="run id (default: the newest run)")
    ap.add_argument("--checkpoint", choices=("best", "last"), default="best")
    ap.add_argument("--seed-margins", default=None,
                    help="comma-separated seed margins (default: the run's own)")
    args = ap.parse_args()

    from dataclasses import replace

    from segstudio.core.metrics import object_counts, pooled
    from segstudio.io.project import Project
    from segstudio.ml.predict import predict_tiled
    from segstudio.ml.runs import list_runs, load_run_model

    project = Project.open(args.project)
    runs = list_runs(project.runs_dir)
    card = next((r for r in runs if args.run in (None, Path(r["run_dir"]).name)), None)
    if card is None:
        raise SystemExit(f"{args.project}: no run {args.run or ''} to look at")
    loaded = load_run_model(project.root, Path(card["run_dir"]) / f"{args.checkpoint}.pt")
    if loaded.objects is None:
        raise SystemExit(f"run {Path(card['run_dir']).name} has no object classes")
    margins = ([float(m) for m in args.seed_margins.split(",")] if args.seed_margins
               else [loaded.objects.seed_margin])
    cases = []
    for entry in project.images:
        hits = sorted(args.instances.glob(f"{entry.id}.*"))
        if entry.split == args.split and hits:
            cases.append((entry, cv2.imread(str(hits[0]), cv2.IMREAD_UNCHANGED)))
    if not cases:
        raise SystemExit(f"no {args.split} image of {args.project} has a file in {args.instances}")
    by_margin = {}
    for margin in margins:
        head = replace(loaded.objects, seed_margin=margin)
        totals = {"matched": 0, "merged": 0, "missed": 0, "poor": 0}
        false = {"spurious": 0, "split": 0, "poor": 0}
        diam: dict[str, list[float]] = {k: [] for k in totals}
        counts = []
        for entry, truth in cases:
            data = project.read_image(entry).data
            pred = predict_tiled(loaded.model, data, loaded.normalise, uncertainty=False,
                                 objects=head).objects
            t, p, d = classify(truth, pred)
            for k in totals:
                totals[k] += t[k]
                diam[k] += d[k]
            for k in false:
                false[k] += p[k]
            counts.append(object_counts(truth, pred))
        c = pooled(counts)
        fn = totals["merged"] + totals["missed"] + totals["poor"]
        by_margin[str(margin)] = {
            "ap50": round(c.ap(0.5), 4), "ap75": round(c.ap(0.75), 4),
            "mean_ap": round(c.mean_ap, 4), "true_objects": totals,
            "unmatched_predictions": false,
            "median_diameter_px": {k: (round(float(np.median(v)), 1) if v else None)
                                   for k, v in diam.items()},
            "share_of_misses_merged": round(totals["merged"] / max(fn, 1), 3)}
    print(json.dumps({
        "benchmark": "object_errors", "project": args.project.name,
        "run": Path(card["run_dir"]).name, "checkpoint": args.checkpoint,
        "epoch": card["metrics"].get("best_epoch") if args.checkpoint == "best"
        else card["epochs"], "split": args.split, "images": len(cases),
        "run_seed_margin": loaded.objects.seed_margin, "by_seed_margin": by_margin}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
