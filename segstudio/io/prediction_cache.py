"""Predictions kept on disk per run and image, so reopening an image shows its overlay at once.

Layout: `<project>/.segstudio/predictions/<run-id>/<image-id>.labels.png` (class ids) and
`.uncertainty.png` (normalised entropy quantised to 0..255), plus `stamp.json` naming the
checkpoint they came from. When that checkpoint changes (retrained into the same run folder),
the stamp no longer matches and the run's cached predictions are dropped, never shown stale.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np

from segstudio.io.atomic import atomic_write_bytes, atomic_write_json
from segstudio.io.instance_files import (PNG_SUFFIX, TIFF_SUFFIX, InstanceFileError,
                                         decode_objects, encode_objects)
from segstudio.io.masks import MaskError, decode_mask_png, encode_mask_png

log = logging.getLogger(__name__)

STAMP = "stamp.json"
# Masks come first: the cache never writes when it would leave less than this free on the disk
# (and drops itself when the disk is that full), and never grows past its own budget.
RESERVE_BYTES = 512 * 1024 * 1024
BUDGET_BYTES = 2 * 1024 * 1024 * 1024


def checkpoint_stamp(path: Path) -> dict:
    """What identifies one saved model: its file name, size and modification time."""
    st = Path(path).stat()
    return {"checkpoint": Path(path).name, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def quantise_unit(a: np.ndarray) -> np.ndarray:
    """A 0..1 map (float16/32) as uint8 0..255, in row chunks to keep temporaries small."""
    out = np.empty(a.shape, np.uint8)
    step = max(1, (1 << 22) // max(1, a.shape[1]))
    for y in range(0, a.shape[0], step):
        part = np.clip(a[y:y + step].astype(np.float32), 0.0, 1.0)
        out[y:y + step] = np.rint(part * 255.0).astype(np.uint8)
    return out


class PredictionCache:
    """One folder per run. Not thread-safe for one image: write it from one worker at a time."""

    def __init__(self, folder: Path, *, reserve: int = RESERVE_BYTES,
                 budget: int = BUDGET_BYTES) -> None:
        self.folder = Path(folder)
        self.reserve = reserve
        self.budget = budget

    def _free_bytes(self) -> int:
        probe = self.folder
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        return shutil.disk_usage(probe).free

    def size_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.folder.rglob("*") if f.is_file()) \
            if self.folder.is_dir() else 0

    def _room_for(self, nbytes: int) -> bool:
        """Whether writing `nbytes` leaves the masks their reserve; drops the cache if not."""
        try:
            if self._free_bytes() - nbytes < self.reserve:
                log.warning("disk nearly full: dropping cached predictions so masks keep room")
                self.forget()
                return False
            if self.size_bytes() + nbytes > self.budget:
                self._trim(self.budget - nbytes)
        except OSError:
            return False
        return True

    @classmethod
    def for_project(cls, project) -> PredictionCache:
        return cls(project.state_dir / "predictions")

    def _run_dir(self, run_id: str) -> Path:
        if not run_id or "/" in run_id or "\\" in run_id or run_id in (".", ".."):
            raise ValueError(f"unsafe run id {run_id!r}")
        return self.folder / run_id

    def validate(self, run_id: str, stamp: dict) -> bool:
        """Keep the run's entries if they came from `stamp`'s checkpoint, else drop them.

        Returns True when cached predictions (if any) are still valid.
        """
        d = self._run_dir(run_id)
        try:
            old = json.loads((d / STAMP).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = None
        if old == stamp:
            return True
        if d.exists():
            log.info("run %s changed; dropping its cached predictions", run_id)
            shutil.rmtree(d, ignore_errors=True)
        try:
            d.mkdir(parents=True, exist_ok=True)
            atomic_write_json(d / STAMP, stamp)
        except OSError as e:        # a read-only project or a full disk: predict without a cache
            log.info("prediction cache not written (%s)", e)
        return False

    def save(self, run_id: str, image_id: str, labels: np.ndarray,
             entropy: np.ndarray | None = None, objects: np.ndarray | None = None) -> None:
        """Best effort: a cache that cannot be written (read-only, disk nearly full) is skipped."""
        d = self._run_dir(run_id)
        if not (d / STAMP).exists():
            return                  # validate() could not write its stamp: no cache this time
        files = [(d / f"{image_id}.labels.png", encode_mask_png(labels))]
        if entropy is not None:
            files.append((d / f"{image_id}.uncertainty.png", encode_mask_png(quantise_unit(entropy))))
        for old in self._objects_paths(d, image_id):
            old.unlink(missing_ok=True)
        if objects is not None:
            suffix, data = encode_objects(objects)
            files.append((d / f"{image_id}.prediction{suffix}", data))
        if not self._room_for(sum(len(data) for _, data in files)):
            return
        try:
            for path, data in files:
                atomic_write_bytes(path, data)
        except OSError as e:
            log.warning("prediction cache not written (%s)", e)

    @staticmethod
    def _objects_paths(d: Path, image_id: str) -> list[Path]:
        return [d / f"{image_id}.prediction{suffix}" for suffix in (PNG_SUFFIX, TIFF_SUFFIX)]

    def load_objects(self, run_id: str, image_id: str, shape: tuple[int, int]
                     ) -> np.ndarray | None:
        """The cached prediction's object ids (uint32), or None."""
        for path in self._objects_paths(self._run_dir(run_id), image_id):
            if path.is_file():
                try:
                    return decode_objects(path.read_bytes(), path, shape)
                except (OSError, InstanceFileError) as e:
                    log.warning("cached object ids %s unreadable (%s)", path, e)
        return None

    def load(self, run_id: str, image_id: str, shape: tuple[int, int]
             ) -> tuple[np.ndarray, np.ndarray | None] | None:
        """(labels, uncertainty uint8 or None), or None when nothing usable is cached."""
        d = self._run_dir(run_id)
        path = d / f"{image_id}.labels.png"
        if not path.is_file():
            return None
        try:
            labels = decode_mask_png(path.read_bytes(), path)
            unc_path = d / f"{image_id}.uncertainty.png"
            unc = decode_mask_png(unc_path.read_bytes(), unc_path) if unc_path.is_file() else None
        except (OSError, MaskError) as e:
            log.warning("cached prediction %s unreadable (%s); predicting again", path, e)
            return None
        if labels.shape != tuple(shape) or (unc is not None and unc.shape != tuple(shape)):
            return None          # the image changed size since: the prediction is of another
        return labels, unc

    def _trim(self, target: int) -> None:
        """Drop the oldest cached predictions (never a stamp) until the cache fits `target`."""
        files = sorted((f for f in self.folder.rglob("*.png") if f.is_file()),
                       key=lambda f: f.stat().st_mtime_ns)
        size = self.size_bytes()
        for f in files:
            if size <= target:
                break
            size -= f.stat().st_size
            f.unlink(missing_ok=True)
        log.info("prediction cache trimmed to its %d MB budget", self.budget // 2**20)

    def forget(self, run_id: str | None = None) -> None:
        """Drop one run's cache, or every run's."""
        target = self.folder if run_id is None else self._run_dir(run_id)
        shutil.rmtree(target, ignore_errors=True)
