"""glibc malloc settings that keep large training buffers instead of returning them to the OS.

glibc serves every allocation above its mmap threshold (at most 32 MiB on 64-bit) with a fresh
mmap and unmaps it on free, so a training loop whose activations exceed that size page-faults
and zero-fills gigabytes per step. `tune_allocator()` tells glibc, at run time through
mallopt(), to take large blocks from the heap and never trim it: freed buffers are reused by
the next step. The cost is that the process keeps its peak heap until it exits, which suits
the CLI and training processes. Set SEGSTUDIO_ALLOCATOR=default to leave glibc alone; with
jemalloc or tcmalloc preloaded (LD_PRELOAD) nothing is changed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import platform

log = logging.getLogger(__name__)

# mallopt() parameter numbers from glibc's <malloc.h>
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_MAX = -4

_state = {"tuned": False, "why": "not tuned (tune_allocator() not called)"}


def _glibc():
    if platform.system() != "Linux":
        return None
    try:
        libc = ctypes.CDLL(None)
        get = libc.gnu_get_libc_version
        get.restype = ctypes.c_char_p
        get()
        return libc
    except (OSError, AttributeError):
        return None


def tune_allocator() -> bool:
    """Make glibc retain freed large buffers (see module docstring); True when applied."""
    if _state["tuned"]:
        return True
    choice = os.environ.get("SEGSTUDIO_ALLOCATOR", "retain").lower()
    preload = os.environ.get("LD_PRELOAD", "")
    if choice == "default":
        _state["why"] = "glibc defaults (SEGSTUDIO_ALLOCATOR=default)"
        return False
    if "jemalloc" in preload or "tcmalloc" in preload or "mimalloc" in preload:
        _state["why"] = f"preloaded allocator left as it is ({preload})"
        return False
    libc = _glibc()
    if libc is None:
        _state["why"] = "not glibc: allocator left as it is"
        return False
    ok = (libc.mallopt(M_MMAP_MAX, 0) == 1
          and libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1) == 1
          and libc.mallopt(M_TOP_PAD, 64 << 20) == 1)
    _state["tuned"] = ok
    _state["why"] = ("glibc: large buffers from the heap, freed memory retained "
                     "(M_MMAP_MAX=0, M_TRIM_THRESHOLD=2 GiB, M_TOP_PAD=64 MiB)" if ok
                     else "glibc refused mallopt(); defaults kept")
    log.info("allocator: %s", _state["why"])
    return ok


def allocator_report() -> str:
    return f"Memory allocator: {_state['why']}"
