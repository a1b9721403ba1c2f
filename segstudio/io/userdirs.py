"""Per-user folders (config, data, logs) and the recent-projects list.

SEGSTUDIO_CONFIG_DIR / SEGSTUDIO_DATA_DIR override the platform folders (tests use them).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from segstudio.io.atomic import atomic_write_json
from segstudio.io.bundled import sample_source

MAX_RECENT = 10


def config_dir() -> Path:
    env = os.environ.get("SEGSTUDIO_CONFIG_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_config_dir("segstudio", appauthor=False))


def data_dir() -> Path:
    env = os.environ.get("SEGSTUDIO_DATA_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_data_dir("segstudio", appauthor=False))


def log_dir() -> Path:
    return data_dir() / "logs"


def recent_projects() -> list[Path]:
    try:
        items = json.loads((config_dir() / "recent.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [Path(p) for p in items if isinstance(p, str)] if isinstance(items, list) else []


def add_recent_project(root: Path) -> None:
    root = Path(root).resolve()
    items = [p for p in recent_projects() if p != root]
    atomic_write_json(config_dir() / "recent.json", [str(root), *map(str, items)][:MAX_RECENT])


def sample_project(source: Path | None = None) -> Path:
    """A private copy of the bundled sample project (made on first use), so the app's files stay clean."""
    source = sample_source() if source is None else source
    if not (source / "project.json").exists():
        raise FileNotFoundError(f"the bundled sample project is missing at {source}; reinstall "
                                f"SegStudio (pip install .) or open a project of your own")
    dest = data_dir() / "sample-project"
    if not (dest / "project.json").exists():
        tmp = dest.with_name(dest.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(source, tmp)
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)
    return dest
