#!/usr/bin/env bash
# SegStudio side by side with the anchors: the scripts in ../shared/anchors (or $ANCHORS) that
# measured napari, MONAI and a bare PyTorch loop, each run once with SegStudio's code behind its
# hook (benchmarks/anchor_hooks.py), in the same process and the same interleaved rounds.
#
#   bash benchmarks/side_by_side.sh            # all four anchors
#   ONLY="train sliding" bash benchmarks/side_by_side.sh
#
# It makes its own venv ($ANCHOR_VENV, default .venv-anchors) with the anchors' dependencies
# (torch, monai, napari with PySide6, pytest-qt) and this project, then writes one JSON line per
# run to benchmarks/results/anchor_<name>.jsonl through benchmarks/record.py (date, CPU model,
# cores, load average before and after, commit). A reference that cannot run (no OpenGL, no
# network for a package) is reported in its line's "skipped", not as a failure.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
ANCHORS="${ANCHORS:-$REPO/../shared/anchors}"
VENV="${ANCHOR_VENV:-$REPO/.venv-anchors}"
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
ONLY="${ONLY:-train preset sliding paint stall}"

if [ ! -f "$ANCHORS/_common.py" ]; then
    echo "side_by_side: no anchor scripts in $ANCHORS (set ANCHORS=...)" >&2
    exit 2
fi
ANCHORS="$(cd "$ANCHORS" && pwd)"

if [ ! -f "$VENV/.installed" ]; then
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$TORCH_SPEC"
    # PySide6 6.12.0 aborts after a few thousand processEvents() (see pyproject.toml)
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$TORCH_SPEC" \
        monai "napari[pyside6]" pytest-qt "PySide6!=6.12.0" "PySide6-Essentials!=6.12.0" -e .
    touch "$VENV/.installed"
fi

PY="$VENV/bin/python"
export PYTHONPATH="$REPO/benchmarks${PYTHONPATH:+:$PYTHONPATH}"
record() { "$PY" benchmarks/record.py --name "anchor_$1" "$ANCHORS/$2" "${@:3}"; }
wants() { [[ " $ONLY " == *" $1 "* ]]; }

if wants train; then
    record train_throughput train_throughput.py --impls bare,monai_basicunet,hook \
        --hook anchor_hooks:train_step --rounds 5
fi
if wants preset; then
    record train_throughput train_throughput.py --impls bare,hook \
        --hook anchor_hooks:train_step_preset --rounds 5
fi
if wants sliding; then
    record sliding_window sliding_window.py --methods monai_sw,tiles_plain,hook \
        --hook anchor_hooks:predictor
fi
if wants paint; then
    display=xvfb
    command -v Xvfb >/dev/null || display=offscreen
    record napari_paint napari_paint.py --display "$display" --skip-startup
    record napari_paint napari_paint.py --display "$display" --skip-startup \
        --paint-hook anchor_hooks:PaintCanvas
fi
if wants stall; then
    record gui_stall gui_stall.py --conditions idle,t2_premade,hook --hook anchor_hooks:trainer
fi
