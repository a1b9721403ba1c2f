"""Every DICOM and NIfTI file that pydicom and nibabel ship for their own tests, through
`segstudio-cli check` and through `scan_series`: each opens or gets a one-line reason naming
the file; never a traceback. A grey image that `check` reads is a series that reads too."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from segstudio.cli import main
from segstudio.io.image_base import ImageReadError
from segstudio.io.series import scan_series

pydicom = pytest.importorskip("pydicom")
nibabel = pytest.importorskip("nibabel")
from pydicom.data import get_testdata_files  # noqa: E402

NIBABEL_DATA = Path(nibabel.__file__).parent / "tests" / "data"


def _bundled() -> list[Path]:
    files = sorted(Path(f) for f in get_testdata_files())
    files += sorted(p for p in NIBABEL_DATA.iterdir() if p.name.endswith((".nii", ".nii.gz", ".dcm")))
    return files


FILES = _bundled()


def _id(path: Path) -> str:
    return ("nibabel/" if NIBABEL_DATA in path.parents else "pydicom/") + path.name


def test_the_bundled_sets_are_there():
    assert len(FILES) > 150
    assert sum(f.name.endswith((".nii", ".nii.gz")) for f in FILES) >= 8


def _check(path: Path, capsys) -> tuple[int, str, str]:
    rc = main(["check", str(path)])
    out = capsys.readouterr()
    text = out.out + out.err
    assert rc in (0, 1) and "Traceback" not in text, text
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert lines and all(str(path) in ln for ln in lines), text     # every line names the file
    if rc == 0:
        assert out.out.startswith(str(path)) and "error" not in out.err, text
    else:
        assert out.err.count("segstudio: error: ") == 1 and out.out == "", text
    return rc, out.out, out.err


@pytest.mark.parametrize("path", FILES, ids=_id)
def test_check_and_series_scan_read_it_or_say_why(path, capsys):
    rc, out, _err = _check(path, capsys)
    series, problems = scan_series([path])
    for p in problems:
        assert "\n" not in p and "Traceback" not in p, p
    for s in series:
        assert all("\n" not in p for p in s.problems), s.problems
        assert s.shape[0] == len(s.slices) >= 1 and np.all(np.isfinite(s.geometry.affine_lps()))
        for k in dict.fromkeys((0, len(s.slices) - 1)):
            try:
                data = s.read_slice(k)
            except ImageReadError as e:               # a decoder is missing, pixels cut short
                assert str(e).startswith(f"{s.slices[k].path}: ") and "\n" not in str(e), str(e)
            else:
                assert data.shape == s.shape[1:] and data.dtype == np.float32
    if rc == 0 and ", 1 channel(s), " in out and ", dicom" in out:
        # a grey DICOM image that check reads is a slice of some series, unless it is a
        # segmentation or a dose grid, which are no slices to label
        modality = pydicom.dcmread(path, stop_before_pixels=True).get("Modality")
        if modality in ("SEG", "RTDOSE"):
            assert any("are not image slices" in p for p in problems), problems
        else:
            assert any(r.path == path for s in series for r in s.slices), \
                (problems, [s.summary() for s in series])


@pytest.mark.parametrize("name", ["CT_small.dcm", "693_J2KI.dcm", "MR_small.dcm", "JPEG2000.dcm"])
def test_real_slices_read_as_pydicoms_modality_lut_says(name):
    """HU of real CT files (one of them JPEG 2000): what pydicom's own modality LUT gives."""
    from pydicom.data import get_testdata_file
    from pydicom.pixels import apply_modality_lut

    path = get_testdata_file(name)
    (series,), _ = scan_series([path])
    ds = pydicom.dcmread(path)
    want = apply_modality_lut(ds.pixel_array, ds).astype(np.float32)
    assert np.array_equal(series.read_slice(0), want)


@pytest.mark.skipif(importlib.util.find_spec("libjpeg") is not None,
                    reason="pylibjpeg-libjpeg decodes 12-bit JPEG here")
def test_a_slice_no_installed_decoder_reads_says_what_to_install():
    from pydicom.data import get_testdata_file

    path = get_testdata_file("JPGExtended.dcm")
    (series,), problems = scan_series([path])          # the header is fine: it is a series
    assert problems == []
    with pytest.raises(ImageReadError) as e:
        series.read_slice(0)
    message = str(e.value)
    assert message.startswith(f"{path}: the installed decoders could not decode its 12-bit JPEG "
                              f"compressed") and "\n" not in message
    assert 'pip install "segstudio[dicom-codecs]"' in message
