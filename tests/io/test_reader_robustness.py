"""Hostile files: whatever a file holds, the readers raise only ImageReadError, naming the file.

DICOM headers with odd values, pixel data no installed decoder reads, bool/complex TIFFs,
truncated and bit-flipped copies of real small files, and every file of pydicom's and
nibabel's own test sets through `segstudio-cli check`.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from segstudio.cli import main
from segstudio.io.images import ImageReadError, probe, read_image, verify

pydicom = pytest.importorskip("pydicom")
from pydicom.data import get_testdata_file, get_testdata_files  # noqa: E402

INSTALL = 'pip install "segstudio[dicom-codecs]"'


def _raw(ds, keyword: str, value: bytes) -> None:
    """Put `value` into the header exactly as written, however invalid (pydicom would refuse)."""
    from pydicom.datadict import dictionary_VR, tag_for_keyword
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    if len(value) % 2:
        value += b" "
    tag = Tag(tag_for_keyword(keyword))
    ds[tag] = RawDataElement(tag, dictionary_VR(tag), len(value), value, 0, False, True)


def _dicom_with(tmp_path: Path, source: str, name: str, **fields: bytes) -> Path:
    ds = pydicom.dcmread(get_testdata_file(source))
    for keyword, value in fields.items():
        _raw(ds, keyword, value)
    path = tmp_path / name
    ds.save_as(path)
    return path


def _one_line_naming(path: Path, message: str) -> None:
    assert message.startswith(f"{path}: ") and "\n" not in message, message


# -- DICOM header values -------------------------------------------------------------------------
@pytest.mark.parametrize("value, reason", [
    (b"1A", "NumberOfFrames is '1A', not a whole number"),
    (b"2.5", "NumberOfFrames is '2.5', not a whole number"),
    (b"-3", "NumberOfFrames is -3; an image holds at least 1 frame"),
    (b"0", "NumberOfFrames is 0; an image holds at least 1 frame"),
])
def test_bad_number_of_frames_is_one_plain_error(tmp_path, value, reason):
    path = _dicom_with(tmp_path, "MR_small.dcm", "frames.dcm", NumberOfFrames=value)
    for read in (probe, read_image, verify):
        with pytest.raises(ImageReadError) as e:
            read(path)
        _one_line_naming(path, str(e.value))
        assert reason in str(e.value)


def test_unparseable_rescale_slope_is_refused(tmp_path):
    path = _dicom_with(tmp_path, "MR_small.dcm", "slope.dcm", RescaleSlope=b"x.y")
    with pytest.raises(ImageReadError, match=r"slope.dcm: RescaleSlope is 'x.y', not a number"):
        probe(path)


def test_unsupported_bits_allocated_is_refused(tmp_path):
    path = _dicom_with(tmp_path, "MR_small.dcm", "bits.dcm", BitsAllocated=b"\x0c\x00")
    with pytest.raises(ImageReadError, match=r"bits.dcm: BitsAllocated is 12; DICOM allows"):
        read_image(path)


def test_multivalued_rescale_slope_uses_the_first_value(tmp_path, caplog):
    raw = read_image(get_testdata_file("MR_small.dcm")).data
    path = _dicom_with(tmp_path, "MR_small.dcm", "slope2.dcm", RescaleSlope=b"2\\3")
    with caplog.at_level(logging.WARNING, logger="segstudio.io.dicom"):
        loaded = read_image(path)
    assert loaded.data.dtype == np.float32
    assert np.array_equal(loaded.data, raw.astype(np.float32) * 2)
    assert "slope2.dcm: RescaleSlope has 2 values ('2\\\\3'); using the first, 2" in caplog.text


@pytest.mark.parametrize("source, declared, held", [
    ("MR_small.dcm", b"100000", 1),           # native, one frame of data
    ("rtdose.dcm", b"20", 15),                # native multi-frame, fewer frames than declared
    ("SC_rgb_rle_2frame.dcm", b"5", 2),       # encapsulated: counted from the offset table
])
def test_more_frames_declared_than_the_data_holds_uses_those_it_holds(tmp_path, caplog, source,
                                                                     declared, held):
    original = probe(get_testdata_file(source))
    path = _dicom_with(tmp_path, source, "many.dcm", NumberOfFrames=declared)
    with caplog.at_level(logging.WARNING, logger="segstudio.io.dicom"):
        infos = probe(path)
    assert len(infos) == held
    assert f"NumberOfFrames is {int(declared):,} but its pixel data holds {held:,} frame" in caplog.text
    last = infos[-1].frame
    expected = read_image(get_testdata_file(source), original[-1].frame).data
    assert np.array_equal(read_image(path, last).data, expected)
    assert len(verify(path)) == held


def test_truncated_pixel_data_is_refused_at_probe():
    path = Path(get_testdata_file("MR_truncated.dcm"))
    with pytest.raises(ImageReadError, match=r"MR_truncated.dcm: its pixel data holds 8,130 bytes, "
                                             r"less than one 64 x 64 frame needs \(8,192 bytes\)"):
        probe(path)


def test_new_project_skips_dicoms_with_bad_headers(tmp_path, capsys):
    src = tmp_path / "scans"
    src.mkdir()
    cv2.imwrite(str(src / "ok.png"), np.zeros((8, 8), np.uint8))
    _dicom_with(src, "MR_small.dcm", "frames.dcm", NumberOfFrames=b"1A")
    _dicom_with(src, "MR_small.dcm", "slope.dcm", RescaleSlope=b"x.y")
    _dicom_with(src, "MR_small.dcm", "negative.dcm", NumberOfFrames=b"-3")
    assert main(["new", str(src), "--out", str(tmp_path / "p")]) == 0
    out = capsys.readouterr()
    assert "with 1 images" in out.out
    assert "frames.dcm: NumberOfFrames is '1A', not a whole number" in out.err
    assert "slope.dcm: RescaleSlope is 'x.y', not a number" in out.err
    assert "negative.dcm: NumberOfFrames is -3" in out.err
    assert "Traceback" not in out.err


# -- decoding, not only the header -------------------------------------------------------------------
def _broken_jpeg2000(path: Path) -> Path:
    """A DICOM whose header is fine and whose JPEG 2000 codestream no decoder can read."""
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEG2000Lossless

    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + bytes(range(200))])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ds.save_as(path)
    return path


def test_check_decodes_pixels_that_the_header_alone_passes(tmp_path, capsys):
    path = _broken_jpeg2000(tmp_path / "scan.dcm")
    assert len(probe(path)) == 1             # header-only, as at project open
    assert main(["check", str(path)]) == 1
    out = capsys.readouterr()
    assert out.out == ""
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"segstudio: error: {path}: ")
    assert "JPEG 2000 compressed" in lines[0]


def test_a_failed_decode_logs_no_traceback(tmp_path, caplog):
    """The window's terminal and log file get the reason once, not pydicom's plugin tracebacks."""
    path = _broken_jpeg2000(tmp_path / "scan.dcm")
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(ImageReadError, match="scan.dcm: the installed decoders could not"):
            read_image(path)
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


def test_info_check_decodes_every_file(tmp_path, capsys):
    src = tmp_path / "scans"
    src.mkdir()
    cv2.imwrite(str(src / "ok.png"), np.zeros((8, 8), np.uint8))
    _broken_jpeg2000(src / "scan.dcm")
    assert main(["new", str(src), "--out", str(tmp_path / "p")]) == 0
    capsys.readouterr()
    assert main(["info", str(tmp_path / "p"), "--check"]) == 1
    err = capsys.readouterr().err
    assert f"{src / 'scan.dcm'}: the installed decoders could not decode its JPEG 2000" in err


@pytest.mark.skipif(any(importlib.util.find_spec(m) for m in ("gdcm", "pylibjpeg")),
                    reason="a lossless-JPEG decoder is installed")
def test_missing_decoder_says_what_to_install(capsys):
    path = Path(get_testdata_file("SC_rgb_jpeg_gdcm.dcm"))   # lossless JPEG: no decoder in dev
    assert main(["check", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{path}: cannot decode its lossless JPEG compressed" in err
    assert INSTALL in err


@pytest.mark.skipif(importlib.util.find_spec("openjpeg") is not None,
                    reason="pylibjpeg-openjpeg is installed")
def test_jpeg2000_pillow_cannot_read_names_the_extra(capsys):
    path = Path(get_testdata_file("GDCMJ2K_TextGBR.dcm"))
    assert main(["check", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}: the installed decoders could not decode its JPEG 2000 compressed" in err
    assert INSTALL in err


def test_check_reads_dicom_without_a_suffix(tmp_path, capsys):
    shutil.copy(get_testdata_file("MR_small.dcm"), tmp_path / "IM0001")
    (tmp_path / "README").write_text("not an image\n")
    assert main(["check", str(tmp_path / "IM0001"), str(tmp_path / "README")]) == 1
    out = capsys.readouterr()
    assert f"{tmp_path / 'IM0001'}: 64 x 64, 1 channel(s), int16, dicom" in out.out
    assert f"{tmp_path / 'README'}: unsupported file type (the name has no suffix): not a " \
           f"supported image type (supported: .bmp, .dcm" in out.err


def _test_data_files() -> list[Path]:
    import nibabel

    files = [Path(f) for f in get_testdata_files()]
    nib_data = Path(nibabel.__file__).parent / "tests" / "data"
    files += sorted(p for p in nib_data.iterdir()
                    if p.name.endswith((".nii", ".nii.gz", ".dcm")))
    return files


def test_check_on_every_pydicom_and_nibabel_test_file(capsys):
    """Per file: a result line or a one-line reason, both naming the file; never a traceback."""
    files = _test_data_files()
    assert len(files) > 150
    for f in files:
        rc = main(["check", str(f)])
        out = capsys.readouterr()
        text = out.out + out.err
        assert rc in (0, 1) and "Traceback" not in text, (f, text)
        lines = [ln for ln in text.splitlines() if ln.strip()]
        assert lines and all(str(f) in ln for ln in lines), (f, text)
        if rc == 0:
            assert out.out.startswith(f"{f}") and "error" not in out.err, (f, text)
        else:
            assert out.err.count("segstudio: error: ") == 1 and out.out == "", (f, text)


# -- TIFF sample formats -----------------------------------------------------------------------------
def test_bool_tiff_is_a_binary_uint8_image(tmp_path):
    import tifffile
    mask = np.zeros((5, 7), bool)
    mask[1:3, 2:6] = True
    tifffile.imwrite(tmp_path / "mask.tif", mask)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        info = probe(tmp_path / "mask.tif")[0]
        data = read_image(tmp_path / "mask.tif").data
    assert info.dtype == "uint8" and data.dtype == np.uint8
    assert np.array_equal(data, np.where(mask, 255, 0))


def test_complex_tiff_is_refused(tmp_path):
    import tifffile
    tifffile.imwrite(tmp_path / "phase.tif", np.ones((4, 4), np.complex64))
    with pytest.raises(ImageReadError, match="phase.tif: page 0: complex-valued pixels are not "
                                             "supported; save the magnitude"):
        read_image(tmp_path / "phase.tif")


@pytest.mark.parametrize("dtype", ["float16", "int8", "uint32", "int64", "uint64", "float64"])
def test_other_tiff_sample_types_open_and_display(tmp_path, dtype):
    import tifffile

    from segstudio.core.display import default_range, to_display
    arr = np.arange(12).reshape(3, 4).astype(dtype)
    if np.dtype(dtype).kind != "u":
        arr = arr - 3
    tifffile.imwrite(tmp_path / "a.tif", arr)
    loaded = read_image(tmp_path / "a.tif")
    assert loaded.info.dtype == dtype and np.array_equal(loaded.data, arr)
    shown = to_display(loaded.data, default_range(loaded.data))
    assert shown.dtype == np.uint8 and shown.shape == (3, 4) and shown[0, 0] < shown[-1, -1]


def test_one_pixel_and_zero_pixel_tiffs(tmp_path):
    import tifffile
    tifffile.imwrite(tmp_path / "one.tif", np.full((1, 1), 7, np.uint8))
    assert read_image(tmp_path / "one.tif").data.tolist() == [[7]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")           # tifffile: "writing zero-size array"
        tifffile.imwrite(tmp_path / "zero.tif", np.zeros((0, 4), np.uint8))
    with pytest.raises(ImageReadError, match=r"zero.tif: declares an empty image"):
        probe(tmp_path / "zero.tif")


def test_complex_nifti_is_refused(tmp_path):
    import nibabel as nib
    nib.save(nib.Nifti1Image(np.ones((4, 4, 2), np.complex64), np.eye(4)), tmp_path / "c.nii")
    with pytest.raises(ImageReadError, match="c.nii: complex-valued pixels are not supported"):
        probe(tmp_path / "c.nii")


# -- fuzz: truncated and bit-flipped copies of real small files -------------------------------------
def _fuzz_sources(tmp: Path) -> dict[str, bytes]:
    import nibabel as nib
    import tifffile

    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
    sources = {ext: cv2.imencode(ext, img)[1].tobytes() for ext in (".png", ".jpg", ".bmp")}
    tifffile.imwrite(tmp / "t.tif", img, photometric="rgb")
    sources[".tif"] = (tmp / "t.tif").read_bytes()
    tifffile.imwrite(tmp / "z.tif", np.stack([img[..., 0]] * 3), photometric="minisblack",
                     compression="zlib")
    sources["-zlib.tif"] = (tmp / "z.tif").read_bytes()
    for name in ("MR_small.dcm", "SC_rgb_rle_2frame.dcm", "rtdose.dcm"):
        sources[f"-{name}"] = Path(get_testdata_file(name)).read_bytes()
    vol = rng.integers(0, 1000, (12, 10, 4)).astype(np.int16)
    for ext in (".nii", ".nii.gz"):
        nib.save(nib.Nifti1Image(vol, np.eye(4)), tmp / f"v{ext}")
        sources[ext] = (tmp / f"v{ext}").read_bytes()
    return sources


def _corruptions(data: bytes, seed: int):
    n = len(data)
    for cut in sorted({1, 8, 64, 130, 300, n // 3, n // 2, n - 1}):
        if 0 < cut < n:
            yield f"cut{cut}", data[:cut]
    for pos in sorted({0, 3, 12, 16, 19, 20, 44, 70, 128, 140, 200, 344, n // 2}):
        if pos < n:
            b = bytearray(data)
            b[pos] ^= 0xFF
            yield f"flip{pos}", bytes(b)
    ts = data.find(b"1.2.840.10008.1.2", 128, 1024)      # a DICOM transfer syntax UID
    if ts > 0:
        yield "not-a-syntax", data[:ts + 16] + b"9" + data[ts + 17:]   # 1.2.840.10008.1.9...
    rng = np.random.default_rng(seed)
    for k in range(12):
        b = bytearray(data)
        for pos in rng.integers(0, min(n, 1024), 4):
            b[pos] = int(rng.integers(0, 256))
        yield f"rand{k}", bytes(b)


@pytest.mark.filterwarnings("ignore::UserWarning")   # pydicom's, about the damaged headers
def test_corrupted_files_raise_only_image_read_errors(tmp_path):
    """Found this way: OpenCV's size assertion (cv2.error) for a BMP whose header declares a
    width over 2**20; a transfer syntax UID that is no transfer syntax guards the DICOM checks."""
    escaped = []
    cases = 0
    for i, (suffix, data) in enumerate(_fuzz_sources(tmp_path).items()):
        for tag, corrupt in _corruptions(data, seed=i):
            path = tmp_path / f"{tag}{suffix}"
            path.write_bytes(corrupt)
            cases += 1
            for read in (probe, read_image, verify):
                try:
                    read(path)
                except ImageReadError as e:
                    if not (str(e).startswith(f"{path}: ") and "\n" not in str(e)):
                        escaped.append((path.name, read.__name__, f"message: {e}"))
                except Exception as e:  # noqa: BLE001 - what the test is looking for
                    escaped.append((path.name, read.__name__, f"{type(e).__name__}: {e}"))
    assert cases > 200
    assert not escaped, escaped[:10]
