"""Click backend "sam-onnx": a Segment-Anything-style ONNX encoder + decoder pair (onnxruntime).

The user brings the two files (SAM, SAM 2.1, MobileSAM, EfficientViT-SAM exports as labelme/osam,
X-AnyLabeling and samexporter write them); nothing is downloaded. The encoder is the slow part
(seconds per image on a CPU): `prepare` runs it on a worker and caches the embedding on disk,
keyed by the window's pixels and the encoder file's hash, so a restart does not embed again.
The decoder answers each click in tens of milliseconds. Large images are embedded tile by tile
(sam_tiles): only the tiles clicked on, or those of a region the UI asks for.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import cv2
import numpy as np

from segstudio.core.clicks import ClickPrompt, register_backend
from segstudio.core.display import default_range
from segstudio.core.jobs import CancelToken, Progress, ProgressFn
from segstudio.io.atomic import atomic_write_json
from segstudio.ml.sam_cache import (DEFAULT_CACHE_BYTES, EmbeddingCache, content_key,
                                    default_cache_dir, file_hash)
from segstudio.ml.sam_graph import (DecoderSpec, Description, EncoderSpec, SamModelError,
                                    find_description, model_stem, open_session, partner_of,
                                    read_description)
from segstudio.ml.sam_tiles import Tile, Tiling, window_rgb8

log = logging.getLogger(__name__)

# SAM's pixel statistics (ImageNet's, on 0-255); SAM 2's (0-1 ImageNet) are the same numbers.
MEAN = np.array([123.675, 116.28, 103.53], np.float32)
STD = np.array([58.395, 57.12, 57.375], np.float32)

__all__ = ["SamOnnxBackend", "SamModelError", "open_sam_files", "precompute"]


@register_backend("sam-onnx")
class SamOnnxBackend:
    """ClickBackend over an ONNX encoder + decoder; prepare/propose run on workers."""

    def __init__(self, encoder: Path | str, decoder: Path | str, *,
                 description: Path | str | None = None, cache_dir: Path | str | None = None,
                 cache_bytes: int = DEFAULT_CACHE_BYTES, tile: int = 1024, halo: int = 256,
                 whole_image_max: int = 2048, threads: int | None = None) -> None:
        self.encoder_path, self.decoder_path = Path(encoder), Path(decoder)
        desc_path = description or (find_description(self.encoder_path, self.decoder_path)
                                    if self.encoder_path.is_file() else None)
        self.description = read_description(Path(desc_path)) if desc_path else Description()
        self._encoder = open_session(self.encoder_path, "encoder", threads)
        self._decoder = open_session(self.decoder_path, "decoder", threads)
        self.encoder_spec = EncoderSpec.read(self._encoder, self.encoder_path,
                                             self.description.size)
        self.decoder_spec = DecoderSpec.read(self._decoder, self.decoder_path, self.encoder_spec)
        # SAM 2 feeds the decoder high-resolution feature maps too, and its encoder takes the
        # image stretched to the square; SAM / MobileSAM / EfficientViT-SAM keep the aspect
        # (longest side to the input size, padded)
        self.resize = self.description.resize or (
            "stretch" if len(self.decoder_spec.features) > 1 else "longest")
        self.model_name = self.description.name or model_stem(self.encoder_path)
        self.name = f"SAM file: {self.model_name}"
        self.licence = self.description.licence
        self.cache = EmbeddingCache(Path(cache_dir) if cache_dir else default_cache_dir(),
                                    cache_bytes)
        self.cache.root.mkdir(parents=True, exist_ok=True)
        self.model_hash = file_hash(self.encoder_path, self.cache.root)
        self._tiling = dict(tile=int(tile), halo=int(halo), whole_max=int(whole_image_max))
        self.encoder_runs = 0              # how often the encoder really ran (tests, status)
        self.last_embedding_s: float | None = self._load_timing()
        self._lock = threading.Lock()      # the dicts below
        self._encode_lock = threading.Lock()   # one encoder run at a time: they use every core
        self._keys: dict[tuple[str, tuple[int, int], tuple[int, ...]], str] = {}
        self._ranges: dict[str, object] = {}
        self._prepared: dict[str, tuple[int, ...]] = {}
        self._last: dict[str, tuple[tuple[int, int], np.ndarray, np.ndarray]] = {}

    # ---- ClickBackend -------------------------------------------------------------------
    def embedding_seconds(self, height: int, width: int) -> float | None:
        """Seconds a click waits on an image not embedded yet: one encoder run (one tile on a
        large image), as last measured with this model file; None until measured once."""
        return self.last_embedding_s

    def tiling(self, height: int, width: int) -> Tiling:
        return Tiling(int(height), int(width), **self._tiling)

    def prepare(self, image_id: str, image: np.ndarray, cancel: CancelToken | None = None,
                region: tuple[float, float, float, float] | None = None) -> None:
        """Embed the image (small images) or the tiles meeting `region` (large ones; without a
        region none: a click embeds its own tile). Idempotent; cached on disk."""
        cancel = cancel or CancelToken()
        tiling = self.tiling(*image.shape[:2])
        tiles = tiling.overlapping(region) if region is not None or not tiling.tiled else []
        for tile in tiles:
            cancel.raise_if_cancelled()
            self._embedding(image_id, image, tile, cancel)
        with self._lock:
            self._prepared[image_id] = tuple(image.shape)

    def is_prepared(self, image_id: str) -> bool:
        """True when prepare(image_id, ...) has nothing left to do in this session."""
        with self._lock:
            shape = self._prepared.get(image_id)
        if shape is None:
            return False
        tiling = self.tiling(*shape[:2])
        return tiling.tiled or self.tile_ready(image_id, shape, tiling.at(0, 0))

    def tile_ready(self, image_id: str, shape: tuple[int, ...], tile: Tile) -> bool:
        """Whether a click in `tile` answers without running the encoder."""
        with self._lock:
            key = self._keys.get((image_id, tile.index, tuple(shape)))
        return key is not None and key in self.cache

    def propose(self, image_id: str, image: np.ndarray, prompt: ClickPrompt,
                cancel: CancelToken | None = None) -> np.ndarray:
        """bool (h, w): the decoder's mask for the prompt, pasted into the image's full size."""
        cancel = cancel or CancelToken()
        h, w = image.shape[:2]
        out = np.zeros((h, w), bool)
        if prompt.is_empty:
            return out
        tiling = self.tiling(h, w)
        tile = self._tile_for(tiling, prompt)
        arrays = self._embedding(image_id, image, tile, cancel)
        cancel.raise_if_cancelled()
        feeds = self._decoder_feeds(image_id, tile, prompt, arrays)
        if feeds is None:
            return out
        names = [self.decoder_spec.masks, self.decoder_spec.scores, self.decoder_spec.low_res]
        wanted = [n for n in dict.fromkeys(names) if n]
        result = dict(zip(wanted, self._decoder.run(wanted, feeds)))
        masks = np.asarray(result[self.decoder_spec.masks], np.float32)
        low = result.get(self.decoder_spec.low_res) if self.decoder_spec.low_res else None
        pick = self._pick(masks, result.get(self.decoder_spec.scores), prompt)
        logits = self._to_window(low[0, pick] if low is not None else masks[0, pick], tile)
        mask = logits > self.description.mask_threshold
        out[tile.slices] = mask
        self._remember_logits(image_id, tile, out,
                              low[0, pick] if low is not None else masks[0, pick])
        return out

    # ---- embeddings ---------------------------------------------------------------------
    def _key(self, image_id: str, image: np.ndarray, tile: Tile) -> tuple[str, np.ndarray]:
        rgb = window_rgb8(image, tile, self._range(image_id, image))
        key = content_key(self.model_hash, self.resize, str(self.encoder_spec.size), rgb)
        with self._lock:
            self._keys[(image_id, tile.index, tuple(image.shape))] = key
        return key, rgb

    def _range(self, image_id: str, image: np.ndarray):
        if image.dtype == np.uint8:
            return None
        with self._lock:
            rng = self._ranges.get(image_id)
        if rng is None:
            rng = default_range(image)     # one contrast for every tile of the image
            with self._lock:
                self._ranges[image_id] = rng
        return rng

    def _embedding(self, image_id: str, image: np.ndarray, tile: Tile,
                   cancel: CancelToken) -> dict[str, np.ndarray]:
        with self._lock:
            key = self._keys.get((image_id, tile.index, tuple(image.shape)))
        if key is not None and (hit := self.cache.get(key)) is not None:
            return hit
        key, rgb = self._key(image_id, image, tile)
        if (hit := self.cache.get(key)) is not None:
            return hit
        with self._encode_lock:
            if (hit := self.cache.get(key)) is not None:   # another worker just made it
                return hit
            cancel.raise_if_cancelled()
            feed = self._encoder_input(rgb)
            start = time.perf_counter()
            outputs = self._encoder.run(None, {self.encoder_spec.image.name: feed})
            seconds = time.perf_counter() - start
            self.encoder_runs += 1
        arrays = {p.name: np.asarray(a) for p, a in zip(self.encoder_spec.outputs, outputs)
                  if p.name in self.decoder_spec.features.values()}
        self.cache.put(key, arrays)
        self._save_timing(seconds)
        log.info("SAM embedding of %s tile %s (%dx%d px) in %.2f s", image_id, tile.index,
                 *tile.shape, seconds)
        return arrays

    def _resized_shape(self, h: int, w: int) -> tuple[int, int]:
        s = self.encoder_spec.size
        if self.resize == "stretch":
            return s, s
        scale = s / max(h, w)
        return max(1, int(h * scale + 0.5)), max(1, int(w * scale + 0.5))

    def _encoder_input(self, rgb: np.ndarray) -> np.ndarray:
        spec = self.encoder_spec
        nh, nw = self._resized_shape(*rgb.shape[:2])
        interp = cv2.INTER_AREA if nh < rgb.shape[0] else cv2.INTER_LINEAR
        resized = cv2.resize(rgb, (nw, nh), interpolation=interp)
        if spec.channels_last:       # the graph normalises (and pads) itself
            return resized.astype(spec.image.dtype)
        x = (resized.astype(np.float32) - MEAN) / STD
        padded = np.zeros((spec.size, spec.size, 3), np.float32)
        padded[:nh, :nw] = x
        return padded.transpose(2, 0, 1)[None].astype(spec.image.dtype)

    # ---- decoder ------------------------------------------------------------------------
    def _tile_for(self, tiling: Tiling, prompt: ClickPrompt) -> Tile:
        if prompt.box is not None:
            y0, x0, y1, x1 = prompt.box
            return tiling.nearest((y0 + y1) / 2, (x0 + x1) / 2)
        # the object's first positive click anchors it: later refinements keep its tile
        anchor = next((c for c in prompt.clicks if c.positive), prompt.clicks[0])
        return tiling.nearest(anchor.y, anchor.x)

    def _to_frame(self, tile: Tile, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        """Image (y, x) -> the encoder frame's (x, y), as SAM's point_coords want them."""
        wy0, wx0, _y1, _x1 = tile.window
        h, w = tile.shape
        nh, nw = self._resized_shape(h, w)
        return np.stack([(xs - wx0) * (nw / w), (ys - wy0) * (nh / h)], axis=-1)

    def _decoder_feeds(self, image_id: str, tile: Tile, prompt: ClickPrompt,
                       arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray] | None:
        wy0, wx0, wy1, wx1 = tile.window
        clicks = [c for c in prompt.clicks if wy0 <= c.y < wy1 and wx0 <= c.x < wx1]
        if len(clicks) < len(prompt.clicks):
            log.info("%d click(s) outside the embedded window %s were left out",
                     len(prompt.clicks) - len(clicks), tile.window)
        ys = [c.y + 0.5 for c in clicks]           # pixel centres
        xs = [c.x + 0.5 for c in clicks]
        labels = [1.0 if c.positive else 0.0 for c in clicks]
        if prompt.box is not None:
            y0, x0, y1, x1 = prompt.box
            ys += [min(max(min(y0, y1), wy0), wy1), min(max(max(y0, y1), wy0), wy1)]
            xs += [min(max(min(x0, x1), wx0), wx1), min(max(max(x0, x1), wx0), wx1)]
            labels += [2.0, 3.0]
        if not labels:
            return None
        coords = self._to_frame(tile, np.array(ys, np.float64), np.array(xs, np.float64))
        if prompt.box is None:     # SAM's convention: a padding point when there is no box
            coords = np.concatenate([coords, np.zeros((1, 2))], axis=0)
            labels.append(-1.0)
        spec = self.decoder_spec
        coords_shape = spec.port("point_coords").shape
        n_fixed = coords_shape[1] if len(coords_shape) == 3 else None
        if n_fixed:                # an export with a fixed number of points
            coords, labels = coords[:n_fixed], labels[:n_fixed]
            pad = n_fixed - len(labels)
            coords = np.concatenate([coords, np.zeros((pad, 2))], axis=0)
            labels += [-1.0] * pad
        feeds: dict[str, np.ndarray] = {}
        for dec_name, enc_name in spec.features.items():
            feeds[dec_name] = arrays[enc_name].astype(spec.port(dec_name).dtype, copy=False)
        feeds["point_coords"] = coords[None].astype(spec.port("point_coords").dtype)
        feeds["point_labels"] = np.array(labels)[None].astype(spec.port("point_labels").dtype)
        if spec.port("mask_input") is not None:
            mask_in, has = self._mask_input(image_id, tile, prompt, arrays)
            feeds["mask_input"] = mask_in.astype(spec.port("mask_input").dtype)
            if spec.port("has_mask_input") is not None:
                feeds["has_mask_input"] = np.array([has], spec.port("has_mask_input").dtype)
        elif spec.port("has_mask_input") is not None:
            feeds["has_mask_input"] = np.array([0.0], spec.port("has_mask_input").dtype)
        if (p := spec.port("orig_im_size")) is not None:
            feeds["orig_im_size"] = np.array(tile.shape, p.dtype)
        return feeds

    def _mask_shape(self, arrays: dict[str, np.ndarray]) -> tuple[int, int]:
        shape = self.decoder_spec.mask_input_shape
        if shape:
            return shape
        main = max(arrays.values(), key=lambda a: a.shape[1] if a.ndim == 4 else 0)
        return 4 * main.shape[-2], 4 * main.shape[-1]   # SAM: the mask is 4x the embedding

    def _mask_input(self, image_id: str, tile: Tile, prompt: ClickPrompt,
                    arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, float]:
        """The previous answer's low-res logits when the prompt's previous mask is that answer."""
        mh, mw = self._mask_shape(arrays)
        with self._lock:
            last = self._last.get(image_id)
        if (prompt.previous is not None and last is not None and last[0] == tile.index
                and last[2].shape == (mh, mw) and prompt.previous.shape == last[1].shape
                and (prompt.previous is last[1] or np.array_equal(prompt.previous[tile.slices],
                                                                  last[1][tile.slices]))):
            return last[2][None, None], 1.0
        return np.zeros((1, 1, mh, mw), np.float32), 0.0

    def _remember_logits(self, image_id: str, tile: Tile, mask: np.ndarray,
                         logits: np.ndarray) -> None:
        if self.decoder_spec.mask_input_shape not in (None, logits.shape):
            return                  # full-size masks only: nothing to feed back
        with self._lock:    # the latest answer only: a full-size mask per image adds up
            self._last = {image_id: (tile.index, mask, np.asarray(logits, np.float32))}

    @staticmethod
    def _pick(masks: np.ndarray, scores: np.ndarray | None, prompt: ClickPrompt) -> int:
        m = masks.shape[1]
        if m == 1 or scores is None:
            return 0
        s = np.asarray(scores, np.float32).reshape(-1)[:m]
        single = len(prompt.clicks) == 1 and prompt.box is None
        if m == 4:   # SAM's multimask layout: 0 = the single-mask token, 1..3 the ambiguous ones
            return int(1 + np.argmax(s[1:])) if single else 0
        return int(np.argmax(s))

    def _to_window(self, logits: np.ndarray, tile: Tile) -> np.ndarray:
        """Decoder logits (low-res frame, padded square, or already the window) -> window size."""
        h, w = tile.shape
        logits = np.asarray(logits, np.float32)
        if logits.shape == (h, w):
            return logits
        if self.resize == "longest":
            nh, nw = self._resized_shape(h, w)
            s = self.encoder_spec.size
            mh, mw = logits.shape
            logits = logits[:max(1, round(nh * mh / s)), :max(1, round(nw * mw / s))]
        return cv2.resize(np.ascontiguousarray(logits), (w, h), interpolation=cv2.INTER_LINEAR)

    # ---- measured embedding time, kept beside the cache ---------------------------------
    def _timing_path(self) -> Path:
        return self.cache.root / "timings.json"

    def _load_timing(self) -> float | None:
        try:
            value = json.loads(self._timing_path().read_text(encoding="utf-8")).get(self.model_hash)
        except (OSError, ValueError, AttributeError):
            return None
        return float(value) if isinstance(value, (int, float)) else None

    def _save_timing(self, seconds: float) -> None:
        self.last_embedding_s = seconds
        try:
            data = json.loads(self._timing_path().read_text(encoding="utf-8"))
            data = data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            data = {}
        data[self.model_hash] = round(seconds, 4)
        try:
            atomic_write_json(self._timing_path(), data)
        except OSError as e:
            log.warning("cannot save the measured embedding time: %s", e)


def open_sam_files(*paths: Path | str, **kwargs) -> SamOnnxBackend:
    """A backend from what a user picked: the encoder and decoder in any order, one of them (the
    other found by name), or a JSON/YAML description naming both."""
    paths = [Path(p) for p in paths]
    description = None
    if len(paths) == 1 and paths[0].suffix.lower() in (".json", ".yaml", ".yml"):
        description = read_description(paths[0])
        if description.encoder is None or description.decoder is None:
            raise SamModelError(f"{paths[0].name} does not name local encoder and decoder files "
                                f"(encoder_model_path, decoder_model_path)")
        return SamOnnxBackend(description.encoder, description.decoder,
                              description=paths[0], **kwargs)
    if len(paths) == 1:
        other = partner_of(paths[0])
        if other is None:
            raise SamModelError(f"no partner file for {paths[0].name}: a SAM-style model is two "
                                f"files, an encoder and a decoder; pick both")
        paths.append(other)
    if len(paths) != 2:
        raise SamModelError(f"pick the two files of a SAM-style model (encoder, decoder), "
                            f"not {len(paths)}")
    a, b = paths
    if "decoder" in a.name.lower() and "encoder" in b.name.lower():
        a, b = b, a
    return SamOnnxBackend(a, b, **kwargs)


ImageSource = np.ndarray | Callable[[], np.ndarray]


def precompute(backend, images: Iterable[tuple[str, ImageSource]],
               cancel: CancelToken | None = None, on_progress: ProgressFn | None = None,
               limit: int | None = None) -> list[str]:
    """Prepare the next images of the list (a Job: the UI runs it after the current image).

    `images` yields (image_id, image or a function loading it), loaded only when not prepared
    yet; returns the ids embedded now. Cancelling stops between images (Cancelled).
    """
    cancel = cancel or CancelToken()
    items = list(images) if limit is None else list(images)[:limit]
    done: list[str] = []
    for i, (image_id, source) in enumerate(items):
        cancel.raise_if_cancelled()
        if not backend.is_prepared(image_id):
            image = source() if callable(source) else source
            backend.prepare(image_id, image, cancel)
            done.append(image_id)
        if on_progress:
            on_progress(Progress(i + 1, len(items), f"embedded {image_id}"))
    return done
