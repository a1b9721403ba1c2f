"""Train from scratch through the CLI on a dataset folder and score a held-out split.

    python benchmarks/accuracy.py DATASET_DIR --minutes M [--seeds N] [--split hash|blocks]
        [--scribbles none|skeleton|human] [--ignore-class K] [--background K|none]
        [--upscale F] [--lateral] [--extra "train flags"]

DATASET_DIR holds images/<name>.*, masks/<name>.png (class ids) and a README; classes come from
classes.json beside the masks when present, else from the mask values (names from the README
where it lists them). `--split hash` (default) splits by a hash of the name: 20 % test (held
out, scored here), 10 % val (early stopping and best checkpoint), the rest train. `--split
blocks` is for video frames and other sequences: the sorted names are cut into 10 contiguous
blocks (test: blocks 2 and 7, val: block 5), and `--gap` frames next to a test or val block are
left out of training, so no test frame has a near-copy in training.

Labels: full masks, `--scribbles skeleton` (every object's skeleton: far more than a person
draws) or `--scribbles human` (one short stroke in 30 % of the objects of each class, at least
one per class and image, and three background strokes). Derived sets: `--upscale F` enlarges
images and masks by F (a project whose objects are much bigger than a patch); `--lateral`
turns class 1 into "left object" / "right object" by which half of the image each object's
centre lies in (a label that a left-right mirror swaps). `--seeds N` trains N runs (seeds 0..N-1)
and reports each, their mean and spread. The project is built in
a temporary folder and trained with `segstudio-cli train` (cli.main), so this measures the
path users run. Prints ONE JSON line with per-class Dice/IoU on the test split and mean_dice /
mean_iou over the classes other than background (0) and the ignored class.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from segstudio.core.classes import UNLABELED, LabelClass, default_color  # noqa: E402


def split_of(name: str) -> str:
    # salted: dsb2018_nuclei itself was selected by the SHA-1 of the names
    h = int(hashlib.sha256(f"segstudio-split:{name}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "test" if h < 0.2 else "val" if h < 0.3 else "train"


def block_splits(names: list[str], blocks: int = 10, gap: int = 3) -> dict[str, str | None]:
    """Contiguous blocks of the sorted names: test = blocks 2 and 7, val = block 5; training
    frames within `gap` of a test or val frame are left out (None)."""
    order = sorted(names)
    n = len(order)
    split = {}
    for i, name in enumerate(order):
        b = min(blocks - 1, i * blocks // max(n, 1))
        split[name] = "test" if b in (2, 7) else "val" if b == 5 else "train"
    held = [i for i, name in enumerate(order) if split[name] != "train"]
    for i, name in enumerate(order):
        if split[name] == "train" and any(abs(i - j) <= gap for j in held):
            split[name] = None
    return split


def human_scribbles(mask: np.ndarray, seed: int, share: float = 0.3, width: int = 3
                    ) -> np.ndarray:
    """Strokes as a person draws them: one short line inside 30 % of each class's objects (at
    least one), each up to 40 px, kept inside the object; three strokes on the background."""
    rng = np.random.default_rng(seed)
    out = np.full_like(mask, UNLABELED)
    kernel = np.ones((3, 3), np.uint8)
    for c in np.unique(mask):
        if c == UNLABELED:
            continue
        region = (mask == c).astype(np.uint8)
        n, comp, stats, _ = cv2.connectedComponentsWithStats(region, connectivity=8)
        ids = [i for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] >= 9]
        if not ids:
            continue
        k = 3 if c == 0 else max(1, int(round(share * len(ids))))
        picks = rng.choice(ids, size=min(k, len(ids)), replace=False) if c != 0 else \
            rng.choice(ids, size=k, replace=True)
        for i in picks:
            inner = cv2.erode((comp == i).astype(np.uint8), kernel, iterations=2)
            if not inner.any():
                inner = (comp == i).astype(np.uint8)
            ys, xs = np.nonzero(inner)
            j = int(rng.integers(len(ys)))
            ext = max(stats[i, cv2.CC_STAT_WIDTH], stats[i, cv2.CC_STAT_HEIGHT])
            length = min(40.0, 0.6 * ext) if c != 0 else 60.0
            a = float(rng.uniform(0, np.pi))
            dx, dy = np.cos(a) * length / 2, np.sin(a) * length / 2
            line = np.zeros_like(inner)
            cv2.line(line, (int(xs[j] - dx), int(ys[j] - dy)), (int(xs[j] + dx), int(ys[j] + dy)),
                     1, width)
            out[(line & inner).astype(bool)] = c
    return out


def lateral(mask: np.ndarray) -> np.ndarray:
    """Class 1's objects become 1 ("left object") or 2 ("right object") by the half of the
    image their centre lies in; other values stay."""
    out = mask.copy()
    n, comp, _stats, cents = cv2.connectedComponentsWithStats((mask == 1).astype(np.uint8), 8)
    w = mask.shape[1]
    for i in range(1, n):
        if cents[i][0] >= w / 2:
            out[comp == i] = 2
    return out


def read_classes(dataset: Path, mask_files: list[Path]) -> list[tuple[int, str]]:
    """(id, name) pairs: classes.json, else the mask values named from the README if it says."""
    for where in (dataset / "masks" / "classes.json", dataset / "classes.json"):
        if where.is_file():
            raw = json.loads(where.read_text())
            if isinstance(raw, dict):
                return sorted((int(k), str(v)) for k, v in raw.items())
            return sorted((int(c["id"]), str(c["name"])) for c in raw)
    values: set[int] = set()
    for f in mask_files:
        values |= set(np.unique(cv2.imread(str(f), cv2.IMREAD_UNCHANGED)).tolist())
    values.discard(UNLABELED)
    names: dict[int, str] = {}
    readme = next(iter(sorted(dataset.glob("README*"))), None)
    if readme is not None:
        text = readme.read_text(errors="replace")
        for m in re.finditer(r"^\|\s*(\d+)\s*\|\s*([^|]+?)\s*\|", text, re.M):
            names.setdefault(int(m.group(1)), m.group(2))
        for m in re.finditer(r"\b(\d+)\s*=\s*([A-Za-z][\w-]*)", text):
            names.setdefault(int(m.group(1)), m.group(2))
    return [(v, names.get(v, "background" if v == 0 else f"class {v}")) for v in sorted(values)]


def _skeleton(region: np.ndarray) -> np.ndarray:
    """Morphological skeleton (union of erosion residues) of a binary uint8 image."""
    kernel = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    skel = np.zeros_like(region)
    cur = region.copy()
    while cur.any():
        eroded = cv2.erode(cur, kernel)
        skel |= cur & ~cv2.dilate(eroded, kernel)
        cur = eroded
    return skel


def scribble(mask: np.ndarray, max_fraction: float = 0.05) -> np.ndarray:
    """Thin strokes inside each class region (its skeleton, kept off the borders), rest 255."""
    out = np.full_like(mask, UNLABELED)
    kernel = np.ones((3, 3), np.uint8)
    for c in np.unique(mask):
        if c == UNLABELED:
            continue
        region = (mask == c).astype(np.uint8)
        inner = cv2.erode(region, kernel, iterations=2)
        strokes = _skeleton(inner if inner.any() else region)
        out[strokes.astype(bool)] = c
    labelled = out != UNLABELED
    if labelled.mean() > max_fraction:          # keep every k-th stroke pixel (in scan order)
        idx = np.flatnonzero(labelled)
        keep = int(max_fraction * mask.size)
        drop = np.setdiff1d(idx, idx[:: max(1, len(idx) // keep + 1)])
        out.ravel()[drop] = UNLABELED
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", type=Path)
    ap.add_argument("--minutes", type=float, required=True)
    ap.add_argument("--scribbles", nargs="?", const="skeleton", default="none",
                    choices=["none", "skeleton", "human"])
    ap.add_argument("--ignore-class", type=int, default=None)
    ap.add_argument("--background", default="0",
                    help="class id left out of the mean, or 'none' (CamVid's 0 is Sky)")
    ap.add_argument("--split", choices=["hash", "blocks"], default="hash")
    ap.add_argument("--gap", type=int, default=3)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--upscale", type=float, default=None)
    ap.add_argument("--lateral", action="store_true")
    ap.add_argument("--label", default=None, help="a name for this configuration in the JSON")
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--extra", default="", help="more `segstudio-cli train` flags, one string")
    ap.add_argument("--keep", type=Path, help="build the project here instead of a temp folder")
    args = ap.parse_args()

    from segstudio import cli
    from segstudio.io.project import Project

    images = sorted(p for p in (args.dataset / "images").iterdir() if p.is_file())
    masks = {p.stem: p for p in (args.dataset / "masks").glob("*.png")}
    images = [p for p in images if p.stem in masks]
    classes = read_classes(args.dataset, [masks[p.stem] for p in images])
    if args.lateral:
        classes = [(i, n) for i, n in classes if i != 1] + [(1, "left object"),
                                                            (2, "right object")]
        classes = sorted(dict(classes).items())
    ignore = args.ignore_class
    splits = block_splits([p.stem for p in images], gap=args.gap) if args.split == "blocks" \
        else {p.stem: split_of(p.stem) for p in images}
    images = [p for p in images if splits[p.stem] is not None]      # the gap frames
    work = args.keep or Path(tempfile.mkdtemp(prefix="segstudio-accuracy-"))
    if args.upscale:
        images = upscaled(images, masks, work / "upscaled", args.upscale)
    project = Project.create(work / "project", name=args.dataset.name, classes=[
        LabelClass(i, n, default_color(i)) for i, n in classes if i != ignore])
    entries = project.add_images(images)
    labelled = total = 0
    test: list[tuple[str, np.ndarray]] = []
    for entry, path in zip(entries, images):
        split = splits[path.stem]
        project.update_entry(entry.id, split=split)
        mask = cv2.imread(str(masks[path.stem]), cv2.IMREAD_UNCHANGED)
        if args.upscale:
            mask = cv2.resize(mask, None, fx=args.upscale, fy=args.upscale,
                              interpolation=cv2.INTER_NEAREST)
        if args.lateral:
            mask = lateral(mask)
        if ignore is not None:
            mask = np.where(mask == ignore, UNLABELED, mask).astype(np.uint8)
        if split == "test":
            test.append((entry.id, mask))
            continue
        if args.scribbles == "skeleton":
            mask = scribble(mask)
        elif args.scribbles == "human":
            mask = human_scribbles(mask, int(hashlib.sha256(path.stem.encode()).hexdigest()[:8],
                                             16))
        labelled += int(np.count_nonzero(mask != UNLABELED))
        total += mask.size
        project.masks.write(entry.id, mask)
    project.save()

    try:
        lines = []
        for seed in range(args.seeds):
            t0, cpu0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
            argv = ["train", str(project.root), "--minutes", str(args.minutes), "--preset",
                    args.preset, "--epochs", "100000", "--quiet", "--seed", str(seed),
                    *args.extra.split()]
            rc = cli.main(argv)
            wall = time.perf_counter() - t0
            cpu1 = resource.getrusage(resource.RUSAGE_SELF)
            if rc != 0:
                print(json.dumps({"benchmark": "accuracy", "error": f"train exited with {rc}"}))
                return rc
            lines.append(report(args, project, classes, images, splits, test, labelled, total,
                                wall, cpu0, cpu1, seed))
        print(json.dumps(summary(args, lines)))
        return 0
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


def upscaled(images: list[Path], masks: dict[str, Path], folder: Path, factor: float
             ) -> list[Path]:
    """The images enlarged by `factor` (bilinear), written as PNG under folder, same stems."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for p in images:
        img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        big = cv2.resize(img, None, fx=factor, fy=factor, interpolation=cv2.INTER_LINEAR)
        dest = folder / f"{p.stem}.png"
        cv2.imwrite(str(dest), big)
        out.append(dest)
    return out


def summary(args, lines: list[dict]) -> dict:
    """Mean and spread (sample std) over the seeds, per class and overall."""
    dice = np.asarray([x["mean_dice"] for x in lines], np.float64)
    names = list(lines[0]["per_class"])
    per_class = {}
    for n in names:
        vals = [x["per_class"][n]["dice"] for x in lines if x["per_class"][n]["dice"] is not None]
        per_class[n] = round(float(np.mean(vals)), 4) if vals else None
    return {"benchmark": "accuracy", "summary": True, "label": args.label,
            "dataset": lines[0]["dataset"], "minutes": args.minutes, "seeds": len(lines),
            "split": args.split, "scribbles": args.scribbles, "upscale": args.upscale,
            "lateral": args.lateral, "extra": args.extra,
            "mean_dice": round(float(dice.mean()), 4),
            "spread": round(float(dice.std(ddof=1)), 4) if len(dice) > 1 else None,
            "per_seed": [x["mean_dice"] for x in lines], "per_class_dice": per_class,
            "plan": lines[0].get("plan"), "steps": [x["steps"] for x in lines]}


def report(args, project, classes, images, splits, test, labelled, total, wall, cpu0, cpu1,
           seed) -> dict:
    """Score the run's best checkpoint on the held-out test images; print its JSON line."""
    from segstudio.core.metrics import class_scores, confusion_matrix
    from segstudio.ml.predict import predict_tiled
    from segstudio.ml.runs import list_runs, load_run_model

    # the one predictor and the one loader: what Predict and Measure run, so the numbers match
    card = list_runs(project.runs_dir)[0]
    loaded = load_run_model(project.root, card["run_dir"])
    n = loaded.num_classes
    cm = np.zeros((n, n), np.int64)
    for image_id, truth in test:
        data = project.read_image(project.entry(image_id)).data
        pred = predict_tiled(loaded.model, data, loaded.normalise, uncertainty=False)
        cm += confusion_matrix(truth, pred.labels, n)
    scores = class_scores(cm)
    iou, dice = scores.iou, scores.dice
    ignore = args.ignore_class
    background = () if args.background == "none" else (int(args.background),)
    unscored = background if ignore is None else (*background, ignore)
    per_class = {name: {"dice": None if np.isnan(dice[i]) else round(float(dice[i]), 4),
                        "iou": None if np.isnan(iou[i]) else round(float(iou[i]), 4)}
                 for i, name in classes if i != ignore and i < n}
    line = {
        "benchmark": "accuracy", "dataset": args.dataset.name, "minutes": args.minutes,
        "seed": seed, "split": args.split, "label": args.label,
        "scribbles": args.scribbles, "ignore_class": ignore, "preset": args.preset,
        "unscored": list(unscored), "upscale": args.upscale, "lateral": args.lateral,
        "extra": args.extra,
        "labelled_fraction": round(labelled / max(total, 1), 4),
        "images": {s: sum(splits[p.stem] == s for p in images) for s in ("train", "val", "test")},
        "per_class": per_class,
        "mean_dice": round(scores.mean("dice", unscored), 4),
        "mean_iou": round(scores.mean("iou", unscored), 4),
        "epochs": card["epochs"], "steps": card["steps"], "status": card["status"],
        "device": card["device"], "train_wall_s": round(wall, 1),
        "train_cpu_s": round(cpu1.ru_utime - cpu0.ru_utime + cpu1.ru_stime - cpu0.ru_stime, 1),
        "val_mean_dice": card["metrics"]["best"].get("mean_dice"),
        "plan": (card.get("plan") or {}).get("lines"),
    }
    print(json.dumps(line), flush=True)
    return line


if __name__ == "__main__":
    raise SystemExit(main())
