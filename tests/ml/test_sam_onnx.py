"""The SAM path end to end with tiny exported SAM-style models (no real weights, no download)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from segstudio.core.clicks import BACKEND_KINDS, Click, ClickPrompt, build_backend  # noqa: E402
from segstudio.core.jobs import Cancelled, CancelToken  # noqa: E402
from segstudio.ml.sam_onnx import (SamModelError, SamOnnxBackend, open_sam_files,  # noqa: E402
                                   precompute)
from tests.ml.sam_models import export_pair  # noqa: E402


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sam-models")
    return {layout: export_pair(folder, layout) for layout in ("sam", "sam2", "osam")}


def image(h=300, w=500, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


def backend(models, tmp_path, layout="sam", **kw):
    enc, dec = models[layout]
    return SamOnnxBackend(enc, dec, cache_dir=tmp_path / "cache", **kw)


@pytest.mark.parametrize("layout", ["sam", "sam2", "osam"])
def test_a_click_proposes_a_mask_of_the_image_size_around_the_click(models, tmp_path, layout):
    b = backend(models, tmp_path, layout)
    img = image()            # not square: x/y, padding and crop mistakes move the mask
    b.prepare("a", img)
    mask = b.propose("a", img, ClickPrompt((Click(100, 200, True),)))
    assert mask.shape == (300, 500) and mask.dtype == bool
    assert mask[100, 200] and 300 < mask.sum() < 20000
    ys, xs = np.nonzero(mask)
    assert abs(ys.mean() - 100.5) < 2 and abs(xs.mean() - 200.5) < 2


@pytest.mark.parametrize("layout", ["sam", "sam2"])
def test_further_clicks_move_the_result(models, tmp_path, layout):
    b = backend(models, tmp_path, layout)
    img = image()
    one = b.propose("a", img, ClickPrompt((Click(100, 200, True),)))
    two = b.propose("a", img, ClickPrompt((Click(100, 200, True), Click(220, 400, True)),
                                          previous=one))
    assert not one[220, 400] and two[220, 400] and two[100, 200]
    cut = b.propose("a", img, ClickPrompt((Click(100, 200, True), Click(100, 235, False)),
                                          previous=one))
    assert cut.sum() < one.sum() and not cut[100, 225]


def test_grey_16_bit_images_work_too(models, tmp_path):
    b = backend(models, tmp_path)
    grey = (np.random.default_rng(1).integers(0, 4000, (256, 320))).astype(np.uint16)
    mask = b.propose("g", grey, ClickPrompt((Click(128, 100, True),)))
    assert mask.shape == (256, 320) and mask[128, 100] and not mask[128, 250]


def test_the_previous_proposal_goes_back_to_the_decoder(models, tmp_path):
    b = backend(models, tmp_path)
    img = image()
    prompt = ClickPrompt((Click(100, 200, True),))
    first = b.propose("a", img, prompt)
    fed = b.propose("a", img, prompt.with_previous(first))
    assert fed.sum() > first.sum()                          # has_mask_input = 1 reached it
    other = np.zeros_like(first)                            # not the decoder's own answer
    assert np.array_equal(b.propose("a", img, prompt.with_previous(other)), first)


def test_a_box_gives_its_inside(models, tmp_path):
    b = backend(models, tmp_path)
    mask = b.propose("a", image(), ClickPrompt(box=(50, 60, 150, 300)))
    ys, xs = np.nonzero(mask)
    assert abs(ys.min() - 50) <= 3 and abs(ys.max() - 150) <= 3
    assert abs(xs.min() - 60) <= 3 and abs(xs.max() - 300) <= 3


def test_registered_as_sam_onnx_with_name_and_unknown_licence(models, tmp_path):
    enc, dec = models["sam"]
    assert BACKEND_KINDS["sam-onnx"] is SamOnnxBackend
    b = build_backend("sam-onnx", enc, dec, cache_dir=tmp_path)
    assert b.name == "SAM file: sam" and b.licence == ""


def test_a_yaml_description_gives_name_and_licence(models, tmp_path):
    enc, dec = models["sam"]
    desc = tmp_path / "mobile.yaml"
    desc.write_text(f"type: segment_anything\nname: mobile_sam\ndisplay_name: MobileSAM test\n"
                    f"license: Apache-2.0\nencoder_model_path: {enc}\ndecoder_model_path: {dec}\n")
    b = open_sam_files(desc, cache_dir=tmp_path / "c")
    assert b.name == "SAM file: MobileSAM test" and b.licence == "Apache-2.0"


def test_one_file_finds_its_partner_and_order_does_not_matter(models, tmp_path):
    enc, dec = models["sam"]
    assert open_sam_files(enc, cache_dir=tmp_path).decoder_path == dec
    assert open_sam_files(dec, enc, cache_dir=tmp_path).encoder_path == enc


def test_wrong_or_missing_files_say_what_is_wrong(models, tmp_path):
    enc, dec = models["sam"]
    text = tmp_path / "notes.onnx"
    text.write_text("these are my notes, not a model\n")
    with pytest.raises(SamModelError, match="not an ONNX model"):
        SamOnnxBackend(enc, text, cache_dir=tmp_path)
    with pytest.raises(SamModelError, match="is not a SAM decoder.*looks like an encoder"):
        SamOnnxBackend(enc, enc, cache_dir=tmp_path)
    with pytest.raises(SamModelError, match="is a SAM decoder.*given as the encoder"):
        SamOnnxBackend(dec, dec, cache_dir=tmp_path)
    with pytest.raises(SamModelError, match="does not exist"):
        SamOnnxBackend(enc, tmp_path / "gone.decoder.onnx", cache_dir=tmp_path)
    lonely = tmp_path / "solo" / "model.onnx"
    lonely.parent.mkdir()
    lonely.write_bytes(enc.read_bytes())
    with pytest.raises(SamModelError, match="no partner file"):
        open_sam_files(lonely, cache_dir=tmp_path)
    sam2_enc, _ = models["sam2"]
    with pytest.raises(SamModelError, match="same model"):
        SamOnnxBackend(sam2_enc, dec, cache_dir=tmp_path)


def test_without_onnxruntime_the_message_says_how_to_install(models, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)     # import fails as if not installed
    enc, dec = models["sam"]
    with pytest.raises(SamModelError, match="pip install onnxruntime"):
        SamOnnxBackend(enc, dec, cache_dir=tmp_path)


def test_embedding_cache_is_reused_after_a_restart(models, tmp_path):
    img = image()
    first = backend(models, tmp_path)
    assert not first.is_prepared("a")
    first.prepare("a", img)
    first.prepare("a", img)                          # idempotent
    assert first.encoder_runs == 1 and first.is_prepared("a")
    assert first.embedding_seconds(300, 500) > 0
    mask = first.propose("a", img, ClickPrompt((Click(100, 200, True),)))

    again = backend(models, tmp_path)                # a new app session, same cache folder
    assert again.embedding_seconds(300, 500) == pytest.approx(
        first.embedding_seconds(300, 500), abs=1e-3)            # measured once, remembered
    again.prepare("a", img)
    assert again.encoder_runs == 0 and again.is_prepared("a")
    assert np.array_equal(again.propose("a", img, ClickPrompt((Click(100, 200, True),))), mask)
    edited = img.copy()
    edited[0, 0] ^= 1                                # other content: embedded anew
    again.prepare("b", edited)
    assert again.encoder_runs == 1


def test_the_cache_stays_under_its_byte_cap(models, tmp_path):
    b = backend(models, tmp_path, cache_bytes=9 << 20)    # two 4 MiB SAM embeddings fit
    for i in range(4):
        b.prepare(f"i{i}", image(seed=i))
    assert b.encoder_runs == 4
    assert b.cache.disk_bytes() <= 9 << 20 and len(list(b.cache.root.glob("*.npz"))) == 2
    fresh = backend(models, tmp_path, cache_bytes=9 << 20)
    fresh.prepare("i3", image(seed=3))                    # the newest survived
    fresh.prepare("i0", image(seed=0))                    # the oldest was dropped
    assert fresh.encoder_runs == 1


def test_precompute_embeds_the_next_images_loading_them_lazily(models, tmp_path):
    b = backend(models, tmp_path, "sam2")
    loaded = []

    def loader(i):
        def load():
            loaded.append(i)
            return image(seed=i)
        return load

    items = [(f"img{i}", loader(i)) for i in range(3)]
    assert precompute(b, items, CancelToken()) == ["img0", "img1", "img2"]
    assert b.encoder_runs == 3 and all(b.is_prepared(f"img{i}") for i in range(3))
    assert precompute(b, items) == [] and loaded == [0, 1, 2]   # nothing loaded twice

    c = backend(models, tmp_path / "other", "sam2")
    token = CancelToken()
    with pytest.raises(Cancelled):
        precompute(c, items, token, on_progress=lambda p: token.cancel())
    assert c.encoder_runs == 1 and c.is_prepared("img0") and not c.is_prepared("img1")


def test_a_16k_image_embeds_only_the_tiles_clicked(models, tmp_path):
    path = tmp_path / "big.u8"
    big = np.memmap(path, np.uint8, "w+", shape=(16000, 16000))   # sparse file: RAM stays small
    big[7000:9000, 7000:9000] = 90
    b = backend(models, tmp_path)
    b.prepare("big", big)
    assert b.encoder_runs == 0 and b.is_prepared("big")          # a click embeds its own tile
    tile = b.tiling(16000, 16000).nearest(8100, 8100)
    assert tile.window == (6912, 6912, 8448, 8448)                # 1024 core + 256 halo
    assert not b.tile_ready("big", big.shape, tile)
    mask = b.propose("big", big, ClickPrompt((Click(8100, 8100, True),)))
    assert mask.shape == (16000, 16000) and mask[8100, 8100]
    ys, xs = np.nonzero(mask)
    assert ys.min() >= 6912 and ys.max() < 8448 and abs(ys.mean() - 8100.5) < 3
    assert abs(xs.mean() - 8100.5) < 3
    assert b.encoder_runs == 1 and b.tile_ready("big", big.shape, tile)
    b.propose("big", big, ClickPrompt((Click(8100, 8100, True), Click(8150, 8050, False))))
    assert b.encoder_runs == 1                                    # same tile: no new embedding
    b.propose("big", big, ClickPrompt((Click(100, 15900, True),)))  # a corner tile
    b.prepare("big", big, region=(0, 0, 1500, 1500))              # the UI's visible region
    assert b.encoder_runs == 1 + 1 + 4
