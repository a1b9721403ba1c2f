"""Opening a 16000 x 16000 RGB image: time to first paint and peak RSS.

Prints one JSON line. SegStudio opens a project holding the image (an uncompressed TIFF,
memory-mapped) in a fresh process and paints the fitted view; the baseline, in the same run,
is a plain viewer that reads the whole image into memory and shows it scaled in a QLabel.
Peak RSS is the child process's maximum resident set. Targets: first paint < 2 s and peak
RSS < 3x the raw image size (768 MB raw). `--compression lzw|deflate` writes the same pixels
as a compressed TIFF (512 px tiles, horizontal predictor, as slide scanners and Fiji write
them): it cannot be memory-mapped, so both the app and the baseline decode the whole image.
usage: python benchmarks/open_large.py [--size 16000] [--compression none|lzw|deflate] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

OURS = """
import json, resource, sys, time
t0 = time.perf_counter()
from PySide6.QtWidgets import QApplication
from segstudio.io.project import Project
from segstudio.ui.app import build_main_window
app = QApplication(sys.argv[:1])
t_start = time.perf_counter()
w = build_main_window(Project.open(sys.argv[1]))
w.resize(1280, 820)
def shown(_id):
    w.canvas.repaint()
    t = time.perf_counter() - t_start
    # pan as a user would, fitted and at 1:1; both count towards peak memory
    pans = {}
    for name, zoom in (("fit", None), ("1:1", 1.0)):
        if zoom:
            w.canvas.zoom_to(zoom); w.canvas.center_on(8000, 8000)
        ms = []
        for i in range(30):
            s = time.perf_counter()
            w.canvas.pan_by(-15, -10); w.canvas.repaint()
            ms.append((time.perf_counter() - s) * 1000)
        ms.sort()
        pans[name] = round(ms[len(ms) // 2], 2)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(t, rss, json.dumps(pans), flush=True)
    app.quit()
w.image_shown.connect(shown)
w.show()
app.exec()
"""

BASELINE = """
import resource, sys, time
import tifffile
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QApplication, QLabel
app = QApplication(sys.argv[:1])
t_start = time.perf_counter()
data = tifffile.imread(sys.argv[2])
h, w = data.shape[:2]
img = QImage(data.data, w, h, w * 3, QImage.Format.Format_RGB888)
label = QLabel(); label.resize(1280, 820)
label.setPixmap(QPixmap.fromImage(img).scaled(1280, 820, Qt.AspectRatioMode.KeepAspectRatio))
label.show(); label.repaint()
t = time.perf_counter() - t_start
print(t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "{}", flush=True)
"""


def make_image(path: Path, size: int) -> None:
    import tifffile

    arr = tifffile.memmap(path, shape=(size, size, 3), dtype=np.uint8, photometric="rgb")
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    rng = np.random.default_rng(0)
    for y0 in range(0, size, 1000):
        rows = np.arange(y0, min(size, y0 + 1000), dtype=np.float32)[:, None]
        arr[y0:y0 + len(rows), :, 0] = ramp[None, :].astype(np.uint8)
        arr[y0:y0 + len(rows), :, 1] = (rows * 255 / size).astype(np.uint8)
        arr[y0:y0 + len(rows), :, 2] = ((rows + ramp[None, :]) % 256).astype(np.uint8)
        # texture, so a compressed copy is not a few ramps (real slides compress 2-4x)
        arr[y0:y0 + len(rows)] += rng.integers(0, 24, (len(rows), size, 3), dtype=np.uint8)
    arr.flush()
    del arr


def compress(plain: Path, path: Path, compression: str) -> None:
    import tifffile

    data = tifffile.memmap(plain, mode="r")
    tifffile.imwrite(path, data, photometric="rgb", tile=(512, 512), predictor=True,
                     compression={"lzw": "lzw", "deflate": "zlib"}[compression])


def child(code: str, *args: str) -> tuple[float, float, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    out = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True,
                         text=True, timeout=600)
    if out.returncode != 0:
        raise SystemExit(out.stderr[-3000:])
    t, rss, extra = out.stdout.strip().splitlines()[-1].split(" ", 2)
    return float(t), float(rss), extra


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=16000)
    ap.add_argument("--compression", choices=("none", "lzw", "deflate"), default="none")
    ap.add_argument("--keep", type=Path, help="folder to keep the test image in between runs")
    args = ap.parse_args()
    tmp = tempfile.TemporaryDirectory()
    folder = args.keep or Path(tmp.name)
    folder.mkdir(parents=True, exist_ok=True)
    plain = folder / f"large_{args.size}.tif"
    if not plain.exists():
        make_image(plain, args.size)
    image = plain
    if args.compression != "none":
        image = folder / f"large_{args.size}_{args.compression}.tif"
        if not image.exists():
            compress(plain, image, args.compression)
    from segstudio.io.project import Project, ProjectError

    root = folder / f"project_{args.compression}"
    try:
        project = Project.open(root)
    except ProjectError:
        project = Project.create(root)
        project.add_images([image])
    raw_mb = args.size * args.size * 3 / 2**20
    ours_t, ours_rss, pans = child(OURS, str(root))
    base_t, base_rss, _ = child(BASELINE, str(root), str(image))
    print(json.dumps({
        "benchmark": "open_large", "size": args.size, "compression": args.compression,
        "file_mb": round(image.stat().st_size / 2**20), "raw_mb": round(raw_mb),
        "first_paint_s": round(ours_t, 3), "peak_rss_mb": round(ours_rss),
        "rss_over_raw": round(ours_rss / raw_mb, 2),
        "baseline": "read whole image + scaled QPixmap", "baseline_first_paint_s": round(base_t, 3),
        "baseline_peak_rss_mb": round(base_rss), "ratio_time": round(ours_t / base_t, 3),
        "pan_step_median_ms": json.loads(pans), "targets": {"first_paint_s": 2.0, "rss_over_raw": 3.0}}))
    tmp.cleanup()


if __name__ == "__main__":
    main()
