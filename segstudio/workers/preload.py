"""Load torch's big shared libraries without holding the GIL, before `import torch`.

`import torch` dlopens libtorch_cpu (hundreds of MB, thousands of static initialisers) from
inside the import machinery, which holds the GIL for all of it: the window froze ~200 ms while
a worker imported torch. Calling libc's dlopen through ctypes releases the GIL for the call, so
the same work runs while the GUI thread keeps drawing; the later `import torch` finds the
libraries loaded. Only libraries that never call into Python are preloaded. Torch itself is
not imported here.
"""

from __future__ import annotations

import ctypes
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
