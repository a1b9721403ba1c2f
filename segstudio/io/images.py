"""Reading images: PNG, JPEG, BMP, TIFF (multi-page), DICOM and NIfTI slices.

`probe` reads headers only (sizes are checked before anything is decoded); `read_image`
returns the pixels as stored (16-bit stays 16-bit; DICOM gets its rescale slope/intercept),
memory-mapped where the file allows it so huge images open without copying.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

DEFAULT_MAX_PIXELS = 1 << 30  # ~1.07 gigapixels per 2-D image (a 32768 x 32768 image)

RASTER_EXTS = {".png", ".jpg", ".jpeg", ".bmp"}
TIFF_EXTS = {".tif", ".tiff"}
DICOM_EXTS = {".dcm", ".dicom"}
NIFTI_EXTS = {".nii", ".nii.gz"}
SUPPORTED_EXTS = RASTER_EXTS | TIFF_EXTS | DICOM_EXTS | NIFTI_EXTS


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
    kind: str                  # "raster", "tiff", "dicom", "nifti"
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


def is_supported(path: Path) -> bool:
    return suffix_of(Path(path)) in SUPPORTED_EXTS


def _fail(path: Path, why: str) -> ImageReadError:
    return ImageReadError(f"{path}: {why}")


def _check_file(path: Path) -> None:
    if not path.exists():
        raise _fail(path, "file not found")
    if path.is_dir():
        raise _fail(path, "is a folder, not an image")
    if path.stat().st_size == 0:
        raise _fail(path, "file is empty (0 bytes)")


def _check_size(info: ImageInfo, max_pixels: int) -> None:
    if info.height <= 0 or info.width <= 0:
        raise _fail(info.path, f"declares an empty image ({info.width} x {info.height})")
    if info.pixels > max_pixels:
        raise ImageTooLargeError(
            f"{info.path}: {info.width} x {info.height} pixels is over the limit of "
            f"{max_pixels:,} pixels (setting 'max_pixels'); refusing to load it")


# -- probing ---------------------------------------------------------------------------------
def probe(path: Path | str, max_pixels: int = DEFAULT_MAX_PIXELS) -> list[ImageInfo]:
    """The 2-D items in a file, from its header alone; raises ImageReadError."""
    path = Path(path)
    _check_file(path)
    ext = suffix_of(path)
    if ext in RASTER_EXTS:
        infos = _probe_raster(path)
    elif ext in TIFF_EXTS:
        infos = _probe_tiff(path)
    elif ext in DICOM_EXTS:
        infos = _probe_dicom(path)
    elif ext in NIFTI_EXTS:
        infos = _probe_nifti(path)
    else:
        raise _fail(path, f"unsupported file type '{ext}'; supported: {sorted(SUPPORTED_EXTS)}")
    for info in infos:
        _check_size(info, max_pixels)
    return infos


_PIL_MODES = {"1": (1, "uint8"), "L": (1, "uint8"), "P": (3, "uint8"), "LA": (2, "uint8"),
              "RGB": (3, "uint8"), "RGBA": (4, "uint8"), "CMYK": (3, "uint8"),
              "I;16": (1, "uint16"), "I;16B": (1, "uint16"), "I": (1, "uint16"),
              "YCbCr": (3, "uint8")}


def _probe_raster(path: Path) -> list[ImageInfo]:
    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = None  # our own limit applies, after this header-only read
    try:
        with Image.open(path) as im:
            width, height = im.size
            mode = im.mode
            fmt = im.format
    except UnidentifiedImageError:
        raise _fail(path, f"not a readable {suffix_of(path)[1:].upper()} image") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise _fail(path, f"broken image header ({e})") from None
    channels, dtype = _PIL_MODES.get(mode, (3, "uint8"))
    if fmt == "PNG" and mode in ("I", "I;16", "I;16B"):
        dtype = "uint16"
    return [ImageInfo(path, None, height, width, channels, dtype, "raster")]


def _probe_tiff(path: Path) -> list[ImageInfo]:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            infos = []
            for i, page in enumerate(tif.pages):
                shape = page.shape
                if page.planarconfig == 2 and len(shape) == 3:  # separate planes: (c, h, w)
                    shape = (shape[1], shape[2], shape[0])
                if len(shape) not in (2, 3):
                    raise _fail(path, f"page {i} has shape {shape}; expected 2-D grey or colour")
                channels = 1 if len(shape) == 2 else shape[2]
                infos.append(ImageInfo(path, i, int(shape[0]), int(shape[1]), int(channels),
                                       str(page.dtype), "tiff"))
    except ImageReadError:
        raise
    except Exception as e:  # tifffile raises TiffFileError, ValueError, struct.error, ...
        raise _fail(path, f"not a readable TIFF file ({e})") from None
    if not infos:
        raise _fail(path, "TIFF file has no pages")
    if len(infos) == 1:
        infos = [ImageInfo(path, None, *_fields(infos[0]))]
    return infos


def _fields(info: ImageInfo) -> tuple:
    return info.height, info.width, info.channels, info.dtype, info.kind


def _dicom_window(ds) -> tuple[float, float] | None:
    def first(v):
        try:
            return float(v[0])
        except TypeError:
            return float(v)
    if "WindowCenter" in ds and "WindowWidth" in ds:
        try:
            return first(ds.WindowCenter), first(ds.WindowWidth)
        except (TypeError, ValueError):
            return None
    return None


def _probe_dicom(path: Path) -> list[ImageInfo]:
    import pydicom

    try:
        ds = pydicom.dcmread(path, defer_size="1 KB")
    except Exception as e:
        raise _fail(path, f"not a readable DICOM file ({e})") from None
    if "PixelData" not in ds and "FloatPixelData" not in ds:
        raise _fail(path, "DICOM file has no pixel data (it may be a report or a structure set)")
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
    except AttributeError:
        raise _fail(path, "DICOM file lacks Rows/Columns") from None
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    channels = int(getattr(ds, "SamplesPerPixel", 1) or 1)
    slope = float(getattr(ds, "RescaleSlope", 1) or 1)
    dtype = "float32" if slope != 1 or "RescaleIntercept" in ds else (
        "uint16" if int(getattr(ds, "BitsAllocated", 8)) > 8 else "uint8")
    window = _dicom_window(ds)
    if frames == 1:
        return [ImageInfo(path, None, rows, cols, channels, dtype, "dicom", window)]
    return [ImageInfo(path, i, rows, cols, channels, dtype, "dicom", window) for i in range(frames)]


def _probe_nifti(path: Path) -> list[ImageInfo]:
    import nibabel as nib

    try:
        img = nib.load(str(path))
        shape = tuple(int(s) for s in img.shape)
        dtype = str(img.get_data_dtype())
        affine = img.affine.tolist()
    except Exception as e:
        raise _fail(path, f"not a readable NIfTI file ({e})") from None
    while len(shape) > 2 and shape[-1] == 1:
        shape = shape[:-1]
    extra = {"affine": affine, "volume_shape": list(shape)}
    if len(shape) == 2:
        return [ImageInfo(path, None, shape[1], shape[0], 1, dtype, "nifti", None, extra)]
    if len(shape) == 3:
        return [ImageInfo(path, k, shape[1], shape[0], 1, dtype, "nifti", None, extra)
                for k in range(shape[2])]
    raise _fail(path, f"NIfTI volume of shape {shape}: only 2-D images and 3-D volumes are supported")


# -- reading ---------------------------------------------------------------------------------
def read_image(path: Path | str, frame: int | None = None,
               max_pixels: int = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Pixels of one item, as stored; raises ImageReadError with a plain reason."""
    path = Path(path)
    infos = probe(path, max_pixels)
    if frame is None:
        info = infos[0]
    else:
        matches = [i for i in infos if i.frame == frame or (i.frame is None and frame == 0)]
        if not matches:
            raise _fail(path, f"has no frame {frame} (it holds {len(infos)})")
        info = matches[0]
    if info.kind == "raster":
        data = _read_raster(path, info)
    elif info.kind == "tiff":
        data = _read_tiff(path, info.frame or 0)
    elif info.kind == "dicom":
        data = _read_dicom(path, info.frame)
    else:
        data = _read_nifti(path, info.frame)
    if data.shape[:2] != (info.height, info.width):
        raise _fail(path, f"decoded size {data.shape[:2]} differs from its header "
                          f"({info.height}, {info.width})")
    return LoadedImage(info, data)


def _read_raster(path: Path, info: ImageInfo) -> np.ndarray:
    import cv2

    # np.fromfile + imdecode: cv2.imread cannot open non-ASCII paths on every platform
    buf = np.fromfile(path, dtype=np.uint8)
    data = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if data is None:
        raise _fail(path, "could not decode the image data (the file is truncated or corrupt)")
    if data.ndim == 3:
        code = cv2.COLOR_BGRA2RGBA if data.shape[2] == 4 else cv2.COLOR_BGR2RGB
        data = cv2.cvtColor(data, code)
    return data


def _read_tiff(path: Path, page: int) -> np.ndarray:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            p = tif.pages[page]
            memmappable = p.is_memmappable
            if not memmappable:
                data = p.asarray()
        if memmappable:
            data = tifffile.memmap(path, page=page, mode="r")
    except Exception as e:
        raise _fail(path, f"could not read TIFF page {page} ({e})") from None
    if data.ndim == 3 and data.shape[0] in (3, 4) and data.shape[2] not in (3, 4):
        data = np.moveaxis(data, 0, -1)
    return data


def _read_dicom(path: Path, frame: int | None) -> np.ndarray:
    import pydicom

    try:
        ds = pydicom.dcmread(path)
        arr = ds.pixel_array
    except Exception as e:
        raise _fail(path, f"could not decode the DICOM pixel data ({e})") from None
    if frame is not None:
        arr = arr[frame]
    slope = float(getattr(ds, "RescaleSlope", 1) or 1)
    intercept = float(getattr(ds, "RescaleIntercept", 0) or 0)
    if slope != 1 or "RescaleIntercept" in ds:
        arr = arr.astype(np.float32) * np.float32(slope) + np.float32(intercept)
    return arr


def _read_nifti(path: Path, frame: int | None) -> np.ndarray:
    import nibabel as nib

    try:
        img = nib.load(str(path))
        if len(img.shape) == 2 or frame is None:
            data = np.asarray(img.dataobj)
            data = data.reshape(data.shape[:2])
        else:
            data = np.asarray(img.dataobj[..., frame]).reshape(img.shape[:2])
    except Exception as e:
        raise _fail(path, f"could not read NIfTI slice {frame} ({e})") from None
    # NIfTI stores (i, j): show j as rows so the slice appears as in common viewers
    return np.ascontiguousarray(data.T)
