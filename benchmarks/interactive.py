"""NoC@IoU of the click model against the classical tools, same robot clicks, one JSON line.

    python benchmarks/interactive.py DATASET [--minutes M] [--model RUN] [--max-clicks 20]
        [--iou 0.85] [--objects N] [--threads 1] [--seed 0]

DATASET has images/ and masks/ (instances/ when present: one object per stored id, else one
per connected region of one class), the layout of benchmarks/accuracy.py.

- `--minutes M`: a click model is trained here, within M minutes (CPU, or the GPU when there
  is one), on the train and val images of accuracy.py's name-hash split, with the product's
  default ClickConfig; the test split's objects are measured. Without it, --model (default:
  the bundled starter) is measured on every image its model card does not list.
- The standard robot (RITM / SAM protocol): the first click at the object's interior point
  farthest from its edge, each next click at the centre of the largest error region (positive
  in a false negative, negative in a false positive), at most --max-clicks. NoC@t: clicks
  until IoU >= t; an object that never gets there counts --max-clicks (the standard rule),
  and failedT gives their share.
- Baselines, same clicks, same process: the watershed tool (clicks = foreground / background
  seeds); the magic wand (union of the wand regions of the positive clicks less those of the
  negative ones; tolerance = f x the image's 0.5-99.5 percentile range, best f of 0.02, 0.04,
  0.08, 0.16 over the run, so the wand is tuned as a person would tune it); GrabCut (box =
  the positive clicks' bounding box grown by 0.75 x the median object side of the images
  used for training, the clicks as hard seeds). `best_classical_noc85` is the best of them and
  `ratio_noc85` ours / best.
- Latency: per click of the click model, after the image's preparation (its normalisation
  statistics; there is no embedding step).
- `--objects N` measures a seeded random sample of N test objects (0: every one).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

WAND_FACTORS = (0.02, 0.04, 0.08, 0.16)


def _read(path: Path) -> np.ndarray:
    from PIL import Image

    a = np.asarray(Image.open(path))
    if a.ndim == 3 and a.shape[2] == 4:
        a = a[..., :3]
    if a.ndim == 3 and np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 1], a[..., 2]):
        a = a[..., 0]
    return a


def load_item(dataset: Path, i: str):
    img = _read(dataset / "images" / f"{i}.png")
    mask = _read(dataset / "masks" / f"{i}.png")
    inst_path = dataset / "instances" / f"{i}.png"
    inst = _read(inst_path).astype(np.uint32) if inst_path.is_file() else None
    classes = frozenset(int(c) for c in np.unique(mask) if c not in (0, 255))
    return img, mask, inst, (classes if inst is not None else frozenset())


def run_protocol(propose, target, max_clicks, thresholds, class_id=None):
    """Clicks needed per IoU threshold (None when never reached) and seconds per click;
    `class_id`: the class the user has selected (the object's), which a class-aware model reads."""
    from segstudio.core.clicks import ClickPrompt
    from segstudio.ml import click_sim

    clicks = [click_sim.first_click(target)]
    prev = None
    reached: dict[float, int | None] = {t: None for t in thresholds}
    times = []
    for n in range(1, max_clicks + 1):
        t0 = time.perf_counter()
        pred = propose(ClickPrompt(tuple(clicks), None, prev, class_id))
        times.append(time.perf_counter() - t0)
        score = click_sim.iou(pred, target)
        for t in thresholds:
            if score >= t and reached[t] is None:
                reached[t] = n
        if all(v is not None for v in reached.values()):
            break
        c = click_sim.next_click(target, pred)
        if c is None:
            break
        clicks.append(c)
        prev = pred
    return reached, times


def _paste(prop, shape) -> np.ndarray:
    out = np.zeros(shape, bool)
    if not prop.empty:
        out[prop.rect.slices] = prop.region
    return out


def classical_tools(img: np.ndarray, obj_side: float) -> dict:
    """name -> propose(prompt) for the app's classical tools driven by the same clicks."""
    from segstudio.edit import regions

    shape = img.shape[:2]
    lo, hi = np.percentile(img, [0.5, 99.5])
    span = max(float(hi - lo), 1.0)

    def split(prompt):
        fg = [(int(c.y), int(c.x)) for c in prompt.clicks if c.positive]
        bg = [(int(c.y), int(c.x)) for c in prompt.clicks if not c.positive]
        return fg, bg

    def ws(prompt):
        fg, bg = split(prompt)
        return _paste(regions.watershed(img, fg, bg), shape)

    def wand(f):
        def propose(prompt):
            fg, bg = split(prompt)
            out = np.zeros(shape, bool)
            for pts, value in ((fg, True), (bg, False)):
                for y, x in pts:
                    out[_paste(regions.magic_wand(img, y, x, f * span), shape)] = value
            return out
        return propose

    def grabcut(prompt):
        fg, bg = split(prompt)
        ys, xs = [p[0] for p in fg], [p[1] for p in fg]
        pad = 0.75 * obj_side
        p0, p1 = (min(ys) - pad, min(xs) - pad), (max(ys) + pad, max(xs) + pad)
        return _paste(regions.grabcut(img, p0, p1, fg_seeds=fg, bg_seeds=bg), shape)

    tools = {"watershed": ws, "grabcut": grabcut}
    tools.update({f"wand{f:g}": wand(f) for f in WAND_FACTORS})
    return tools


def train_here(dataset: Path, ids: list[str], minutes: float, threads: int, runs_dir: Path,
               seed: int, options: dict) -> Path:
    from segstudio.ml.click_model import ClickConfig, click_data, train_click_model

    items = []
    for i in ids:
        img, mask, inst, obj_classes = load_item(dataset, i)
        items.append((i, img, mask, inst, obj_classes))
    obj_classes = frozenset().union(*(it[4] for it in items))
    data = click_data([it[:4] for it in items], obj_classes)
    cfg = ClickConfig(**{"minutes": minutes, "steps": 10 ** 9, "threads": threads, "seed": seed,
                         **options})
    res = train_click_model(data, cfg, runs_dir=runs_dir)
    print(f"trained {res.run_dir.name}: {res.steps} steps in {res.elapsed_s:.0f} s "
          f"({len(data.objects)} objects, {len(data.images)} images)", file=sys.stderr)
    return res.run_dir


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", type=Path)
    ap.add_argument("--minutes", type=float, default=None)
    ap.add_argument("--model", type=Path, default=REPO / "models" / "starter-click-nuclei")
    ap.add_argument("--max-clicks", type=int, default=20)
    ap.add_argument("--iou", type=float, default=0.85)
    ap.add_argument("--objects", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="a ClickConfig field for the run trained here (repeatable)")
    ap.add_argument("--runs-dir", type=Path, default=None,
                    help="keep the run trained here in this folder (default: a temporary one)")
    ap.add_argument("--threshold", type=float, default=None,
                    help="probability cut instead of the run's own (0.5)")
    args = ap.parse_args()
    options = {}
    for item in args.set:
        key, _, value = item.partition("=")
        try:
            options[key] = json.loads(value)          # numbers, true/false, null
        except json.JSONDecodeError:
            options[key] = value                      # a plain word: cpu, cuda, ...

    import torch

    torch.set_num_threads(args.threads)
    from accuracy import split_of
    from segstudio.ml import click_sim
    from segstudio.ml.click_backend import OursBackend

    all_ids = sorted(p.stem for p in (args.dataset / "images").glob("*.png"))
    tmp = tempfile.TemporaryDirectory()
    if args.minutes is not None:
        train_ids = [i for i in all_ids if split_of(i) != "test"]
        test_ids = [i for i in all_ids if split_of(i) == "test"]
        run_dir = train_here(args.dataset, train_ids, args.minutes, args.threads,
                             args.runs_dir or Path(tmp.name), args.seed, options)
    else:
        run_dir = args.model
    backend = OursBackend(run_dir)
    if args.threshold is not None:
        backend.model.threshold = args.threshold
    if args.minutes is None:
        train_ids = list((backend.model.card.get("data") or {}).get("images") or [])
        test_ids = [i for i in all_ids if i not in set(train_ids)]
    sides = []
    for i in train_ids:
        if (args.dataset / "images" / f"{i}.png").is_file():
            _, mask, inst, oc = load_item(args.dataset, i)
            sides += [max(r.box[2] - r.box[0], r.box[3] - r.box[1])
                      for r in click_sim.object_refs(click_sim.object_labels(mask, inst, oc), 0)]
    obj_side = float(np.median(sides)) if sides else 32.0

    refs = []
    for k, i in enumerate(test_ids):
        _, mask, inst, oc = load_item(args.dataset, i)
        refs += [(k, r.label, r.cls) for r in click_sim.object_refs(
            click_sim.object_labels(mask, inst, oc), k, mask=mask)]
    total = len(refs)
    if args.objects and args.objects < total:
        pick = np.random.default_rng(args.seed).choice(total, args.objects, replace=False)
        refs = [refs[j] for j in sorted(pick)]

    thresholds = sorted({args.iou, 0.90})
    names = ["ours", "watershed", "grabcut"] + [f"wand{f:g}" for f in WAND_FACTORS]
    got = {n: {t: [] for t in thresholds} for n in names}
    latencies: list[float] = []
    classes_of: list[int] = []          # each object's class (the mask's value under it)
    cached = None
    for k, label, obj_class in refs:
        i = test_ids[k]
        if cached is None or cached[0] != k:
            img, mask, inst, oc = load_item(args.dataset, i)
            labels = click_sim.object_labels(mask, inst, oc)
            backend.prepare(i, img)
            cached = (k, img, labels, classical_tools(img, obj_side))
        _, img, labels, tools = cached
        target = labels == label
        classes_of.append(obj_class)
        tools = {"ours": lambda p: backend.propose(i, img, p), **tools}
        for name in names:
            reached, times = run_protocol(tools[name], target, args.max_clicks, thresholds,
                                          classes_of[-1])
            if name == "ours":
                latencies += times
            for t in thresholds:
                got[name][t].append(reached[t])

    def noc(values):
        return round(float(np.mean([args.max_clicks if v is None else v for v in values])), 2)

    def failed(values):
        return round(float(np.mean([v is None for v in values])), 3)

    lat = np.array(latencies) * 1000
    result = {"dataset": args.dataset.name, "model": backend.model.run_id,
              "class_aware": list(backend.model.class_ids),
              "model_steps": backend.model.card.get("steps"),
              "trained_minutes": args.minutes, "objects": len(refs), "test_objects": total,
              "test_images": len(test_ids), "max_clicks": args.max_clicks,
              "threads": args.threads, "seed": args.seed,
              "set": options, "threshold": backend.model.threshold}
    best_f = min(WAND_FACTORS, key=lambda f: noc(got[f"wand{f:g}"][args.iou]))
    shown = {"ours": "", "watershed": "watershed_", "grabcut": "grabcut_",
             f"wand{best_f:g}": "wand_"}
    for t in thresholds:
        key = f"{round(t * 100)}"
        for name, prefix in shown.items():
            result[f"{prefix}noc{key}"] = noc(got[name][t])
            result[f"{prefix}failed{key}"] = failed(got[name][t])
    result["wand_tolerance_factor"] = best_f
    key = f"{round(args.iou * 100)}"
    best = min(result[f"{p}noc{key}"] for p in ("watershed_", "grabcut_", "wand_"))
    result[f"best_classical_noc{key}"] = best
    result[f"ratio_noc{key}"] = round(result[f"noc{key}"] / best, 3)
    cls = np.array(classes_of)
    if len(np.unique(cls)) > 1:         # per class: which kind of object costs the clicks
        result[f"noc{key}_by_class"] = {
            str(c): {n: noc([v for v, k in zip(got[n][args.iou], cls) if k == c])
                     for n in ("ours", "grabcut")} | {"objects": int((cls == c).sum())}
            for c in np.unique(cls)}
    result["latency_ms_p50"] = round(float(np.percentile(lat, 50)), 1)
    result["latency_ms_p95"] = round(float(np.percentile(lat, 95)), 1)
    print(json.dumps(result))
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
