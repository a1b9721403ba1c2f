"""DICOM images: header checks before anything is decoded, frame decoding, decoder advice.

Headers written by other tools are checked field by field, from the text as stored, so a bad
value gives one sentence naming the file and the field instead of a pydicom exception:
`NumberOfFrames is '1A', not a whole number`. Where the intent is clear we warn and go on
(a multi-valued RescaleSlope: its first value; more frames declared than the data holds: the
frames it holds).
"""

from __future__ import annotations

import importlib.util
import io
import logging
import math
from pathlib import Path

import numpy as np

from segstudio.io.image_base import ImageInfo, ImageReadError, fail

log = logging.getLogger(__name__)

INSTALL_CODECS = 'pip install "segstudio[dicom-codecs]"'
# what the dicom-codecs extra brings, by import name (pylibjpeg-openjpeg imports as openjpeg)
_CODEC_MODULES = ("pylibjpeg", "openjpeg", "rle", "gdcm")
_warned: set[tuple[str, str]] = set()


class _QuietDecoderTracebacks(logging.Filter):
    """pydicom logs every failed decoder plugin with its traceback, at ERROR; read_dicom raises
    the same reasons as one ImageReadError, so those records become one DEBUG line of ours."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.levelno >= logging.ERROR:
            log.debug("pydicom decoder failed: %s", record.getMessage())
            return False
        return True


logging.getLogger("pydicom.pixels.decoders.base").addFilter(_QuietDecoderTracebacks())


def _warn_once(path: Path, message: str) -> None:
    """Probe runs at every open and every read: say a header problem once per file."""
    key = (str(path), message)
    if key not in _warned:
        _warned.add(key)
        log.warning("%s: %s", path, message)


def looks_like_dicom(path: Path) -> bool:
    """A DICOM Part 10 file: 128 bytes of preamble, then b'DICM'."""
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return head[128:132] == b"DICM"


# -- header fields, from the text as stored ----------------------------------------------------
def _element(ds, keyword: str):
    from pydicom.datadict import tag_for_keyword

    tag = tag_for_keyword(keyword)
    if tag is None or tag not in ds:
        return None
    try:
        return ds.get_item(tag, keep_deferred=True)   # pydicom 3: never reads deferred values
    except TypeError:
        return ds.get_item(tag)


def _text(ds, keyword: str) -> str | None:
    """An element's value as written (before pydicom converts it, so no conversion warnings)."""
    elem = _element(ds, keyword)
    if elem is None:
        return None
    value = elem.value
    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("latin-1").strip(" \0")
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def _whole(path: Path, ds, keyword: str, default: int | None) -> int:
    """A whole-number field (US or IS), or ImageReadError naming the field."""
    from pydicom.datadict import dictionary_VR

    if dictionary_VR(keyword) == "IS":
        value = _text(ds, keyword)        # the text as written: no conversion warning
    else:
        try:
            value = ds.get(keyword) if _element(ds, keyword) is not None else None
        except Exception:                 # a binary US of the wrong length, ...
            raise fail(path, f"{keyword} is unreadable") from None
    if value is None or value == "":
        if default is None:
            raise fail(path, f"DICOM file lacks {keyword}")
        return default
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("latin-1").strip(" \0")
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = "\\".join(str(v) for v in value)
    try:
        number = float(str(value).strip())
    except ValueError:
        raise fail(path, f"{keyword} is {str(value)!r}, not a whole number") from None
    if not number.is_integer():
        raise fail(path, f"{keyword} is {str(value)!r}, not a whole number")
    return int(number)


def _number(path: Path, ds, keyword: str, default: float, *, multi_ok: bool = False) -> float:
    """A decimal field (DS); a multi-valued one gives its first value (with a warning unless
    the standard allows several, as for display windows)."""
    text = _text(ds, keyword)
    if not text:
        return default
    parts = [p.strip() for p in text.split("\\")]
    if len(parts) > 1 and not multi_ok:
        _warn_once(path, f"{keyword} has {len(parts)} values ({text!r}); using the first, {parts[0]}")
    try:
        value = float(parts[0])
    except ValueError:
        raise fail(path, f"{keyword} is {text!r}, not a number") from None
    if not math.isfinite(value):
        raise fail(path, f"{keyword} is {text!r}; it must be a finite number")
    return value


def _window(path: Path, ds) -> tuple[float, float] | None:
    """(centre, width) for display, or None where absent or unusable (display falls back)."""
    try:
        centre = _number(path, ds, "WindowCenter", math.nan, multi_ok=True)
        width = _number(path, ds, "WindowWidth", math.nan, multi_ok=True)
    except ImageReadError as e:
        _warn_once(path, f"ignoring its display window ({str(e).split(': ', 1)[-1]})")
        return None
    if math.isnan(centre) or math.isnan(width) or width <= 0:
        return None
    return centre, width


# -- transfer syntax in words --------------------------------------------------------------------
def syntax_words(uid) -> str:
    """'JPEG 2000 compressed (JPEG 2000 Image Compression)' for a transfer syntax UID."""
    from pydicom.uid import UID

    if not uid:
        return "pixel data of unknown encoding (no transfer syntax in the header)"
    uid = UID(str(uid))
    name, kw = uid.name, uid.keyword or ""
    if "HTJ2K" in kw:
        words = "High-Throughput JPEG 2000 compressed"
    elif "JPEG2000" in kw:
        words = "JPEG 2000 compressed"
    elif "JPEGLS" in kw:
        words = "JPEG-LS compressed"
    elif "JPEGLossless" in kw:
        words = "lossless JPEG compressed"
    elif "JPEGExtended" in kw:
        words = "12-bit JPEG compressed"
    elif "JPEG" in kw:
        words = "JPEG compressed"
    elif "RLE" in kw:
        words = "RLE compressed"
    elif "Deflated" in kw:
        words = "deflate compressed"
    elif uid.is_compressed:
        words = "compressed"
    else:
        words = "uncompressed"
    return f"{words} ({name})" if name != str(uid) else f"{words} (transfer syntax {uid})"


def _codecs_missing() -> list[str]:
    return [m for m in _CODEC_MODULES if importlib.util.find_spec(m) is None]


def decode_failure(path: Path, uid, error: Exception) -> ImageReadError:
    """One sentence for a decoder error: the file, the encoding in words, what to install."""
    from pydicom.uid import UID

    message = str(error)
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    words = syntax_words(uid)
    compressed = bool(uid) and UID(str(uid)).is_compressed
    advice = ""
    if compressed and _codecs_missing():
        advice = f"; install more DICOM decoders: {INSTALL_CODECS}"
        if uid and "JPEGExtended" in (UID(str(uid)).keyword or ""):
            advice += (" (12-bit JPEG needs pylibjpeg-libjpeg, GPL-3.0 licensed, "
                       "which that extra leaves out)")
    if "missing dependencies" in message or "No pixel data decoders" in message:
        return fail(path, f"cannot decode its {words} pixel data: no installed decoder handles it"
                          + (advice or f"; install the DICOM decoders: {INSTALL_CODECS}"))
    if "raised by all available plugins" in message:
        details = "; ".join(lines[1:]) or lines[0]
        return fail(path, f"the installed decoders could not decode its {words} pixel data "
                          f"({details}){advice or '; the file may be damaged'}")
    reason = lines[0] if lines else type(error).__name__
    return fail(path, f"could not decode its {words} pixel data ({reason})"
                      f"{advice or '; the file may be truncated or damaged'}")


# -- probing ---------------------------------------------------------------------------------------
def _read_header(path: Path):
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path, defer_size="1 KB")
    except InvalidDicomError:
        raise fail(path, "not a DICOM file with a file header (no 'DICM' marker at byte 128); "
                         "DICOM written without one (old ACR-NEMA style) is not supported") from None
    except Exception as e:
        raise fail(path, f"not a readable DICOM file ({e})") from None


def _dtype(bits: int, signed: bool, rescaled: bool) -> str:
    if rescaled:
        return "float32"
    if bits <= 8:
        return "int8" if signed else "uint8"
    if bits <= 16:
        return "int16" if signed else "uint16"
    if bits <= 32:
        return "int32" if signed else "uint32"
    return "int64" if signed else "uint64"


def _transfer_syntax(path: Path, ds):
    """The file's transfer syntax, which pydicom must know to decode anything."""
    from pydicom.uid import UID

    meta = getattr(ds, "file_meta", None)
    try:
        value = meta.get("TransferSyntaxUID") if meta is not None else None
    except Exception:
        value = None
    if not value:
        raise fail(path, "DICOM file has no TransferSyntaxUID in its file meta header, so its "
                         "pixel encoding is unknown")
    uid = UID(str(value).strip(" \0"))
    if not uid.is_transfer_syntax:
        raise fail(path, f"TransferSyntaxUID is {str(uid)!r}, not a transfer syntax pydicom knows "
                         f"(a private one, or a damaged header)")
    return uid


def _frames_held(path: Path, ds, uid, rows: int, cols: int, samples: int, bits: int,
                 declared: int) -> int:
    """How many frames the pixel data really holds (at most `declared`), read without decoding."""
    elem = _element(ds, "PixelData")
    encapsulated = uid.is_encapsulated
    if not encapsulated:
        length = getattr(elem, "length", None)
        if elem.value is not None and (length is None or length == 0xFFFFFFFF):
            length = len(elem.value)
        if length is None or length == 0xFFFFFFFF:
            return declared
        tell = getattr(elem, "value_tell", None)
        deflated = "Deflated" in (uid.keyword or "")   # offsets are into the inflated stream
        if elem.value is None and tell is not None and not deflated:   # deferred: all in the file?
            length = min(length, max(0, path.stat().st_size - tell))
        if samples == 3 and (_text(ds, "PhotometricInterpretation") or "").startswith("YBR_FULL_422"):
            samples = 2    # 4:2:2 stores two values per pixel
        frame_bits = rows * cols * samples * bits
        held = (length * 8) // frame_bits if frame_bits else 0
        if held == 0:
            raise fail(path, f"its pixel data holds {length:,} bytes, less than one {cols} x {rows} "
                             f"frame needs ({frame_bits // 8:,} bytes); the file is truncated or its "
                             f"header is wrong")
        return min(held, declared)
    if declared == 1:
        return declared
    counted = _count_fragments(path, elem)
    if counted is None:
        return declared
    offsets, fragments = counted
    eot = _element(ds, "ExtendedOffsetTable")
    if eot is not None and eot.value:
        return min(declared, len(eot.value) // 8)
    if offsets:
        return min(declared, len(offsets))
    return min(declared, fragments)   # each frame takes one fragment or more


def _count_fragments(path: Path, elem) -> tuple[list[int], int] | None:
    """(basic offset table, number of fragments) of encapsulated pixel data; None if unknown.

    Only the 8-byte item headers are read: parse_fragments seeks past each fragment.
    """
    try:
        from pydicom.encaps import parse_basic_offsets, parse_fragments
    except ImportError:                      # pydicom 2
        return None
    tell = getattr(elem, "value_tell", None)
    try:
        if elem.value is not None:
            buf = io.BytesIO(elem.value)
            return parse_basic_offsets(buf), parse_fragments(buf)[0]
        if tell is None:
            return None
        with open(path, "rb") as f:          # deferred: the value is still in the file
            f.seek(tell)
            return parse_basic_offsets(f), parse_fragments(f)[0]
    except Exception as e:
        raise fail(path, f"its compressed pixel data is malformed ({e})") from None


def probe_dicom(path: Path) -> list[ImageInfo]:
    """The frames of a DICOM file, from its header; every field checked before use."""
    ds = _read_header(path)
    if "PixelData" not in ds:
        if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
            raise fail(path, "DICOM file holds float pixel data (parametric maps), which is not supported")
        raise fail(path, "DICOM file has no pixel data (it may be a report or a structure set)")
    rows = _whole(path, ds, "Rows", None)
    cols = _whole(path, ds, "Columns", None)
    if rows <= 0 or cols <= 0:
        raise fail(path, f"declares an empty image ({cols} x {rows})")
    samples = _whole(path, ds, "SamplesPerPixel", 1)
    if samples not in (1, 3):
        raise fail(path, f"SamplesPerPixel is {samples}; only 1 (grey) or 3 (colour) are supported")
    bits = _whole(path, ds, "BitsAllocated", 8 if samples > 1 else 16)
    if bits not in (1, 8, 16, 32, 64):
        raise fail(path, f"BitsAllocated is {bits}; DICOM allows 1, 8, 16, 32 or 64")
    signed = _whole(path, ds, "PixelRepresentation", 0) == 1
    declared = _whole(path, ds, "NumberOfFrames", 1)
    if declared < 1:
        raise fail(path, f"NumberOfFrames is {declared}; an image holds at least 1 frame")
    uid = _transfer_syntax(path, ds)
    frames = _frames_held(path, ds, uid, rows, cols, samples, bits, declared)
    if frames < declared:
        _warn_once(path, f"NumberOfFrames is {declared:,} but its pixel data holds {frames:,} "
                         f"frame(s); using those {frames:,}")
    slope = _number(path, ds, "RescaleSlope", 1.0)
    if slope == 0:
        _warn_once(path, "RescaleSlope is 0 (every pixel would be the same); using 1")
        slope = 1.0
    intercept = _number(path, ds, "RescaleIntercept", 0.0)
    rescaled = slope != 1 or _text(ds, "RescaleIntercept") not in (None, "")
    dtype = "uint8" if bits == 1 else _dtype(bits, signed, rescaled)
    extra = {"rescale": (slope, intercept) if rescaled else None, "frames": frames,
             "declared_frames": declared, "transfer_syntax": str(uid),
             "modality": (_text(ds, "Modality") or "").strip().upper() or None}
    window = _window(path, ds)
    channels = 1 if samples == 1 else 3
    if frames == 1:
        return [ImageInfo(path, None, rows, cols, channels, dtype, "dicom", window, extra)]
    return [ImageInfo(path, i, rows, cols, channels, dtype, "dicom", window, extra)
            for i in range(frames)]


# -- reading ---------------------------------------------------------------------------------------
def read_dicom(path: Path, info: ImageInfo) -> np.ndarray:
    """One frame's pixels (only that frame is decoded), rescaled as the header says."""
    extra = info.extra
    frames = extra.get("frames", 1)
    uid = extra.get("transfer_syntax")
    try:
        try:
            from pydicom.pixels import pixel_array
        except ImportError:                    # pydicom 2: decodes every frame
            import pydicom
            arr = pydicom.dcmread(path).pixel_array
            if frames > 1:
                arr = arr[info.frame or 0]
        else:
            options = {}
            if frames != extra.get("declared_frames", frames):
                options["number_of_frames"] = frames
            index = None if frames == 1 else (info.frame or 0)
            try:    # from the file: reads only this frame's bytes
                arr = pixel_array(str(path), index=index, **options)
            except Exception:
                # the file reader misses some layouts the dataset reader handles (deflated
                # files, odd offset tables); the second error is the one to report
                import pydicom
                arr = pixel_array(pydicom.dcmread(path), index=index, **options)
    except ImageReadError:
        raise
    except MemoryError:
        raise fail(path, "not enough memory to decode its pixel data") from None
    except Exception as e:
        raise decode_failure(path, uid, e) from None
    if arr.ndim == 3 and frames == 1 and info.channels == 1:
        arr = arr[0]                           # a single frame reported with a frame axis
    if arr.dtype.byteorder not in ("=", "|"):
        arr = arr.astype(arr.dtype.newbyteorder("="))
    rescale = extra.get("rescale")
    if rescale is not None:
        slope, intercept = rescale
        arr = arr.astype(np.float32) * np.float32(slope) + np.float32(intercept)
    return arr
