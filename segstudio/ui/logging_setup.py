"""The app's log file in the user's log folder: every reported error lands there too."""

from __future__ import annotations

import logging
from logging.handlers import RotatingFileHandler
from pathlib import Path

from segstudio.io.userdirs import log_dir

_handler: RotatingFileHandler | None = None


def log_file() -> Path:
    return log_dir() / "segstudio.log"


def install_file_log() -> Path:
    """Send INFO and above of the `segstudio` loggers to a rotating file (idempotent)."""
    global _handler
    path = log_file()
    if _handler is not None and Path(_handler.baseFilename) == path:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger("segstudio")
    if _handler is not None:
        root.removeHandler(_handler)
        _handler.close()
    _handler = RotatingFileHandler(path, maxBytes=2_000_000, backupCount=3, encoding="utf-8")
    _handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(_handler)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
    return path
