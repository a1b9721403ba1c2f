"""Torch's libraries preloaded without the GIL: torch then imports and runs as usual."""

import subprocess
import sys

import pytest

from tests.conftest import REPO


def _in_fresh_python(code: str) -> str:
    """Run `code` in a new interpreter (torch not imported yet); its stdout."""
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_preloaded_libraries_are_the_ones_torch_then_uses():
    code = (
        "import sys\n"
        "from segstudio.workers.preload import preload_torch_libraries\n"
        "assert preload_torch_libraries() is True\n"
        "maps = open('/proc/self/maps').read()\n"
        "assert 'libtorch_cpu' in maps and 'torch' not in sys.modules\n"
        "assert preload_torch_libraries() is False          # once only\n"
        "import torch\n"
        "m = torch.nn.Conv2d(1, 2, 3); y = m(torch.ones(1, 1, 8, 8)); y.sum().backward()\n"
        "print('ok', tuple(y.shape))\n")
    assert "ok (1, 2, 6, 6)" in _in_fresh_python(code)


def test_load_torch_imports_with_the_collector_paused_and_restores_it():
    code = (
        "import gc, os, sys\n"
        "from segstudio.workers.preload import load_torch\n"
        "assert gc.isenabled() and gc.get_freeze_count() == 0\n"
        "paused = []\n"
        "gc.callbacks.append(lambda phase, info: paused.append(info['generation']))\n"
        "load_torch('segstudio.ml.models')\n"
        "during = list(paused)\n"
        "assert 'torch' in sys.modules and 'segstudio.ml.models' in sys.modules\n"
        "assert gc.isenabled(), 'the collector must run again after the import'\n"
        "assert gc.get_freeze_count() > 100000, gc.get_freeze_count()\n"
        "assert 2 not in during, 'a full collection ran during the import'\n"
        "load_torch('segstudio.ml.models')           # already there: nothing to do\n"
        "import torch; print('ok', float(torch.ones(3).sum()))\n")
    assert "ok 3.0" in _in_fresh_python(code)

