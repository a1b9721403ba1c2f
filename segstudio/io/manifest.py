"""Reading and merging project.json: typed fields, settings bounds, three-way merge, and
whether a folder can be written at all. No knowledge of images or masks."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from segstudio.core.names import slug
from segstudio.io.atomic import TMP_SUFFIX
from segstudio.io.entries import SERIES_KEYS, SeriesRecord
from segstudio.io.images import DEFAULT_MAX_PIXELS


class ProjectError(Exception):
    """A project that cannot be opened or saved; the message says what and where."""


def check_keys(obj: Any, known: set[str], where: str) -> None:
    if not isinstance(obj, dict):
        raise ProjectError(f"{where} must be an object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - known)
    if unknown:
        raise ProjectError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")


def field_of(obj: dict, key: str, kind: type, where: str, default: Any = ...) -> Any:
    """obj[key] as `kind`, or a message that says which key holds what instead."""
    if key not in obj:
        if default is ...:
            raise ProjectError(f"{where}: '{key}' is missing")
        return default
    v = obj[key]
    if kind is int:
        ok = isinstance(v, int) and not isinstance(v, bool)
    elif kind is float:
        ok = (isinstance(v, (int, float)) and not isinstance(v, bool) and v == v
              and abs(v) != float("inf"))
    elif kind is bool:
        ok = isinstance(v, bool)
    else:
        ok = isinstance(v, str)
    if not ok:
        want = {int: "a whole number", float: "a number", bool: "true or false", str: "text"}[kind]
        shown = repr(v) if len(repr(v)) <= 40 else repr(v)[:40] + "…"
        raise ProjectError(f"{where}: '{key}' must be {want}, got {shown}")
    return float(v) if kind is float else v


def check_settings(settings: dict, where: str) -> None:
    mp = field_of(settings, "max_pixels", int, f"{where}: settings", DEFAULT_MAX_PIXELS)
    if mp <= 0:
        raise ProjectError(f"{where}: settings: 'max_pixels' must be positive, got {mp}")
    vf = field_of(settings, "val_fraction", float, f"{where}: settings", 0.2)
    if not 0.0 <= vf < 1.0:
        raise ProjectError(f"{where}: settings: 'val_fraction' must be in [0, 1), got {vf}")


def _merge_fields(base: dict, mine: dict, disk: dict) -> dict:
    """Keys we changed since `base` take our value; every other key keeps the disk's."""
    out = dict(disk)
    for k in set(mine) | set(base):
        if mine.get(k, ...) != base.get(k, ...):
            if k in mine:
                out[k] = mine[k]
            else:
                out.pop(k, None)
    return out


def _merge_keyed(base: list, mine: list, disk: list) -> list:
    """Three-way merge of lists of {"id": ...} records: our changes on top of the disk's."""
    b = {r["id"]: r for r in base}
    m = {r["id"]: r for r in mine}
    out = []
    for r in disk:
        rid = r.get("id")
        if rid in b and rid not in m:
            continue                                    # we deleted it
        out.append(_merge_fields(b.get(rid, {}), m[rid], r) if rid in m else r)
    have = {r.get("id") for r in out}
    out += [r for r in mine if r["id"] not in have and r["id"] not in b]   # we added it
    return out


_LISTS = ("classes", "images", "settings")


def merge_manifests(base: dict, mine: dict, disk: dict) -> dict:
    """What to write when project.json changed on disk since we read it: both sides' changes."""
    def top(d: dict) -> dict:
        return {k: v for k, v in d.items() if k not in _LISTS}

    merged = _merge_fields(top(base), top(mine), top(disk))
    for key in ("classes", "images"):
        disk_list = disk.get(key, [])
        if not isinstance(disk_list, list) or not all(isinstance(r, dict) for r in disk_list):
            disk_list = base.get(key, [])
        merged[key] = _merge_keyed(base.get(key, []), mine[key], disk_list)
    disk_settings = disk.get("settings", {})
    merged["settings"] = _merge_fields(base.get("settings", {}), mine["settings"],
                                       disk_settings if isinstance(disk_settings, dict) else {})
    return merged


def writable_problem(root: Path) -> str | None:
    """Why nothing can be saved in `root` (read-only disk, no permission), or None.

    Tried, not guessed: os.access says yes to root on a read-only mount.
    """
    import errno
    import tempfile

    try:
        fd, tmp = tempfile.mkstemp(prefix=".write-check.", suffix=TMP_SUFFIX, dir=root)
    except OSError as e:
        if e.errno == errno.EROFS:
            return f"the project folder {root} is on a read-only disk"
        if e.errno in (errno.EACCES, errno.EPERM):
            return f"the project folder {root} cannot be written (no permission)"
        return f"the project folder {root} cannot be written ({e.strerror or e})"
    os.close(fd)
    try:
        os.unlink(tmp)
    except OSError:
        pass
    return None


def series_from(raw: Any, path: Path) -> dict[str, SeriesRecord]:
    """The 'series' list of project.json as records by id, every field checked."""
    if not isinstance(raw, list):
        raise ProjectError(f"{path}: 'series' must be a list")
    out: dict[str, SeriesRecord] = {}
    for i, r in enumerate(raw):
        where = f"{path}: series[{i}]"
        check_keys(r, SERIES_KEYS, where)
        sid = field_of(r, "id", str, where)
        if sid in out or slug(sid) != sid:
            raise ProjectError(f"{where} has a duplicate or unsafe id {sid!r}")
        numbers = {k: r.get(k) for k in ("spacing", "affine_lps")}
        for key, n in (("spacing", 3), ("affine_lps", 16)):
            v = numbers[key]
            if not (isinstance(v, list) and len(v) == n
                    and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)):
                raise ProjectError(f"{where}: '{key}' must be a list of {n} numbers")
        rescale = r.get("rescale")
        if rescale is not None and not (
                isinstance(rescale, list) and all(
                    isinstance(x, list) and len(x) == 2 and all(
                        isinstance(v, (int, float)) and not isinstance(v, bool) for v in x)
                    for x in rescale)):
            raise ProjectError(f"{where}: 'rescale' must be a list of [slope, intercept] pairs")
        problems = r.get("problems", [])
        if not (isinstance(problems, list) and all(isinstance(p, str) for p in problems)):
            raise ProjectError(f"{where}: 'problems' must be a list of text")
        modality = r.get("modality")
        volume = r.get("volume")
        if volume is not None and not (isinstance(volume, int) and not isinstance(volume, bool)
                                       and volume >= 0):
            raise ProjectError(f"{where}: 'volume' must be a whole number from 0")
        out[sid] = SeriesRecord(
            sid, field_of(r, "uid", str, where), field_of(r, "kind", str, where),
            None if modality is None else field_of(r, "modality", str, where),
            field_of(r, "description", str, where, ""), field_of(r, "slices", int, where),
            field_of(r, "rows", int, where), field_of(r, "cols", int, where),
            tuple(float(x) for x in numbers["spacing"]),
            tuple(float(x) for x in numbers["affine_lps"]), tuple(problems),
            None if rescale is None else tuple((float(a), float(b)) for a, b in rescale),
            volume)
    return out
