"""Objects, not pixels: an object class (the product's boundary output, read out into object
ids) against a plain 2-class model + connected components, trained the same way, scored
per object.

    python benchmarks/instances.py DATASET_DIR --minutes M [--seeds N] [--first-seed S] [--preset fast]

DATASET_DIR has the layout of benchmarks/accuracy.py (images/<name>.*, masks/<name>.png) plus
instances/<name>.png (uint16 object ids, 0 = background). An instance file is found by the
image's stem, or through index.csv's first column when the names differ (a row whose id is a
prefix of both). Two projects are built in a temporary folder with accuracy.py's split
(`split_of`: 20 % test, 10 % val by a hash of the name):

- baseline: masks/ as they are (background / object), trained with `segstudio-cli train`
  (cli.main); objects = 8-connected components of the predicted foreground;
- objects: the same masks with the class marked "objects" and the instance ids stored as the
  project's object layer (`masks.write_objects`), trained the same way for the same minutes;
  the trainer adds the boundary output (`segstudio.ml.objects`), the predictor reads the
  objects out (`predict_tiled(..., objects=loaded.objects)`).

Both are scored on the test images against the true instances with `segstudio.core.metrics`
(one-to-one matching, stardist's definitions, counts summed over images). Prints ONE JSON line:
AP@0.5, AP@0.75, mean AP 0.5-0.95, F1@0.5 and PQ of each (mean over seeds with each seed's
values), and objects / baseline ratios.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from accuracy import split_of  # noqa: E402

from segstudio.core.classes import LabelClass, default_color  # noqa: E402

KEYS = ("ap50", "ap75", "mean_ap", "f1_50", "pq")


def instance_files(dataset: Path, stems: list[str]) -> dict[str, Path]:
    """image stem -> instance label file (same stem, else via index.csv ids)."""
    folder = dataset / "instances"
    if not folder.is_dir():
        raise SystemExit(f"{dataset}: no instances/ folder; this benchmark needs object ids "
                         f"(uint16 PNGs, 0 = background) beside images/ and masks/")
    files = {p.stem: p for p in folder.iterdir() if p.is_file()}
    out = {s: files[s] for s in stems if s in files}
    index = dataset / "index.csv"
    if len(out) < len(stems) and index.is_file():
        with open(index, newline="", encoding="utf-8") as f:
            ids = [row[0] for row in csv.reader(f)][1:]
        for s in stems:
            if s in out:
                continue
            for i in ids:
                if s.startswith(i):
                    hit = [p for st, p in files.items() if st.startswith(i)]
                    if len(hit) == 1:
                        out[s] = hit[0]
                    break
    return out


def build(root: Path, name: str, images: list[Path], masks: dict[str, np.ndarray],
          instances: dict[str, np.ndarray] | None = None):
    from segstudio.io.project import Project

    project = Project.create(root, name=name, classes=[
        LabelClass(0, "background", default_color(0)),
        LabelClass(1, "object", default_color(1), objects=instances is not None)])
    entries = project.add_images(images)
    ids = {}
    for entry, path in zip(entries, images):
        split = split_of(path.stem)
        project.update_entry(entry.id, split=split)
        ids[path.stem] = entry.id
        if split != "test":
            project.masks.write(entry.id, masks[path.stem])
            if instances is not None:
                project.masks.write_objects(entry.id, instances[path.stem].astype(np.uint32))
    project.save()
    return project, ids


def train(project, minutes: float, seed: int, preset: str, extra: str) -> float:
    from segstudio import cli

    t0 = time.perf_counter()
    rc = cli.main(["train", str(project.root), "--minutes", str(minutes), "--preset", preset,
                   "--epochs", "100000", "--quiet", "--seed", str(seed), *extra.split()])
    if rc != 0:
        raise SystemExit(json.dumps({"benchmark": "instances",
                                     "error": f"train of {project.root.name} exited with {rc}"}))
    return time.perf_counter() - t0


def score(project, ids: dict[str, str], truths: dict[str, np.ndarray]) -> dict:
    """Object scores of the project's best run on the test images, counts summed."""
    from segstudio.core.metrics import object_counts, pooled
    from segstudio.ml.evaluate import label_components
    from segstudio.ml.predict import predict_tiled
    from segstudio.ml.runs import list_runs, load_run_model

    card = list_runs(project.runs_dir)[0]
    loaded = load_run_model(project.root, card["run_dir"])
    counts = []
    for stem, truth in truths.items():
        data = project.read_image(project.entry(ids[stem])).data
        pred = predict_tiled(loaded.model, data, loaded.normalise, uncertainty=False,
                             objects=loaded.objects)
        if pred.objects is not None:
            objects = pred.objects
        else:
            objects = label_components(pred.labels == 1)[0]
        counts.append(object_counts(truth, objects))
    c = pooled(counts)
    values = {"ap50": c.ap(0.5), "ap75": c.ap(0.75), "mean_ap": c.mean_ap,
              "f1_50": c.at(0.5).f1, "pq": c.panoptic_quality}
    return {**{k: round(float(v), 4) for k, v in values.items()}, "true": c.true,
            "predicted": c.predicted, "epochs": card["epochs"], "steps": card["steps"],
            "device": card["device"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", type=Path)
    ap.add_argument("--minutes", type=float, required=True, help="training minutes per model")
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--first-seed", type=int, default=0,
                    help="seeds first-seed .. first-seed + seeds - 1 (to add runs to earlier ones)")
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--extra", default="", help="more `segstudio-cli train` flags, one string")
    ap.add_argument("--limit", type=int, default=None,
                    help="use only the first N images (a smoke test, not a measurement)")
    ap.add_argument("--keep", type=Path, help="build the projects here instead of a temp folder")
    args = ap.parse_args()

    images = sorted(p for p in (args.dataset / "images").iterdir() if p.is_file())
    inst_files = instance_files(args.dataset, [p.stem for p in images])
    images = [p for p in images if p.stem in inst_files][:args.limit]
    if not images:
        raise SystemExit(f"{args.dataset}: no image has an instance file in instances/")
    instances = {p.stem: cv2.imread(str(inst_files[p.stem]), cv2.IMREAD_UNCHANGED)
                 for p in images}
    semantic = {s: (v > 0).astype(np.uint8) for s, v in instances.items()}
    test = {p.stem: instances[p.stem] for p in images if split_of(p.stem) == "test"}
    work = args.keep or Path(tempfile.mkdtemp(prefix="segstudio-instances-"))
    try:
        base, base_ids = build(work / "baseline", args.dataset.name, images, semantic)
        three, three_ids = build(work / "objects", args.dataset.name, images, semantic,
                                 instances)
        runs = []
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            wall_b = train(base, args.minutes, seed, args.preset, args.extra)
            b = score(base, base_ids, test)
            wall_t = train(three, args.minutes, seed, args.preset, args.extra)
            t = score(three, three_ids, test)
            runs.append({"seed": seed, "baseline": {**b, "train_wall_s": round(wall_b, 1)},
                         "objects": {**t, "train_wall_s": round(wall_t, 1)}})
        mean = {m: {k: round(float(np.mean([r[m][k] for r in runs])), 4) for k in KEYS}
                for m in ("baseline", "objects")}
        ratio = {k: (round(mean["objects"][k] / mean["baseline"][k], 3)
                     if mean["baseline"][k] > 0 else None) for k in KEYS}
        print(json.dumps({
            "benchmark": "instances", "dataset": args.dataset.name, "minutes": args.minutes,
            "seeds": args.seeds, "first_seed": args.first_seed, "preset": args.preset, "extra": args.extra,
            "images": {s: sum(split_of(p.stem) == s for p in images)
                       for s in ("train", "val", "test")},
            "test_objects": int(sum(len(np.unique(v)) - (0 in v) for v in test.values())),
            "baseline": mean["baseline"], "objects": mean["objects"],
            "ratio_objects_to_baseline": ratio, "per_seed": runs}))
        return 0
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
