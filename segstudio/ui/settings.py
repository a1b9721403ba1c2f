"""Window settings that persist across sessions (QSettings in the user's config folder)."""

from __future__ import annotations

from PySide6.QtCore import QSettings

from segstudio.io.userdirs import config_dir


def app_settings() -> QSettings:
    """An INI file in the SegStudio config folder (SEGSTUDIO_CONFIG_DIR in tests)."""
    folder = config_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return QSettings(str(folder / "settings.ini"), QSettings.Format.IniFormat)


def value(settings: QSettings, key: str, default, kind=None):
    v = settings.value(key, default)
    if kind is bool:
        return v in (True, "true", "1", 1)
    try:
        return kind(v) if kind is not None and v is not None else v
    except (TypeError, ValueError):
        return default
