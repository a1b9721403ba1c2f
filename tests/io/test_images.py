"""Every supported format reads back its pixels; every kind of bad file gets a plain message."""

import struct
import zlib

import cv2
import numpy as np
import pytest

from segstudio.io.images import ImageReadError, ImageTooLargeError, probe, read_image


def _write_png(path, arr):
    ok, buf = cv2.imencode(".png", arr)
    assert ok
    path.write_bytes(buf.tobytes())


@pytest.mark.parametrize("ext", [".png", ".bmp", ".tif"])
def test_rgb_round_trip(tmp_path, rng, ext):
    rgb = rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)
    p = tmp_path / f"ïmage with space{ext}"
    if ext == ".tif":
        import tifffile
        tifffile.imwrite(p, rgb, photometric="rgb")
    else:
        ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        p.write_bytes(buf.tobytes())
    loaded = read_image(p)
    assert loaded.data.shape == (20, 30, 3)
    assert np.array_equal(loaded.data, rgb)


def test_jpeg_reads_close(tmp_path):
    grey = np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (32, 1))
    ok, buf = cv2.imencode(".jpg", grey, [cv2.IMWRITE_JPEG_QUALITY, 95])
    (tmp_path / "a.jpg").write_bytes(buf.tobytes())
    data = read_image(tmp_path / "a.jpg").data
    assert data.shape == (32, 64) and np.abs(data.astype(int) - grey).mean() < 3


def test_16bit_png_and_tiff_keep_values(tmp_path, rng):
    import tifffile
    arr = rng.integers(0, 65535, (16, 12), dtype=np.uint16)
    _write_png(tmp_path / "a.png", arr)
    tifffile.imwrite(tmp_path / "a.tif", arr)
    for name in ("a.png", "a.tif"):
        loaded = read_image(tmp_path / name)
        assert loaded.data.dtype == np.uint16 and np.array_equal(loaded.data, arr)
    assert probe(tmp_path / "a.png")[0].dtype == "uint16"


def test_multipage_tiff_is_one_item_per_page(tmp_path, rng):
    import tifffile
    stack = rng.integers(0, 255, (3, 10, 12), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "stack.tif", stack, photometric="minisblack")
    infos = probe(tmp_path / "stack.tif")
    assert [i.frame for i in infos] == [0, 1, 2]
    for k in range(3):
        assert np.array_equal(read_image(tmp_path / "stack.tif", k).data, stack[k])


def test_large_uncompressed_tiff_is_memory_mapped(tmp_path):
    import tifffile
    tifffile.imwrite(tmp_path / "big.tif", np.zeros((64, 64, 3), np.uint8), photometric="rgb")
    data = read_image(tmp_path / "big.tif").data
    assert isinstance(data, np.memmap)


def _dicom(path, with_pixels=True, slope=1.0, intercept=-1024.0):
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.Rows, ds.Columns = 8, 10
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    ds.WindowCenter, ds.WindowWidth = 40, 400
    raw = (np.arange(80, dtype=np.uint16) * 10).reshape(8, 10)
    if with_pixels:
        ds.PixelData = raw.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return raw


def test_dicom_applies_rescale_and_reads_window(tmp_path):
    raw = _dicom(tmp_path / "ct.dcm", slope=2.0, intercept=-1024.0)
    loaded = read_image(tmp_path / "ct.dcm")
    assert np.allclose(loaded.data, raw * 2.0 - 1024.0)
    assert loaded.info.window == (40.0, 400.0)


def test_nifti_volume_gives_slices(tmp_path, rng):
    import nibabel as nib
    vol = rng.integers(0, 1000, (12, 10, 4)).astype(np.int16)   # (i, j, k)
    affine = np.diag([0.5, 0.5, 2.0, 1.0])
    nib.save(nib.Nifti1Image(vol, affine), tmp_path / "v.nii.gz")
    infos = probe(tmp_path / "v.nii.gz")
    assert len(infos) == 4 and infos[0].height == 10 and infos[0].width == 12
    assert np.allclose(infos[0].extra["affine"], affine)
    assert np.array_equal(read_image(tmp_path / "v.nii.gz", 2).data, vol[:, :, 2].T)


# -- bad input ---------------------------------------------------------------------------------
def test_truncated_png(tmp_path, rng):
    _write_png(tmp_path / "ok.png", rng.integers(0, 255, (64, 64), dtype=np.uint8))
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="cut.png.*(truncated|corrupt)"):
        read_image(tmp_path / "cut.png")


def test_empty_file(tmp_path):
    (tmp_path / "zero.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"zero.png: file is empty \(0 bytes\)"):
        probe(tmp_path / "zero.png")


def test_text_file_named_tif(tmp_path):
    (tmp_path / "notes.tif").write_text("these are my notes, not an image\n")
    with pytest.raises(ImageReadError, match="notes.tif: not a readable TIFF"):
        probe(tmp_path / "notes.tif")


def test_dicom_without_pixel_data(tmp_path):
    _dicom(tmp_path / "report.dcm", with_pixels=False)
    with pytest.raises(ImageReadError, match="report.dcm: DICOM file has no pixel data"):
        probe(tmp_path / "report.dcm")


def test_enormous_declared_size_is_refused_before_decoding(tmp_path):
    # a valid PNG header declaring 100000 x 100000 pixels, with no image data behind it
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b""))
           + chunk(b"IEND", b""))
    (tmp_path / "bomb.png").write_bytes(png)
    with pytest.raises(ImageTooLargeError, match="100000 x 100000 pixels is over the limit"):
        read_image(tmp_path / "bomb.png")
    with pytest.raises(ImageTooLargeError):
        read_image(tmp_path / "bomb.png", max_pixels=10**12 // 10**3)


def test_pixel_limit_is_configurable(tmp_path, rng):
    _write_png(tmp_path / "a.png", rng.integers(0, 255, (50, 50), dtype=np.uint8))
    with pytest.raises(ImageTooLargeError, match="limit of 1,000 pixels"):
        read_image(tmp_path / "a.png", max_pixels=1000)
    assert read_image(tmp_path / "a.png", max_pixels=2500).data.shape == (50, 50)


def test_unsupported_extension(tmp_path):
    (tmp_path / "a.gif").write_bytes(b"GIF89a")
    with pytest.raises(ImageReadError, match="unsupported file type '.gif'"):
        probe(tmp_path / "a.gif")


def test_lzw_compressed_16bit_tiff(tmp_path, rng):
    """Microscopes often write compressed TIFFs; imagecodecs decodes them."""
    import tifffile
    arr = rng.integers(30000, 40000, (40, 50), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "lzw.tif", arr, compression="lzw")
    assert np.array_equal(read_image(tmp_path / "lzw.tif").data, arr)


def test_a_large_compressed_tiff_read_twice_at_once_is_decoded_once_and_shared(tmp_path,
                                                                             monkeypatch):
    # the window's opener and the thumbnail job ask for the same image at the same time; a
    # compressed TIFF cannot be memory-mapped, so each used to decode all of it again
    import threading
    import time as _time
    from dataclasses import replace as _replace

    import tifffile

    from segstudio.io import images
    from segstudio.io.image_base import IMAGE_READERS

    path = tmp_path / "slide.tif"
    pixels = np.random.default_rng(0).integers(0, 255, (512, 768, 3), dtype=np.uint8)
    tifffile.imwrite(path, pixels, photometric="rgb", tile=(256, 256), compression="zlib")
    decodes = []
    real = IMAGE_READERS["tiff"]

    def counted(p, info):
        decodes.append(threading.get_ident())
        _time.sleep(0.2)                       # both readers are in flight at once
        return real.read(p, info)

    monkeypatch.setitem(IMAGE_READERS, "tiff", _replace(real, read=counted))
    monkeypatch.setattr(images, "SHARE_ABOVE_BYTES", pixels.nbytes)
    got = [None, None]

    def read(k):
        got[k] = images.read_image(path)

    threads = [threading.Thread(target=read, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(decodes) == 1 and got[0] is got[1]
    assert np.array_equal(got[0].data, pixels) and not got[0].data.flags.writeable
    assert images.read_image(path) is got[0]             # held by someone: still shared
    held = got[0]
    del got[:]
    tifffile.imwrite(path, pixels[::-1].copy(), photometric="rgb", tile=(256, 256),
                     compression="zlib")
    fresh = images.read_image(path)                       # the file changed: read again
    assert fresh is not held and np.array_equal(fresh.data, pixels[::-1])
    del held, fresh                                       # nobody holds it: memory is freed
    monkeypatch.setattr(images, "SHARE_ABOVE_BYTES", pixels.nbytes + 1)
    small = images.read_image(path)                       # below the size: own, writeable copy
    assert small.data.flags.writeable and images.read_image(path) is not small
