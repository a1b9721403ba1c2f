"""Load torch's big shared libraries without holding the GIL, before `import torch`.

`import torch` dlopens libtorch_cpu (hundreds of MB, thousands of static initialisers) from
inside the import machinery, which holds the GIL for all of it: the window froze ~200 ms while
a worker imported torch. Calling libc's dlopen through ctypes releases the GIL for the call, so
the same work runs while the GUI thread keeps drawing; the later `import torch` finds the
libraries loaded. Only libraries that never call into Python are preloaded.

`load_torch()` then imports torch and the modules a job needs with the cyclic collector paused:
the import makes about a million objects, and the full collections it triggers on the way
(each scanning every object, 40-90 ms with the GIL held, measured on 2 cores) were the window's
longest stalls after it opened. The objects alive at the end are moved to the collector's
permanent generation (`gc.freeze`), so later full collections skip torch's module graph too.
The cost: a reference cycle among objects alive at that moment is never collected (a bounded,
one-time cost; the app holds few cycles).
"""

from __future__ import annotations

import ctypes
import gc
import importlib
import importlib.util
import logging
import os
import sys
import threading
from pathlib import Path

log = logging.getLogger(__name__)

_LIBS = ("c10", "torch_cpu")        # no Python inside: safe to initialise without the GIL
_done = False
_lock = threading.Lock()
_gc_lock = threading.Lock()
_gc_paused = 0              # load_torch calls under way (they may overlap on two workers)
_gc_was_enabled = True


def torch_library_dir() -> Path | None:
    try:
        spec = importlib.util.find_spec("torch")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    lib = Path(spec.origin).parent / "lib"
    return lib if lib.is_dir() else None


def preload_torch_libraries() -> bool:
    """Idempotent; True if the libraries were loaded here (False: not needed or not possible)."""
    global _done
    with _lock:
        if _done or "torch" in sys.modules or sys.platform == "win32":
            return False
        _done = True
        lib = torch_library_dir()
        if lib is None:
            return False
        suffix = ".dylib" if sys.platform == "darwin" else ".so"
        try:
            libc = ctypes.CDLL(None)
            dlopen = libc.dlopen
        except (OSError, AttributeError):
            return False
        dlopen.restype = ctypes.c_void_p
        dlopen.argtypes = [ctypes.c_char_p, ctypes.c_int]
        mode = os.RTLD_NOW | os.RTLD_GLOBAL
        for name in _LIBS:
            path = lib / f"lib{name}{suffix}"
            if not path.exists():
                return False
            if not dlopen(os.fsencode(path), mode):     # a foreign call: the GIL is released
                log.debug("preloading %s failed; import torch will load it", path)
                return False
        return True


def load_torch(*modules: str) -> None:
    """Import torch and `modules` on this (worker) thread without long GIL holds: the libraries
    first without the GIL, then the Python side with the cyclic collector paused (module doc)."""
    global _gc_paused, _gc_was_enabled
    preload_torch_libraries()
    wanted = ("torch", *modules)
    if all(m in sys.modules for m in wanted):
        return
    with _gc_lock:
        if _gc_paused == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_paused += 1
    try:
        for name in wanted:
            importlib.import_module(name)
    finally:
        with _gc_lock:
            _gc_paused -= 1
            if _gc_paused == 0:
                gc.freeze()
                if _gc_was_enabled:
                    gc.enable()
