"""A 512 x 512 x 300 CT series: how soon it is browsable, the first slice, slice changes,
filling a 20-slice gap, and peak memory, against reading every file with pydicom.

Prints one JSON line. The series is generated into a temporary folder (int16 pixels, one file
per slice, written in shuffled order under names without a suffix, as scanners do; an
ellipsoid "liver" and a moving "kidney" in a water body in air). The generator is this
script's own: `tests/io/phantom_series.py` builds the whole volume and three int64 index grids
in memory first (about 2 GB at this size), fine for its 40 x 128 x 128 series, not here.
Each side runs in a fresh process, so its peak RSS (`ru_maxrss`) is its own; the files are in
the page cache (just written) for both.

- baseline: a plain reader that reads every file with pydicom (`dcmread`, `pixel_array`,
  rescale slope/intercept), sorts by ImagePositionPatient and stacks one float32 array.
- ours, without the window: `Project.from_folder` (header scan, series grouping, ordering,
  manifest) until the series is in the project ("browsable"); the first slice (read_image +
  load_mask of the middle slice, what the window's loader does); two key slices labelled and
  `edit.interpolate.interpolate_between` over the 20 slices between; slice changes
  (read_image + load_mask) for 100 successive slices (Down held) and 100 random jumps. These
  are the window's per-slice load work only: its drawing is not included here.
- ours, in the window (`--no-window` skips it): the real MainWindow offscreen
  (QT_QPA_PLATFORM=offscreen) on the same project: from start (imports included) to the first
  slice shown and painted, then `show_image` -> `image_shown` + a canvas repaint for the same
  100 successive and 100 random slices (the successive run starts at slice 94, so it crosses
  the 22 labelled slices 140..161; p95 is also given for changes to labelled and unlabelled
  slices apart). The changes start once the window's start-up jobs (thumbnails, the model
  library's warm-up import on a worker) are done, `window_start_up_jobs_done_s` after start:
  while they run they take the cores and the GIL, and the first changes are slower. Its RSS
  includes Qt's.

Targets: slice change p95 < 30 ms (each way of changing, with and without the window), peak
RSS of ours < 2.5x the raw volume (300 * 512 * 512 * 2 bytes = 150 MiB). Ratios are ours /
baseline, so below 1 is faster or smaller. Generation must stay well under 30 s.

usage: python benchmarks/volume.py [--slices 300] [--size 512] [--no-window] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SPACING = (0.7, 0.7, 1.25)           # row mm, column mm, slice mm
GAP = (140, 161)                     # key slices of the interpolation: 20 slices between

BASELINE = """
import json, resource, sys, time
from pathlib import Path
t0 = time.perf_counter()
import numpy as np, pydicom
t_imports = time.perf_counter() - t0
t = time.perf_counter()
slices = []
for path in sorted(Path(sys.argv[1]).iterdir()):
    ds = pydicom.dcmread(path)
    hu = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    slices.append((float(ds.ImagePositionPatient[2]), hu))
slices.sort(key=lambda s: s[0])
volume = np.stack([s[1] for s in slices])
del slices
seconds = time.perf_counter() - t
print(json.dumps({"seconds": seconds, "imports_s": t_imports, "shape": list(volume.shape),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

OURS = """
import json, resource, sys, time
t0 = time.perf_counter()
import numpy as np
from segstudio.core.classes import LabelClass
from segstudio.edit.interpolate import interpolate_between
from segstudio.io.project import Project
t_imports = time.perf_counter() - t0
rss_imports = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
folder, root, gap = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
ms = lambda s: (time.perf_counter() - s) * 1000
t = time.perf_counter()
project = Project.from_folder(folder, root, classes=[
    LabelClass(0, "background", "#000000"), LabelClass(1, "liver", "#aa3322"),
    LabelClass(2, "kidney", "#3355cc")])
browsable = time.perf_counter() - t
assert len(project.series) == 1, project.problems
sid = next(iter(project.series))
slices = project.slices_of(sid)
t = time.perf_counter()
mid = slices[len(slices) // 2]
image = project.read_image(mid)
mask = project.load_mask(mid, image.data.shape[:2])
first = ms(t)
shape = image.data.shape[:2]

def key_mask(k):
    yy, xx = np.ogrid[:shape[0], :shape[1]]
    m = np.full(shape, 255, np.uint8)
    body = ((yy - shape[0] / 2) / (shape[0] * 0.4)) ** 2 + ((xx - shape[1] / 2) / (shape[1] * 0.45)) ** 2 <= 1
    m[body] = 0
    r = 60 + (k - gap[0]) * 2
    m[(yy - 230) ** 2 + (xx - 200) ** 2 <= r * r] = 1
    c = 300 + (k - gap[0]) * 3
    m[(yy - c) ** 2 / 900 + (xx - 360) ** 2 / 400 <= 1] = 2
    return m

keys = {k: key_mask(k) for k in gap}
for k, m in keys.items():
    project.masks.write(slices[k].id, m)
interpolate_between({0: keys[gap[0]][:64, :64], 2: keys[gap[1]][:64, :64]})   # warm-up
runs = []
for _ in range(3):
    t = time.perf_counter()
    filled = interpolate_between(keys)
    runs.append(ms(t))
assert len(filled) == gap[1] - gap[0] - 1
t = time.perf_counter()
for k, m in filled.items():
    project.masks.write(slices[k].id, m)
write_filled = ms(t)

def change(k):
    t = time.perf_counter()
    e = slices[k]
    img = project.read_image(e)
    project.load_mask(e, img.data.shape[:2])
    return ms(t)

rng = np.random.default_rng(1)
start = int(rng.integers(0, len(slices) - 101))
step = [change(k) for k in range(start, start + 100)]
jump = [change(int(k)) for k in rng.integers(0, len(slices), 100)]
q = lambda v, p: float(np.percentile(v, p))
print(json.dumps({
    "imports_s": t_imports, "rss_after_imports_mb": rss_imports,
    "browsable_s": browsable, "first_slice_ms": first,
    "interpolate_20_ms": min(runs), "interpolate_20_ms_runs": runs,
    "write_20_filled_masks_ms": write_filled,
    "step_p50_ms": q(step, 50), "step_p95_ms": q(step, 95),
    "jump_p50_ms": q(jump, 50), "jump_p95_ms": q(jump, 95),
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

WINDOW = """
import json, resource, sys, time
t0 = time.perf_counter()
import numpy as np
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
from segstudio.io.project import Project
from segstudio.ui.app import build_main_window
app = QApplication(sys.argv[:1])
w = build_main_window(Project.open(sys.argv[1]))
w.resize(1280, 820)
slices = [e.id for e in w.project.slices_of(next(iter(w.project.series)))]
rng = np.random.default_rng(1)
start = int(rng.integers(0, len(slices) - 101))
plan = [("step", slices[k]) for k in range(start, start + 100)]
plan += [("jump", slices[int(k)]) for k in rng.integers(0, len(slices), 100)]
out = {"step": [], "jump": [], "labelled": [], "unlabelled": []}
has_mask = {i: w.project.masks.has_mask(i) for i in slices}
state = {"first": None, "i": -1, "t": 0.0, "wanted": None}

def next_slice():
    state["i"] += 1
    if state["i"] == len(plan):
        app.quit()
        return
    kind, image_id = plan[state["i"]]
    if image_id == w.current.id:        # a jump to the slice shown changes nothing
        return QTimer.singleShot(0, next_slice)
    state["wanted"] = image_id
    state["t"] = time.perf_counter()
    w.show_image(image_id)

def wait_for_start_up():
    # the start-up jobs (thumbnails, the model library's warm-up import on a worker) compete
    # for the cores and the GIL for a second or two: the changes are timed once they are done
    warming = "torch" not in sys.modules      # the warm-up starts a moment after the first image
    if (w.runner.jobs or warming) and time.perf_counter() - t0 < 60:
        return QTimer.singleShot(50, wait_for_start_up)
    state["start_up_jobs_done_s"] = time.perf_counter() - t0
    QTimer.singleShot(200, next_slice)

def shown(image_id):
    if state["first"] is None:
        w.canvas.repaint()
        state["first"] = time.perf_counter() - t0
        wait_for_start_up()
        return
    if image_id != state["wanted"]:
        return
    w.canvas.repaint()
    took = (time.perf_counter() - state["t"]) * 1000
    out[plan[state["i"]][0]].append(took)
    out["labelled" if has_mask[image_id] else "unlabelled"].append(took)
    state["wanted"] = None
    QTimer.singleShot(0, next_slice)

w.image_shown.connect(shown)
QTimer.singleShot(120_000, app.quit)
w.show()
app.exec()
q = lambda v, p: float(np.percentile(v, p)) if v else None
print(json.dumps({
    "first_slice_shown_s": state["first"], "start_up_jobs_done_s": state.get("start_up_jobs_done_s"),
    "changes": len(out["step"]) + len(out["jump"]),
    "step_p50_ms": q(out["step"], 50), "step_p95_ms": q(out["step"], 95),
    "jump_p50_ms": q(out["jump"], 50), "jump_p95_ms": q(out["jump"], 95),
    "labelled_changes": len(out["labelled"]), "labelled_p95_ms": q(out["labelled"], 95),
    "unlabelled_p95_ms": q(out["unlabelled"], 95),
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def generate(folder: Path, n: int, size: int, seed: int = 0) -> None:
    """n CT slices of size x size (int16, HU + 1024 with intercept -1024), shuffled order."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.ogrid[:size, :size]
    yy = (yy - size / 2) / size
    xx = (xx - size / 2) / size
    body = (yy / 0.4) ** 2 + (xx / 0.45) ** 2 <= 1
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.FrameOfReferenceUID = generate_uid()
    ds.PatientName, ds.PatientID, ds.Modality = "Bench^Volume", "B1", "CT"
    ds.SeriesNumber, ds.SeriesDescription = 2, "Benchmark abdomen"
    ds.StudyDate, ds.StudyTime = "20260101", "120000"
    ds.Rows = ds.Columns = size
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [SPACING[0], SPACING[1]]
    ds.SliceThickness = SPACING[2]
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = 1, -1024, "HU"
    names = rng.permutation(n)
    for k in rng.permutation(n):
        z = (k - n / 2) / n
        hu = np.where(body, 40, -1000).astype(np.int16)
        hu[(yy + 0.05) ** 2 + (xx + 0.1) ** 2 + z ** 2 <= 0.2 ** 2] = 60            # liver
        hu[(yy - 0.1 - 0.2 * z) ** 2 / 0.06 ** 2 + (xx - 0.2) ** 2 / 0.04 ** 2 <= 1] = 30
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.InstanceNumber = int(k) + 1
        ds.ImagePositionPatient = [-180.0, -180.0, round(float(k) * SPACING[2], 3)]
        ds.PixelData = (hu + 1024).astype(np.int16).tobytes()
        ds.save_as(folder / f"IM{names[k]:05d}", enforce_file_format=True)


def child(script: str, *args: str, **env: str) -> dict:
    run = subprocess.run([sys.executable, "-c", script, *args], cwd=REPO, capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(REPO), **env})
    lines = [ln for ln in run.stdout.splitlines() if ln.startswith("{")]
    if run.returncode != 0 or not lines:
        raise SystemExit(f"child failed ({run.returncode}):\n{run.stdout}\n{run.stderr[-4000:]}")
    return json.loads(lines[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--no-window", action="store_true")
    ap.add_argument("--keep", type=Path, help="generate here and keep it (default: a temp folder)")
    args = ap.parse_args(argv)
    if args.slices < GAP[1] + 1:
        ap.error(f"--slices must be at least {GAP[1] + 1}: the interpolation gap is {GAP}")
    with tempfile.TemporaryDirectory(prefix="segstudio-volume-") as tmp:
        base = args.keep or Path(tmp)
        scan, root = base / "scan", base / "project"
        t = time.perf_counter()
        generate(scan, args.slices, args.size)
        generate_s = time.perf_counter() - t
        baseline = child(BASELINE, str(scan))
        ours = child(OURS, str(scan), str(root), json.dumps(GAP))
        window = None if args.no_window else child(WINDOW, str(root), QT_QPA_PLATFORM="offscreen")
    raw_mb = args.slices * args.size * args.size * 2 / 2**20
    r = lambda x, nd=2: None if x is None else round(x, nd)
    result = {
        "benchmark": "volume", "series": f"{args.size}x{args.size}x{args.slices} int16 CT",
        "raw_mb": r(raw_mb, 1), "generate_s": r(generate_s),
        "baseline": "pydicom dcmread + pixel_array + rescale of every file, sorted, one float32 array",
        "baseline_s": r(baseline["seconds"]), "baseline_peak_rss_mb": r(baseline["peak_rss_mb"], 1),
        "ours_browsable_s": r(ours["browsable_s"]),
        "ours_first_slice_ms": r(ours["first_slice_ms"]),
        "ours_first_slice_from_start_s": r(ours["browsable_s"] + ours["first_slice_ms"] / 1000),
        "ours_step_p50_ms": r(ours["step_p50_ms"]), "ours_step_p95_ms": r(ours["step_p95_ms"]),
        "ours_jump_p50_ms": r(ours["jump_p50_ms"]), "ours_jump_p95_ms": r(ours["jump_p95_ms"]),
        "ours_interpolate_20_slices_ms": r(ours["interpolate_20_ms"]),
        "ours_write_20_filled_masks_ms": r(ours["write_20_filled_masks_ms"]),
        "ours_peak_rss_mb": r(ours["peak_rss_mb"], 1),
        "ours_rss_after_imports_mb": r(ours["rss_after_imports_mb"], 1),
        "ours_peak_rss_vs_raw": r(ours["peak_rss_mb"] / raw_mb),
        "baseline_peak_rss_vs_raw": r(baseline["peak_rss_mb"] / raw_mb),
        "ratio_browsable_vs_baseline": r(ours["browsable_s"] / baseline["seconds"], 3),
        "ratio_first_slice_from_start_vs_baseline": r(
            (ours["browsable_s"] + ours["first_slice_ms"] / 1000) / baseline["seconds"], 3),
        "ratio_peak_rss_vs_baseline": r(ours["peak_rss_mb"] / baseline["peak_rss_mb"], 3),
        "targets": {"slice_change_p95_ms": 30, "peak_rss_vs_raw": 2.5},
    }
    p95s = [ours["step_p95_ms"], ours["jump_p95_ms"]]
    if window is not None:
        result.update({
            "window": "MainWindow offscreen: show_image -> image_shown + canvas repaint",
            "window_first_slice_shown_s": r(window["first_slice_shown_s"]),
            "window_start_up_jobs_done_s": r(window["start_up_jobs_done_s"]),
            "window_changes": window["changes"],
            "window_step_p50_ms": r(window["step_p50_ms"]),
            "window_step_p95_ms": r(window["step_p95_ms"]),
            "window_jump_p50_ms": r(window["jump_p50_ms"]),
            "window_jump_p95_ms": r(window["jump_p95_ms"]),
            "window_changes_to_labelled_slices": window["labelled_changes"],
            "window_labelled_p95_ms": r(window["labelled_p95_ms"]),
            "window_unlabelled_p95_ms": r(window["unlabelled_p95_ms"]),
            "window_peak_rss_mb": r(window["peak_rss_mb"], 1),
        })
        p95s += [window["step_p95_ms"], window["jump_p95_ms"]]
    result["slice_change_ok"] = all(p is not None and p < 30 for p in p95s)
    result["peak_rss_ok"] = ours["peak_rss_mb"] < 2.5 * raw_mb
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
