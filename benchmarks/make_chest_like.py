"""Write a synthetic set shaped like chest radiographs, for the plan's hardest case.

    python benchmarks/make_chest_like.py OUT_DIR [--n 42] [--seed 0]

What it reproduces of a real chest-film set (we have none we may use): images from 298 to
3670 px a side in one set, grey, RGB and RGBA, PNG and JPEG; classes background / right lung /
left lung, where the patient's right lung is on the image's left and is the larger one, and the
heart's shadow cuts into the left lung; ribs, a brighter body and noise. The lungs are about
half the image wide, so a 192 px patch of a 3000 px image sees a rib, never a lung field; and a
left-right mirror swaps the two lung labels. Writes OUT_DIR/images, OUT_DIR/masks (0, 1, 2)
and a README; `benchmarks/accuracy.py OUT_DIR --minutes 4` trains and scores on it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np


def chest(rng: np.random.Generator, side: int) -> tuple[np.ndarray, np.ndarray]:
    h = side
    w = int(side * rng.uniform(0.8, 1.1))
    s = min(h, w)
    img = np.full((h, w), 70, np.float32)
    mask = np.zeros((h, w), np.uint8)
    cy = h * rng.uniform(0.45, 0.55)
    cx = w * rng.uniform(0.47, 0.53)
    body = np.zeros((h, w), np.uint8)
    cv2.ellipse(body, (int(cx), int(cy)), (int(w * 0.46), int(h * 0.52)), 0, 0, 360, 1, -1)
    img[body > 0] = 170
    for cls, sign, size in ((1, -1, 1.0), (2, 1, 0.88)):      # 1: patient's right = image left
        lx = cx + sign * s * rng.uniform(0.17, 0.21)
        ax = (int(s * 0.13 * size * rng.uniform(0.9, 1.1)),
              int(s * 0.30 * size * rng.uniform(0.9, 1.1)))
        lung = np.zeros((h, w), np.uint8)
        cv2.ellipse(lung, (int(lx), int(cy - s * 0.02)), ax, sign * rng.uniform(3, 10), 0, 360,
                    1, -1)
        if cls == 2:                                           # the heart's shadow
            cv2.circle(lung, (int(cx + s * 0.07), int(cy + s * 0.17)), int(s * 0.12), 0, -1)
        mask[lung > 0] = cls
    img[mask > 0] = 60
    img += 40 * (np.sin(np.linspace(0, rng.uniform(18, 26) * np.pi, h))[:, None] > 0.7) * \
        (mask > 0)                                              # ribs across the lungs
    img = cv2.GaussianBlur(img, (0, 0), max(1.0, s / 400))
    img += rng.normal(0, 12, img.shape).astype(np.float32)
    img = img * rng.uniform(0.8, 1.2) + rng.uniform(-20, 20)
    return np.clip(img, 0, 255).astype(np.uint8), mask


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--n", type=int, default=42)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    (args.out / "images").mkdir(parents=True, exist_ok=True)
    (args.out / "masks").mkdir(parents=True, exist_ok=True)
    sides = np.exp(rng.uniform(np.log(298), np.log(3670), args.n)).astype(int)
    for i, side in enumerate(sides):
        img, mask = chest(rng, int(side))
        kind = i % 4
        name = f"chest_{i:03d}"
        if kind == 1:
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
        elif kind == 2:
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGRA)
        ext = ".jpg" if kind == 3 else ".png"
        cv2.imwrite(str(args.out / "images" / f"{name}{ext}"), img)
        cv2.imwrite(str(args.out / "masks" / f"{name}.png"), mask)
    (args.out / "README.md").write_text(
        "# chest_like: synthetic chest-film shapes (benchmarks/make_chest_like.py)\n\n"
        "Classes: 0 = background, 1 = right lung, 2 = left lung.\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
