"""Export speed: 1000 synthetic 1024x1024 masks to indexed PNG and to COCO; prints one JSON line.

The baseline is the least any mask export must do, in the same run on the same files: a bare
loop of cv2.imread + cv2.imwrite over the project's mask PNGs on as many threads as the export
uses (cv2 releases the GIL), and the same loop single-threaded beside it. Ours also
remaps class ids, adds the palette, links the images, writes the class lists and renames
the temporary folder at the end (COCO: traces every object's outline too).

    python benchmarks/export_speed.py [--n 1000] [--size 1024] [--workers 0]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from segstudio.core.classes import LabelClass  # noqa: E402
from segstudio.io.export import ExportOptions, default_workers, export_dataset  # noqa: E402
from segstudio.io.masks import encode_mask_png  # noqa: E402
from segstudio.io.project import Project  # noqa: E402


def synthetic_mask(rng: np.random.Generator, size: int, objects: int) -> np.ndarray:
    """Background with `objects` filled ellipses of classes 1..3 and an unlabeled strip."""
    mask = np.zeros((size, size), np.uint8)
    for _ in range(objects):
        centre = (int(rng.integers(0, size)), int(rng.integers(0, size)))
        axes = (int(rng.integers(size // 100, size // 20)), int(rng.integers(size // 100, size // 20)))
        cv2.ellipse(mask, centre, axes, float(rng.integers(0, 180)), 0, 360,
                    int(rng.integers(1, 4)), -1)
    mask[:, : size // 16] = 255
    return mask


def build_project(root: Path, n: int, size: int, objects: int) -> Project:
    classes = [LabelClass(0, "background", "#000000"), LabelClass(1, "cell", "#E69F00"),
               LabelClass(2, "nucleus", "#009E73"), LabelClass(3, "debris", "#CC79A7")]
    images = root / "images"
    images.mkdir(parents=True)
    gradient = np.tile(np.arange(size, dtype=np.uint16) * 255 // max(size - 1, 1),
                       (size, 1)).astype(np.uint8)
    data = cv2.imencode(".png", gradient)[1].tobytes()
    paths = []
    for i in range(n):
        p = images / f"img_{i:04d}.png"
        p.write_bytes(data)
        paths.append(p)
    project = Project.create(root / "project", classes=classes)
    project.add_images(paths)
    rng = np.random.default_rng(0)
    project.masks.folder.mkdir(parents=True, exist_ok=True)
    for e in project.images:       # the masks' own PNG format, written directly (setup only)
        project.masks.png_path(e.id).write_bytes(encode_mask_png(synthetic_mask(rng, size, objects)))
    return project


def baseline(project: Project, out: Path, threads: int = 1) -> float:
    out.mkdir()

    def copy(image_id: str) -> None:
        mask = cv2.imread(str(project.masks.png_path(image_id)), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(out / f"{image_id}.png"), mask)

    ids = [e.id for e in project.images]
    start = time.perf_counter()
    if threads <= 1:
        for image_id in ids:
            copy(image_id)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(copy, ids))
    return time.perf_counter() - start


def timed_export(project: Project, out: Path, options: ExportOptions) -> float:
    start = time.perf_counter()
    export_dataset(project, out, options)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--objects", type=int, default=30, help="ellipses per mask")
    ap.add_argument("--workers", type=int, default=0, help="export threads (0: automatic)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="segstudio-bench-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        project = build_project(root, args.n, args.size, args.objects)
        setup = time.perf_counter() - t0
        workers = args.workers or default_workers()
        single = baseline(project, root / "baseline_1")
        base = baseline(project, root / "baseline", workers)
        common = dict(images="link", workers=args.workers)
        png = timed_export(project, root / "png", ExportOptions(format="png", **common))
        coco = timed_export(project, root / "coco", ExportOptions(format="coco", **common))
        rle = timed_export(project, root / "coco_rle",
                           ExportOptions(format="coco", coco_mode="rle", **common))
        n_ann = sum(len(json.loads(p.read_text())["annotations"])
                    for p in (root / "coco" / "annotations").glob("*.json"))
    rate = lambda seconds: round(args.n / seconds, 1)  # noqa: E731
    print(json.dumps({
        "benchmark": "export_speed", "masks": args.n, "size": [args.size, args.size],
        "objects_per_mask": args.objects, "coco_annotations": n_ann,
        "cpu_count": os.cpu_count(), "workers": workers, "setup_s": round(setup, 1),
        "baseline": f"cv2.imread + cv2.imwrite of the same mask PNGs on {workers} thread(s)",
        "baseline_images_per_s": rate(base), "single_thread_baseline_images_per_s": rate(single),
        "png_images_per_s": rate(png), "png_vs_baseline": round(base / png, 2),
        "coco_polygon_images_per_s": rate(coco), "coco_polygon_vs_baseline": round(base / coco, 2),
        "coco_rle_images_per_s": rate(rle), "coco_rle_vs_baseline": round(base / rle, 2),
        "target_png_images_per_s": 50, "png_meets_target": args.n / png >= 50,
    }))


if __name__ == "__main__":
    main()
