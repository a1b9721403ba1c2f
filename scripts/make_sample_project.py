"""Builds resources/sample_project from the CC0 dsb2018_nuclei subset (run once by a developer).

usage: python scripts/make_sample_project.py ../shared/datasets/dsb2018_nuclei
Fully labelled images take the dataset's masks; "partly" ones keep the masks' left half
(the right half stays unlabeled, 255), the rest are left for the user to paint.
"""

from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np

from segstudio.core.classes import LabelClass
from segstudio.io.masks import encode_mask_png
from segstudio.io.project import Project, labelled_fraction

OUT = Path(__file__).resolve().parents[1] / "resources" / "sample_project"
PLAN = {256: 9, 360: 3, 696: 2}     # images per width, in the dataset's own (deterministic) order


def main(src: Path) -> None:
    rows = list(csv.DictReader(open(src / "index.csv")))
    chosen = []
    for width, count in PLAN.items():
        chosen += [r for r in rows if int(r["width"]) == width][:count]
    shutil.rmtree(OUT, ignore_errors=True)
    (OUT / "images").mkdir(parents=True)
    names = []
    for i, r in enumerate(chosen, 1):
        name = f"nuclei_{i:02d}.png"
        shutil.copyfile(src / "images" / f"{r['id']}.png", OUT / "images" / name)
        names.append((name, r["id"]))
    project = Project.create(OUT, name="Sample: fluorescence nuclei", classes=[
        LabelClass(0, "background", "#56B4E9"), LabelClass(1, "nucleus", "#E69F00")])
    project.add_images([OUT / "images" / n for n, _ in names], copy=False)
    for k, (entry, (name, rid)) in enumerate(zip(project.images, names)):
        split = "val" if k in (2, 9) else "train"
        mask = cv2.imread(str(src / "masks" / f"{rid}.png"), cv2.IMREAD_UNCHANGED)
        if k in (0, 1, 2, 3, 4, 9, 12):          # fully labelled
            pass
        elif k in (5, 10):                        # half labelled: a sparse start
            mask = mask.copy()
            mask[:, mask.shape[1] // 2:] = 255
        else:
            project.update_entry(entry.id, split=split)
            continue
        project.masks.folder.mkdir(exist_ok=True)
        (project.masks.folder / f"{entry.id}.png").write_bytes(encode_mask_png(mask))
        project.update_entry(entry.id, split=split, labelled=labelled_fraction(mask))
    project.save()
    with open(OUT / "ATTRIBUTION.md", "w") as f:
        f.write("# Sample project data\n\n"
                "Images and masks are from the 2018 Data Science Bowl stage-1 training set "
                "(BBBC038, Broad Institute), released under CC0 1.0, in the community-fixed "
                "version. Cite: Caicedo et al., *Nature Methods* 16, 1247 (2019).\n\n"
                "| file | original image id |\n|---|---|\n")
        for name, rid in names:
            f.write(f"| {name} | {rid} |\n")
    print(f"wrote {OUT} with {len(names)} images")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
