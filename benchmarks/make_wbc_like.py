"""Write a set shaped like stained blood-smear crops (white cells), from the shared nuclei.

    python benchmarks/make_wbc_like.py DSB_DIR OUT_DIR [--n 120] [--seed 0]

What it reproduces of a white-blood-cell set (we have none we may use): RGB crops centred on a
cell, classes background / nucleus / cytoplasm; a dark purple nucleus with texture (the
nucleus of a real dsb2018_nuclei image, its fluorescence turned into stain), a paler ring of
cytoplasm around it whose width varies from cell to cell, red cells of about the same size and
a colour close to the cytoplasm's scattered around and touching it, a stain hue and
brightness that vary from image to image, blur and noise. Neighbouring nuclei of the source
image become neighbouring white cells, cut by the crop's edge. Each nucleus and each
cytoplasm is one object (instances/: odd ids nuclei, even ids their cytoplasm), so
`benchmarks/interactive.py OUT_DIR --minutes M` measures clicks per object on both classes.
DSB_DIR is dsb2018_nuclei (CC0 1.0): the written set is CC0 too.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

SIDE = 160


def crop_cell(img: np.ndarray, inst: np.ndarray, label: int, rng: np.random.Generator
              ) -> tuple[np.ndarray, np.ndarray] | None:
    ys, xs = np.nonzero(inst == label)
    diam = 2 * np.sqrt(len(ys) / np.pi)
    side = int(round(diam * rng.uniform(4.5, 6.0)))
    cy = int(ys.mean() + rng.uniform(-0.1, 0.1) * side)
    cx = int(xs.mean() + rng.uniform(-0.1, 0.1) * side)
    y0, x0 = cy - side // 2, cx - side // 2
    pad = side
    img_p = np.pad(img, pad, mode="reflect")
    inst_p = np.pad(inst, pad)
    sl = np.s_[y0 + pad:y0 + pad + side, x0 + pad:x0 + pad + side]
    g = cv2.resize(img_p[sl].astype(np.float32), (SIDE, SIDE), interpolation=cv2.INTER_CUBIC)
    n = cv2.resize(inst_p[sl].astype(np.int32).astype(np.float32), (SIDE, SIDE),
                   interpolation=cv2.INTER_NEAREST).astype(np.int32)
    return g, n


def cells(nuclei: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(class mask, instance ids): each nucleus grown into a cell, the cytoplasm between."""
    ids = [int(v) for v in np.unique(nuclei) if v]
    cell = np.zeros(nuclei.shape, np.int32)
    best = np.full(nuclei.shape, np.inf, np.float32)
    for v in ids:
        m = (nuclei == v).astype(np.uint8)
        r = np.sqrt(m.sum() / np.pi)
        width = r * rng.uniform(0.45, 1.0)
        d = cv2.distanceTransform(1 - m, cv2.DIST_L2, 5)
        near = (d <= width) & (d < best)
        cell[near] = v
        best[near] = d[near]
    mask = np.where(nuclei > 0, 1, np.where(cell > 0, 2, 0)).astype(np.uint8)
    inst = np.zeros(nuclei.shape, np.uint16)
    for k, v in enumerate(ids, start=1):
        inst[nuclei == v] = 2 * k - 1
        inst[(cell == v) & (nuclei == 0)] = 2 * k
    return mask, inst


def render(grey: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = mask.shape
    hue = rng.uniform(-12, 12, 3)
    bg = np.array([232, 214, 216]) + hue
    rbc_c = np.array([214, 150, 160]) + hue
    cyto = np.array([198, 170, 212]) + hue
    nuc = np.array([92, 52, 128]) + hue
    img = np.empty((h, w, 3), np.float32)
    img[:] = bg
    for _ in range(int(rng.integers(6, 16))):           # red cells, paler in the middle
        r = rng.uniform(0.06, 0.1) * SIDE
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        yy, xx = np.ogrid[:h, :w]
        d = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2) / r
        disk = (d <= 1) & (mask == 0)
        shade = (0.75 + 0.25 * np.clip(1 - np.abs(d - 0.75) * 3, 0, 1))[disk, None]
        img[disk] = bg + (rbc_c - bg) * shade
    lo, hi = np.percentile(grey[mask == 1], [2, 98]) if (mask == 1).any() else (0, 1)
    t = np.clip((grey - lo) / max(hi - lo, 1e-3), 0, 1)[..., None]       # bright = dense
    img = np.where((mask == 2)[..., None], cyto + rng.normal(0, 6, (h, w, 1)), img)
    dense = bg + (nuc - bg) * (0.55 + 0.45 * t)
    img = np.where((mask == 1)[..., None], dense, img)
    img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.6, 1.3))
    img *= rng.uniform(0.85, 1.08)
    img += rng.normal(0, 4, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dsb", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--n", type=int, default=120)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from PIL import Image

    rng = np.random.default_rng(args.seed)
    for sub in ("images", "masks", "instances"):
        (args.out / sub).mkdir(parents=True, exist_ok=True)
    sources = sorted((args.dsb / "images").glob("*.png"))
    written = 0
    for k in range(args.n * 4):
        if written >= args.n:
            break
        src = sources[k % len(sources)]
        img = np.asarray(Image.open(src))
        img = img[..., 0] if img.ndim == 3 else img
        inst = np.asarray(Image.open(args.dsb / "instances" / src.name)).astype(np.int32)
        labels, areas = np.unique(inst[inst > 0], return_counts=True)
        big = labels[areas >= 60]
        if not len(big):
            continue
        got = crop_cell(img, inst, int(rng.choice(big)), rng)
        if got is None:
            continue
        grey, nuclei = got
        mask, ids = cells(nuclei, rng)
        rgb = render(grey, mask, rng)
        name = f"wbc{written:04d}_{src.stem[:8]}"
        Image.fromarray(rgb).save(args.out / "images" / f"{name}.png")
        Image.fromarray(mask).save(args.out / "masks" / f"{name}.png")
        Image.fromarray(ids).save(args.out / "instances" / f"{name}.png")
        written += 1
    (args.out / "README.md").write_text(
        "# wbc-like (made by benchmarks/make_wbc_like.py)\n\nClasses: 0 background, 1 nucleus, "
        "2 cytoplasm. instances/: odd ids nuclei, even ids their cytoplasm.\nSource: "
        "dsb2018_nuclei (BBBC038, CC0 1.0); this set is CC0 1.0 too.\n", encoding="utf-8")
    print(f"wrote {written} images to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
