"""Train from scratch through the CLI on a dataset folder and score a held-out split.

    python benchmarks/accuracy.py DATASET_DIR --minutes M [--scribbles] [--ignore-class K]

DATASET_DIR holds images/<name>.*, masks/<name>.png (class ids) and a README; classes come from
classes.json beside the masks when present, else from the mask values (names from the README
where it lists them). Images are split by a hash of their name: 20 % test (held out, scored
here), 10 % val (early stopping and best checkpoint), the rest train. The project is built in
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
    ap.add_argument("--scribbles", action="store_true")
    ap.add_argument("--ignore-class", type=int, default=None)
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
    ignore = args.ignore_class
    work = args.keep or Path(tempfile.mkdtemp(prefix="segstudio-accuracy-"))
    project = Project.create(work / "project", name=args.dataset.name, classes=[
        LabelClass(i, n, default_color(i)) for i, n in classes if i != ignore])
    entries = project.add_images(images)
    labelled = total = 0
    test: list[tuple[str, np.ndarray]] = []
    for entry, path in zip(entries, images):
        split = split_of(path.stem)
        project.update_entry(entry.id, split=split)
        mask = cv2.imread(str(masks[path.stem]), cv2.IMREAD_UNCHANGED)
        if ignore is not None:
            mask = np.where(mask == ignore, UNLABELED, mask).astype(np.uint8)
        if split == "test":
            test.append((entry.id, mask))
            continue
        if args.scribbles:
            mask = scribble(mask)
        labelled += int(np.count_nonzero(mask != UNLABELED))
        total += mask.size
        project.masks.write(entry.id, mask)
    project.save()

    t0, cpu0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    argv = ["train", str(project.root), "--minutes", str(args.minutes), "--preset", args.preset,
            "--epochs", "100000", "--quiet", *args.extra.split()]
    try:
        rc = cli.main(argv)
        wall = time.perf_counter() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        if rc != 0:
            print(json.dumps({"benchmark": "accuracy", "error": f"train exited with {rc}"}))
            return rc
        return report(args, project, classes, images, test, labelled, total, wall, cpu0, cpu1)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


def report(args, project, classes, images, test, labelled, total, wall, cpu0, cpu1) -> int:
    """Score the run's best checkpoint on the held-out test images; print the JSON line."""
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
    unscored = (0,) if ignore is None else (0, ignore)
    per_class = {name: {"dice": None if np.isnan(dice[i]) else round(float(dice[i]), 4),
                        "iou": None if np.isnan(iou[i]) else round(float(iou[i]), 4)}
                 for i, name in classes if i != ignore and i < n}
    print(json.dumps({
        "benchmark": "accuracy", "dataset": args.dataset.name, "minutes": args.minutes,
        "scribbles": args.scribbles, "ignore_class": ignore, "preset": args.preset,
        "labelled_fraction": round(labelled / max(total, 1), 4),
        "images": {s: sum(split_of(p.stem) == s for p in images) for s in ("train", "val", "test")},
        "per_class": per_class,
        "mean_dice": round(scores.mean("dice", unscored), 4),
        "mean_iou": round(scores.mean("iou", unscored), 4),
        "epochs": card["epochs"], "steps": card["steps"], "status": card["status"],
        "device": card["device"], "train_wall_s": round(wall, 1),
        "train_cpu_s": round(cpu1.ru_utime - cpu0.ru_utime + cpu1.ru_stime - cpu0.ru_stime, 1),
        "val_mean_dice": card["metrics"]["best"].get("mean_dice"),
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
