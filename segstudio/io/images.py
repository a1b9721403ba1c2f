"""Reading images: PNG, JPEG, BMP, TIFF (multi-page), DICOM and NIfTI slices.

`probe` reads headers only (sizes are checked before anything is decoded); `read_image`
returns the pixels as stored (16-bit stays 16-bit; DICOM gets its rescale slope/intercept),
memory-mapped where the file allows it so huge images open without copying; `verify` probes and
decodes, for `segstudio-cli check`. Whatever a file holds, the three raise only ImageReadError,
with one line naming the file: the readers' own exceptions are wrapped. Each file type is one
record at the bottom of this module (`io.image_base.IMAGE_READERS`): its suffixes, probe and
decoder; the supported-suffix check and the Add Images dialog's filter are built from it.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from dataclasses import replace
from pathlib import Path

import numpy as np

from segstudio.io.dicom import looks_like_dicom, probe_dicom, read_dicom
from segstudio.io.image_base import (IMAGE_READERS, ImageInfo, ImageReader, ImageReadError,
                                     ImageTooLargeError, LoadedImage, fail, image_file_filter,
                                     reader_for, register_image_reader, suffix_of,
                                     supported_suffixes)

log = logging.getLogger(__name__)

DEFAULT_MAX_PIXELS = 1 << 30  # ~1.07 gigapixels per 2-D image (a 32768 x 32768 image)

__all__ = ["DEFAULT_MAX_PIXELS", "IMAGE_READERS", "ImageInfo", "ImageReadError", "ImageReader",
           "ImageTooLargeError", "LoadedImage", "fail", "image_file_filter", "is_supported",
           "nifti_index", "probe", "read_image", "suffix_of", "supported_suffixes", "verify"]


def is_supported(path: Path) -> bool:
    """Whether a registered reader owns the file's suffix (DICOM without one: see reader_for)."""
    return suffix_of(Path(path)) in supported_suffixes()


_fail = fail


def _unexpected(path: Path, error: Exception) -> ImageReadError:
    """A reader library's own exception, as one line for the user (the traceback goes to the log)."""
    log.debug("reading %s", path, exc_info=error)
    if isinstance(error, MemoryError):
        return fail(path, "not enough memory to read it")
    reason = str(error) or type(error).__name__
    return fail(path, f"could not read it ({type(error).__name__}: {reason})")


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
    """The 2-D items in a file, from its header alone; raises ImageReadError only."""
    path = Path(path)
    try:
        return _probe(path, max_pixels)
    except ImageReadError:
        raise
    except Exception as e:  # a reader library's bug or an unforeseen file: one line, not a traceback
        raise _unexpected(path, e) from None


def _reader_of(path: Path) -> ImageReader:
    reader = reader_for(path)
    if reader is not None:
        return reader
    ext = suffix_of(path)
    what = f"'{ext}'" if ext else "(the name has no suffix)"
    sniffed = [r.label for r in IMAGE_READERS.values() if r.sniff is not None]
    raise fail(path, f"unsupported file type {what}: not a supported image type "
                     f"(supported: {', '.join(sorted(supported_suffixes()))}"
                     + (f", and {' and '.join(sniffed)} by its contents)" if sniffed else ")"))


def _probe(path: Path, max_pixels: int) -> list[ImageInfo]:
    _check_file(path)
    infos = _reader_of(path).probe(path)
    if not infos:
        raise fail(path, "holds no images")
    for info in infos:
        _check_size(info, max_pixels)
    return infos


_PIL_MODES = {"1": (1, "uint8"), "L": (1, "uint8"), "P": (3, "uint8"), "LA": (2, "uint8"),
              "RGB": (3, "uint8"), "RGBA": (4, "uint8"), "CMYK": (3, "uint8"),
              "I;16": (1, "uint16"), "I;16B": (1, "uint16"), "I": (1, "uint16"),
              "YCbCr": (3, "uint8")}


_CV_MAX_SIDE = 1 << 20   # OpenCV's CV_IO_MAX_IMAGE_WIDTH / HEIGHT


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
    if max(width, height) > _CV_MAX_SIDE:
        raise fail(path, f"declares {width} x {height} pixels; images wider or taller than "
                         f"{_CV_MAX_SIDE:,} pixels are not supported")
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
                                       _tiff_dtype(path, i, page.dtype), "tiff"))
    except ImageReadError:
        raise
    except Exception as e:  # tifffile raises TiffFileError, ValueError, struct.error, ...
        raise _fail(path, f"not a readable TIFF file ({e})") from None
    if not infos:
        raise _fail(path, "TIFF file has no pages")
    if len(infos) == 1:
        infos = [ImageInfo(path, None, *_fields(infos[0]))]
    return infos


def _tiff_dtype(path: Path, page: int, dtype) -> str:
    """The dtype read_image returns: bool pages become uint8 0/255, complex ones are refused."""
    dtype = np.dtype(dtype) if dtype is not None else None
    if dtype is None:
        raise fail(path, f"page {page} has a sample format this reader does not know")
    if dtype.kind == "c":
        raise fail(path, f"page {page}: complex-valued pixels are not supported; save the magnitude "
                         f"(e.g. numpy.abs) as a real-valued image")
    if dtype.kind == "b":
        return "uint8"
    if dtype.kind not in "uif":
        raise fail(path, f"page {page} has {dtype} pixels; only integer and float images are supported")
    return dtype.newbyteorder("=").name


def _fields(info: ImageInfo) -> tuple:
    return info.height, info.width, info.channels, info.dtype, info.kind


def open_nifti(path: Path):
    """(image, shape, voxel dtype, affine) of a NIfTI file, header only, or ImageReadError
    saying why it is none we read (not NIfTI, CIFTI, complex or non-numeric voxels)."""
    import nibabel as nib

    try:
        img = nib.load(str(path))
    except Exception as e:
        raise _fail(path, f"not a readable NIfTI file ({e})") from None
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise fail(path, f"is a {type(img).__name__.replace('Image', '')} file, not a NIfTI image "
                         f"(CIFTI and other formats are not supported)")
    try:
        shape = tuple(int(s) for s in img.shape)
        data_dtype = np.dtype(img.get_data_dtype())
        affine = np.asarray(img.affine, np.float64)
    except Exception as e:
        raise _fail(path, f"not a readable NIfTI file ({e})") from None
    if data_dtype.kind == "c":
        raise fail(path, "complex-valued pixels are not supported; save the magnitude")
    if data_dtype.kind not in "uif" and data_dtype.kind != "b":
        raise fail(path, f"holds {data_dtype} voxels; only integer and float images are supported")
    return img, shape, data_dtype, affine


def _probe_nifti(path: Path) -> list[ImageInfo]:
    img, shape, data_dtype, affine = open_nifti(path)
    affine = affine.tolist()
    proxy = img.dataobj
    scaled = getattr(proxy, "slope", 1) != 1 or getattr(proxy, "inter", 0) != 0
    if data_dtype.kind == "b":
        dtype = "uint8"
    elif scaled and data_dtype.kind != "f":
        dtype = "float64"                  # nibabel applies scl_slope / scl_inter in float64
    else:
        dtype = data_dtype.newbyteorder("=").name
    while len(shape) > 2 and shape[-1] == 1:
        shape = shape[:-1]
    extra = {"affine": affine, "volume_shape": list(shape)}
    if any(n <= 0 for n in shape):
        raise fail(path, f"NIfTI volume of shape {shape} holds no voxels")
    if len(shape) == 1:
        raise fail(path, f"NIfTI data of shape {shape} is 1-D, not an image")
    if len(shape) == 2:
        return [ImageInfo(path, None, shape[1], shape[0], 1, dtype, "nifti", None, extra)]
    if len(shape) in (3, 4):
        # a 4-D file (time points, echoes): its slices numbered volume by volume
        items = shape[2] * (shape[3] if len(shape) == 4 else 1)
        return [ImageInfo(path, k, shape[1], shape[0], 1, dtype, "nifti", None, extra)
                for k in range(items)]
    raise _fail(path, f"NIfTI data of shape {shape}: only 2-D images, 3-D volumes and 4-D "
                      f"series of volumes are supported")


def nifti_index(shape: tuple[int, ...], frame: int | None) -> tuple:
    """The index of item `frame` (as `probe` numbers them) into NIfTI data of `shape`: slice
    `frame` of a 3-D volume; of a 4-D one, slice frame % depth of volume frame // depth."""
    ndim = len(shape)
    while ndim > 2 and shape[ndim - 1] == 1:
        ndim -= 1
    head = (slice(None), slice(None))
    if ndim <= 2 or frame is None:
        where: tuple = ()
    elif ndim == 3:
        where = (frame,)
    else:
        volume, k = divmod(frame, shape[2])
        where = (k, volume)
    return head + where + (0,) * (len(shape) - 2 - len(where))


# -- reading ---------------------------------------------------------------------------------
# Decoded images this large (a compressed TIFF cannot be memory-mapped) are decoded once and
# shared, read-only, while anyone holds them: the window's opener and the thumbnail job ask
# for the same image at once, and a second decode doubled the time and memory of opening it.
SHARE_ABOVE_BYTES = 64 * 2**20


class _Decode:
    """One decode in flight: the threads waiting for it take its result from here."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: LoadedImage | None = None


_shared: weakref.WeakValueDictionary[tuple, LoadedImage] = weakref.WeakValueDictionary()
_decoding: dict[tuple, _Decode] = {}
_shared_lock = threading.Lock()


def read_image(path: Path | str, frame: int | None = None,
               max_pixels: int = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Pixels of one item, as stored; raises ImageReadError (only) with a plain reason.

    Large decoded images come back read-only and shared with other callers (SHARE_ABOVE_BYTES);
    a caller that reads the same item while it is being decoded waits for that decode."""
    path = Path(path)
    try:
        st = path.stat()
        key: tuple | None = (str(path.resolve()), frame, st.st_mtime_ns, st.st_size, max_pixels)
    except OSError:
        key = None                  # probe says why
    if key is None:
        return _read_checked(path, frame, max_pixels)
    with _shared_lock:
        hit = _shared.get(key)
        if hit is not None:
            return hit
        busy = _decoding.get(key)
        if busy is None:
            _decoding[key] = mine = _Decode()
    if busy is not None:            # another thread decodes it: share its result
        busy.done.wait()
        got = busy.result
        return got if got is not None else _read_checked(path, frame, max_pixels)
    try:
        loaded = _read_checked(path, frame, max_pixels)
        data = loaded.data
        if data.nbytes >= SHARE_ABOVE_BYTES and not isinstance(data, np.memmap):
            data.setflags(write=False)
            mine.result = loaded
            with _shared_lock:
                _shared[key] = loaded
        return loaded
    finally:
        with _shared_lock:
            _decoding.pop(key, None)
        mine.done.set()


def _read_checked(path: Path, frame: int | None, max_pixels: int) -> LoadedImage:
    infos = probe(path, max_pixels)
    try:
        return _read_item(path, infos, frame)
    except ImageReadError:
        raise
    except Exception as e:
        raise _unexpected(path, e) from None


def verify(path: Path | str, max_pixels: int = DEFAULT_MAX_PIXELS) -> list[ImageInfo]:
    """Probe, then decode the first and the last item, so a file that opens here opens in the window.

    The header alone passes files whose pixels no installed decoder reads (JPEG 2000 DICOM
    without pylibjpeg) or that were cut short; decoding the last item of a multi-item file
    catches a truncated end. The dtypes returned are those decoded. Raises ImageReadError only.
    """
    path = Path(path)
    infos = probe(path, max_pixels)
    decoded = {}
    for item in dict.fromkeys((infos[0].frame, infos[-1].frame)):
        try:
            data = _read_item(path, infos, item).data
            if data.size:
                np.asarray(data.reshape(-1)[-1:])   # touch the last byte of a memory map
        except ImageReadError:
            raise
        except Exception as e:
            raise _unexpected(path, e) from None
        decoded[item] = data.dtype
    dtype = np.dtype(decoded[infos[0].frame]).newbyteorder("=").name
    return [replace(i, dtype=dtype) for i in infos]


def _read_item(path: Path, infos: list[ImageInfo], frame: int | None) -> LoadedImage:
    if frame is None:
        info = infos[0]
    else:
        matches = [i for i in infos if i.frame == frame or (i.frame is None and frame == 0)]
        if not matches:
            raise _fail(path, f"has no frame {frame} (it holds {len(infos)})")
        info = matches[0]
    data = IMAGE_READERS[info.kind].read(path, info)
    if data.ndim not in (2, 3):
        raise fail(path, f"decoded pixels have shape {data.shape}; expected a 2-D grey or colour image")
    if data.shape[:2] != (info.height, info.width):
        raise _fail(path, f"decoded size {data.shape[:2]} differs from its header "
                          f"({info.height}, {info.width})")
    return LoadedImage(info, data)


def _read_raster(path: Path, info: ImageInfo) -> np.ndarray:
    import cv2

    # np.fromfile + imdecode: cv2.imread cannot open non-ASCII paths on every platform
    buf = np.fromfile(path, dtype=np.uint8)
    try:
        # OpenCV's own log line for a broken file would repeat, unnamed, the message raised below
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    except AttributeError:
        pass
    try:
        data = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    except cv2.error as e:
        reason = str(e).strip().splitlines()[-1] if str(e).strip() else "OpenCV error"
        raise fail(path, f"could not decode the image data ({reason})") from None
    if data is None:
        raise _fail(path, "could not decode the image data (the file is truncated or corrupt)")
    if data.ndim == 3:
        code = cv2.COLOR_BGRA2RGBA if data.shape[2] == 4 else cv2.COLOR_BGR2RGB
        data = cv2.cvtColor(data, code)
    return data


def _read_tiff_item(path: Path, info: ImageInfo) -> np.ndarray:
    data = _read_tiff(path, info.frame or 0)
    if data.dtype == bool:
        # a binary image: 0/255, not 0/1, so it shows black and white with no contrast
        # setting and scales like any 8-bit image for the models
        data = np.where(data, np.uint8(255), np.uint8(0))
    return data


def _read_tiff(path: Path, page: int) -> np.ndarray:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            p = tif.pages[page]
            memmappable = p.is_memmappable
            if not memmappable:     # compressed: decode its strips / tiles on every core
                data = p.asarray(maxworkers=os.cpu_count() or 1)
        if memmappable:
            data = tifffile.memmap(path, page=page, mode="r")
    except Exception as e:
        raise _fail(path, f"could not read TIFF page {page} ({e})") from None
    if data.ndim == 3 and data.shape[0] in (3, 4) and data.shape[2] not in (3, 4):
        data = np.moveaxis(data, 0, -1)
    return data


def _read_nifti(path: Path, frame: int | None) -> np.ndarray:
    import nibabel as nib

    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj[nifti_index(img.shape, frame)]).reshape(img.shape[:2])
    except Exception as e:
        raise _fail(path, f"could not read NIfTI slice {frame} ({e})") from None
    if data.dtype == bool:
        data = np.where(data, np.uint8(255), np.uint8(0))
    elif data.dtype.byteorder not in ("=", "|"):
        data = data.astype(data.dtype.newbyteorder("="))
    # NIfTI stores (i, j): show j as rows so the slice appears as in common viewers
    return np.ascontiguousarray(data.T)


# -- the file types, one record each (io.image_base.IMAGE_READERS) -------------------------------
register_image_reader(ImageReader("raster", "PNG, JPEG, BMP", (".png", ".jpg", ".jpeg", ".bmp"),
                                  _probe_raster, _read_raster))
register_image_reader(ImageReader("tiff", "TIFF", (".tif", ".tiff"), _probe_tiff, _read_tiff_item))
# scanners often write DICOM without a suffix (or as .IMA): recognised by its contents too
register_image_reader(ImageReader("dicom", "DICOM", (".dcm", ".dicom"), probe_dicom, read_dicom,
                                  sniff=looks_like_dicom))
register_image_reader(ImageReader("nifti", "NIfTI", (".nii", ".nii.gz"), _probe_nifti,
                                  lambda path, info: _read_nifti(path, info.frame)))
