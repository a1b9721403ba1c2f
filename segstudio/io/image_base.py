"""What every image reader shares: ImageInfo, the one error type, and the reader registry.

A reader (a file type) is registered once, with its suffixes, in `io.images` (raster, TIFF,
NIfTI, and DICOM from `io.dicom`); the suffix check, the "unsupported file type" message and
the Add Images file-dialog filter are all built from `IMAGE_READERS`. Readers import this
module, never `io.images`, so no two reader modules import each other.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class ImageReadError(Exception):
    """An image that cannot be opened; the message names the file and says why."""


class ImageTooLargeError(ImageReadError):
    """An image larger than the configured pixel limit."""


@dataclass(frozen=True)
class ImageInfo:
    """What the header says about one 2-D item (a page, a slice or a whole image)."""

    path: Path
    frame: int | None          # page / slice / frame index inside a multi-item file
    height: int
    width: int
    channels: int
    dtype: str
    kind: str                  # the reader's kind: "raster", "tiff", "dicom", "nifti"
    window: tuple[float, float] | None = None       # DICOM (centre, width) display default
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def pixels(self) -> int:
        return self.height * self.width


@dataclass
class LoadedImage:
    info: ImageInfo
    data: np.ndarray  # (h, w) or (h, w, c); may be a read-only memory map


def suffix_of(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


_NEWLINES = re.compile(r"\s*\n\s*")


def fail(path: Path, why: str) -> ImageReadError:
    """The error for one file: '<path>: <why>', on one line (decoder messages span several)."""
    return ImageReadError(f"{path}: {_NEWLINES.sub('; ', str(why).strip())}")


# -- the registry ----------------------------------------------------------------------------
@dataclass(frozen=True)
class ImageReader:
    """One file type: the suffixes it owns, a header-only probe and a decoder."""

    kind: str                                        # ImageInfo.kind of what it probes
    label: str                                       # "DICOM": messages and dialog filters
    suffixes: tuple[str, ...]                        # lower case with the dot; ".nii.gz" is one
    probe: Callable[[Path], list[ImageInfo]]         # header only; raises ImageReadError
    read: Callable[[Path, ImageInfo], np.ndarray]    # the pixels of one probed item
    sniff: Callable[[Path], bool] | None = None      # recognises a file by its bytes (no suffix)


IMAGE_READERS: dict[str, ImageReader] = {}           # kind -> reader, in registration order


def register_image_reader(reader: ImageReader) -> ImageReader:
    """Adds a file type; a suffix another reader owns is refused (one reader per suffix)."""
    owners = {s: r.kind for r in IMAGE_READERS.values() if r.kind != reader.kind for s in r.suffixes}
    taken = [s for s in reader.suffixes if s in owners]
    if taken:
        raise ValueError(f"image reader {reader.kind!r}: suffix(es) {taken} already belong to "
                         f"{sorted({owners[s] for s in taken})}")
    IMAGE_READERS[reader.kind] = reader
    return reader


def supported_suffixes() -> list[str]:
    """Every registered suffix, in registration order."""
    return [s for r in IMAGE_READERS.values() for s in r.suffixes]


def reader_for(path: Path) -> ImageReader | None:
    """The reader that owns the file's suffix, else the first whose sniff recognises it."""
    ext = suffix_of(path)
    for r in IMAGE_READERS.values():
        if ext in r.suffixes:
            return r
    for r in IMAGE_READERS.values():
        if r.sniff is not None and r.sniff(path):
            return r
    return None


def image_file_filter() -> str:
    """The file-dialog filter for adding images: every registered suffix, then all files."""
    patterns = " ".join(f"*{s}" for s in supported_suffixes())
    return f"Images ({patterns});;All files (*)"
