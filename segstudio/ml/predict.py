"""Tiled inference over images of any size in bounded memory, with Gaussian blending.

The image is walked in row bands one tile high. Each band is normalised once, cut into
overlapping tiles that go through the model in batches, and the softmax of every tile is
added into a band accumulator (C x tile x W float32) weighted by a Gaussian that favours tile
centres, where a convolutional model sees the most context. Once a band is done, the rows no
later tile can reach are final: they are divided by the summed weights and turned into the
outputs (uint8 labels, float16 entropy / margin / probabilities), and the accumulator moves
down. Peak memory is the outputs plus a few bands, never a float32 C x H x W map, so a
16000 x 16000 RGB image predicts in well under 4 GB.

The model is any `torch.nn.Module` mapping (B, C_in, t, t) to (B, C, t, t) logits (one
channel: a binary sigmoid logit). `normalise` is a `segstudio.ml.normalise.Normaliser`: its
`for_image(image)` (statistics of the whole image) maps a block of image rows, (h, w) or
(h, w, c) as stored, to (C_in, h, w) float32, band by band.

This is the one predictor: validation during training, Predict, Measure, ranking, the CLI and
the benchmarks all call it, so a run's recorded validation score is what Measure shows.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from segstudio.core.classes import UNLABELED
from segstudio.core.jobs import CancelToken, Progress, ProgressFn
from segstudio.ml.normalise import (Normalisation, Normaliser,  # noqa: F401  (re-exported)
                                    PixelNormalisation)
from segstudio.ml.objects import ObjectHead, read_out
from segstudio.ml.resample import resize_image, source_coordinates

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TileOptions:
    """How an image is cut and blended. Bigger tiles and batches are faster, not lighter."""

    tile: int = 256
    overlap: float = 0.25            # fraction of a tile shared with its neighbour
    batch_size: int = 8
    sigma_scale: float = 0.125       # Gaussian sigma as a fraction of the tile
    # Floor on the 2-D weights (sqrt of it per axis). Tiny on purpose: a tile's edge, where
    # zero padding corrupts the logits, must barely count wherever a neighbour covers the
    # pixel from its centre; a 1e-3 floor in 2-D put blended outputs 40x further from a
    # whole-image pass. Pixels only one tile reaches get its values exactly, floor or not.
    min_weight: float = 1e-6
    channels_last: bool = True       # faster convolutions on CPU (oneDNN) and tensor cores
    fuse_batchnorm: bool = True      # fold eval-mode BatchNorm into the conv before it (a copy)

    def __post_init__(self) -> None:
        if self.tile < 1:
            raise ValueError(f"tile must be positive, got {self.tile}")
        if not 0.0 <= self.overlap < 1.0:
            raise ValueError(f"overlap must be in [0, 1), got {self.overlap}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")


@dataclass
class Prediction:
    """What a prediction gives the overlay: class ids plus how sure the model was."""

    labels: np.ndarray                    # (h, w) uint8 class ids (argmax)
    entropy: np.ndarray | None            # (h, w) float16 in [0, 1]: entropy / log(C)
    margin: np.ndarray | None             # (h, w) float16 in [0, 1]: top1 - top2 probability
    probabilities: np.ndarray | None      # (C, h, w) float16, when asked for
    num_classes: int
    # with `truth`: sum of -log p(true class) over its labelled pixels, and how many there were
    nll_sum: float = 0.0
    nll_pixels: int = 0
    # with an object head: (h, w) uint32 object ids (0 = none); labels are then project ids
    objects: np.ndarray | None = None

    @property
    def nll(self) -> float:
        """Mean cross-entropy over the labelled pixels of `truth` (NaN when there are none)."""
        return self.nll_sum / self.nll_pixels if self.nll_pixels else math.nan


def _gaussian_1d(tile: int, sigma_scale: float, min_weight: float) -> np.ndarray:
    sigma = max(sigma_scale * tile, 1e-6)
    r = np.arange(tile, dtype=np.float64) - (tile - 1) / 2.0
    g = np.exp(-(r * r) / (2.0 * sigma * sigma))
    # the floor is split between the two axes so the 2-D weights stay an outer product
    return np.maximum(g / g.max(), math.sqrt(min_weight))


def gaussian_weights(tile: int, sigma_scale: float = 0.125, min_weight: float = 1e-6
                     ) -> np.ndarray:
    """(tile, tile) float32 blending weights, 1 at the centre, >= min_weight everywhere.

    Separable on purpose: the summed weights over the tile grid are then an outer product of
    two 1-D sums, so no per-pixel weight-sum map has to be accumulated.
    """
    g = _gaussian_1d(tile, sigma_scale, min_weight)
    return np.outer(g, g).astype(np.float32)


def _coverage(length: int, starts: list[int], g: np.ndarray) -> torch.Tensor:
    """Sum of the 1-D weights of every tile covering each position along one axis."""
    total = np.zeros(length, np.float64)
    for s in starts:
        total[s:s + g.size] += g
    return torch.from_numpy(total.astype(np.float32))


def tile_starts(length: int, tile: int, overlap: float) -> list[int]:
    """Tile origins along one axis: a regular stride, the last tile flush with the end."""
    if length <= tile:
        return [0]
    stride = max(1, int(tile * (1.0 - overlap)))
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] != length - tile:
        starts.append(length - tile)
    return starts


def count_tiles(height: int, width: int, options: TileOptions = TileOptions()) -> int:
    return (len(tile_starts(max(height, options.tile), options.tile, options.overlap))
            * len(tile_starts(max(width, options.tile), options.tile, options.overlap)))


def _model_device(model: torch.nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def prepare_for_inference(model: torch.nn.Module, *, fuse_batchnorm: bool = True,
                          channels_last: bool = True) -> torch.nn.Module:
    """An eval-mode copy of the model ready for fast inference; the caller's model is untouched.

    A BatchNorm2d directly after a Conv2d inside an nn.Sequential is folded into the conv's
    weights (the same function, one pass over memory fewer); anything else is left as it is.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model = copy.deepcopy(model).eval()
    if fuse_batchnorm:
        folded = 0
        for seq in [m for m in model.modules() if isinstance(m, torch.nn.Sequential)]:
            names = list(seq._modules)
            for a, b in zip(names, names[1:]):
                conv, bn = seq._modules[a], seq._modules[b]
                if (type(conv) is torch.nn.Conv2d and type(bn) is torch.nn.BatchNorm2d
                        and bn.track_running_stats and bn.running_mean is not None
                        and conv.out_channels == bn.num_features):
                    seq._modules[a] = fuse_conv_bn_eval(conv, bn)
                    seq._modules[b] = torch.nn.Identity()
                    folded += 1
        log.debug("folded %d BatchNorm layers into convolutions", folded)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def _logits(model: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    out = model(batch)
    if isinstance(out, dict):                 # torchvision segmentation models: {"out": ...}
        out = out["out"]
    elif isinstance(out, (tuple, list)):      # deep supervision: the first head is the output
        out = out[0]
    if out.ndim != 4 or out.shape[0] != batch.shape[0] or out.shape[2:] != batch.shape[2:]:
        raise ValueError(f"the model turned a {tuple(batch.shape)} batch into "
                         f"{tuple(out.shape)}; tiled prediction needs (B, classes, "
                         f"{batch.shape[2]}, {batch.shape[3]}) logits")
    return out


def _probabilities(logits: torch.Tensor) -> torch.Tensor:
    """(B, t, t, C) probabilities from (B, C, t, t) logits.

    Softmax over dim 1 first, then the permute: on a channels_last tensor that is a view,
    and torch's kernel for dim 1 is several times faster than softmax over a short last dim.
    """
    logits = logits.float()
    if logits.shape[1] == 1:                  # one sigmoid logit: background vs. class 1
        p1 = torch.sigmoid(logits)
        probs = torch.cat([1.0 - p1, p1], dim=1)
    else:
        probs = torch.softmax(logits, dim=1)
    return probs.permute(0, 2, 3, 1)


def _pad_to(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Pad (C, h, w) at the bottom/right up to (height, width): mirror where it fits."""
    ph, pw = height - x.shape[1], width - x.shape[2]
    if ph <= 0 and pw <= 0:
        return x
    mode = "reflect" if ph < x.shape[1] and pw < x.shape[2] else "replicate"
    return F.pad(x[None], (0, max(pw, 0), 0, max(ph, 0)), mode=mode)[0]


def _bands(model: torch.nn.Module, image: np.ndarray, normalise: Normaliser,
           options: TileOptions, on_progress: ProgressFn | None, cancel: CancelToken | None
           ) -> Iterator[tuple[int, int, torch.Tensor]]:
    """(y0, y1, probabilities (y1 - y0, w, C)) at the image's own size, channels last.

    At a working scale other than 1 the image is resampled first (statistics still come from
    the image as stored), predicted at that scale and the probabilities are brought back.
    """
    if image.ndim not in (2, 3):
        raise ValueError(f"expected an (h, w) or (h, w, c) image, got shape {image.shape}")
    height, width = int(image.shape[0]), int(image.shape[1])
    if height == 0 or width == 0:
        raise ValueError(f"cannot predict an empty image of shape {image.shape}")
    pixels = normalise.for_image(image)     # per-image statistics, shared by all its tiles
    hs, ws = normalise.working_shape(height, width)
    if (hs, ws) == (height, width):
        yield from _tile_bands(model, image, pixels, options, on_progress, cancel)
        return
    small = resize_image(image, (hs, ws))
    yield from _upsampled(_tile_bands(model, small, pixels, options, on_progress, cancel),
                          (hs, ws), (height, width))


def _upsampled(bands: Iterator[tuple[int, int, torch.Tensor]], small: tuple[int, int],
               full: tuple[int, int]) -> Iterator[tuple[int, int, torch.Tensor]]:
    """Bilinear resampling of a stream of (y0, y1, (rows, w, C)) bands from `small` to `full`
    size, in row chunks: only the source rows a pending output row needs are kept."""
    (hs, ws), (height, width) = small, full
    ylo, yhi, wy = source_coordinates(height, hs)
    xlo, xhi, wx = source_coordinates(width, ws)
    xlo_t, xhi_t = torch.from_numpy(xlo), torch.from_numpy(xhi)
    wx_t = torch.from_numpy(wx)[None, :, None]
    buf: torch.Tensor | None = None
    start = out_y = 0
    for _y0, y1, p in bands:
        buf = p.clone() if buf is None else torch.cat([buf, p])
        last = height if y1 >= hs else int(np.searchsorted(yhi, y1, side="left"))
        step = max(1, (1 << 22) // (width * p.shape[-1]))
        while out_y < last:
            r1 = min(last, out_y + step)
            lo = torch.from_numpy(ylo[out_y:r1] - start)
            hi = torch.from_numpy(yhi[out_y:r1] - start)
            rows = torch.lerp(buf[lo], buf[hi], torch.from_numpy(wy[out_y:r1])[:, None, None])
            yield out_y, r1, _widen(rows, width, xlo_t, xhi_t, wx_t)
            out_y = r1
        if out_y < height:
            drop = int(ylo[out_y]) - start
            if drop > 0:
                buf, start = buf[drop:], start + drop


def _widen(rows: torch.Tensor, width: int, xlo: torch.Tensor, xhi: torch.Tensor,
           wx: torch.Tensor) -> torch.Tensor:
    """(n, w_small, C) -> (n, width, C), linear along x with pixel centres aligned: OpenCV's
    resize (the same mapping, several times faster) where it takes the channel count."""
    n, _ws, c = rows.shape
    if c <= 512:
        a = np.ascontiguousarray(rows.numpy())
        out = cv2.resize(a, (width, n), interpolation=cv2.INTER_LINEAR)
        return torch.from_numpy(out.reshape(n, width, c))
    return torch.lerp(rows[:, xlo], rows[:, xhi], wx)


def _tile_bands(model: torch.nn.Module, image: np.ndarray, pixels: PixelNormalisation,
                options: TileOptions, on_progress: ProgressFn | None,
                cancel: CancelToken | None) -> Iterator[tuple[int, int, torch.Tensor]]:
    """The tiled pass over an image already at its working scale."""
    cancel = cancel or CancelToken()
    height, width = int(image.shape[0]), int(image.shape[1])
    t = options.tile
    hp, wp = max(height, t), max(width, t)           # images smaller than a tile are padded
    ys = tile_starts(hp, t, options.overlap)
    xs = tile_starts(wp, t, options.overlap)
    total = len(ys) * len(xs)
    device = _model_device(model)
    g = _gaussian_1d(t, options.sigma_scale, options.min_weight)
    weights = torch.from_numpy(np.outer(g, g).astype(np.float32))[:, :, None]   # (t, t, 1)
    cover_y = _coverage(hp, ys, g)[:, None, None]    # summed weights = cover_y * cover_x
    cover_x = _coverage(wp, xs, g)[None, :width, None]
    # Accumulator for image rows [y, y + t), channels last: every tile adds a contiguous
    # (t, t, C) block and the per-pixel reductions at the end run along contiguous memory.
    acc: torch.Tensor | None = None                  # (t, wp, C)
    done = 0
    model = prepare_for_inference(model, fuse_batchnorm=options.fuse_batchnorm,
                                  channels_last=options.channels_last)
    for i, y in enumerate(ys):
        block = image[y:min(y + t, height)]
        chw = pixels(block)
        if chw.ndim != 3 or chw.shape[1:] != block.shape[:2]:
            raise ValueError(f"normalise turned a {block.shape} block into {chw.shape}; "
                             f"expected (channels, {block.shape[0]}, {block.shape[1]})")
        # (c, h, w) in shape; Normalisation keeps the image's (h, w, c) memory, so no copy here
        band = torch.from_numpy(np.asarray(chw, np.float32)).permute(1, 2, 0)
        if band.shape[0] < t or band.shape[1] < wp:
            band = _pad_to(band.permute(2, 0, 1), t, wp).permute(1, 2, 0)
        band = band.contiguous().to(device)          # (t, wp, c_in)
        for b0 in range(0, len(xs), options.batch_size):
            cancel.raise_if_cancelled()
            bx = xs[b0:b0 + options.batch_size]
            # (B, t, t, c) contiguous viewed as (B, c, t, t): channels_last with no extra copy
            batch = torch.stack([band[:, x:x + t] for x in bx]).permute(0, 3, 1, 2)
            if not options.channels_last:
                batch = batch.contiguous()
            with torch.inference_mode():      # only around the model: not across yields
                probs = _probabilities(_logits(model, batch)).cpu()     # (B, t, t, C)
            if acc is None:
                acc = torch.zeros(t, wp, probs.shape[-1])
                # expanded to (t, t, C) once: broadcasting a size-1 last dim is 30x slower
                weights = weights.expand(t, t, probs.shape[-1]).contiguous()
            for k, x in enumerate(bx):
                acc[:, x:x + t].addcmul_(probs[k], weights)
            done += len(bx)
            if on_progress:
                on_progress(Progress(done, total, "predicting tiles"))
        assert acc is not None
        # rows above the next band's top are final; the last band ends the image
        y_next = ys[i + 1] if i + 1 < len(ys) else hp
        n = min(y_next, height) - y
        # handed out in chunks of ~4 M values: the consumers' temporaries (top-2, entropy,
        # int64 indices) then stay a few tens of MB however wide the image or many the classes
        step = max(1, (1 << 22) // (width * acc.shape[-1]))
        for r0 in range(0, max(n, 0), step):
            r1 = min(n, r0 + step)
            yield y + r0, y + r1, acc[r0:r1, :width] / (cover_y[y + r0:y + r1] * cover_x)
        shift = y_next - y
        if i + 1 < len(ys):
            keep = t - shift
            acc[:keep] = acc[shift:].clone()
            acc[keep:] = 0


def iter_probability_bands(model: torch.nn.Module, image: np.ndarray, normalise: Normaliser,
                           options: TileOptions = TileOptions(), *,
                           on_progress: ProgressFn | None = None,
                           cancel: CancelToken | None = None
                           ) -> Iterator[tuple[int, int, torch.Tensor]]:
    """Yield (y0, y1, probabilities (C, y1 - y0, w) float32 on CPU) from top to bottom.

    Only the rows still reachable by a tile are held, so memory stays a few bands however
    tall the image. The tensor may be a strided view; copy what you keep. Raises
    `Cancelled` between batches once `cancel` is set.
    """
    for y0, y1, p in _bands(model, image, normalise, options, on_progress, cancel):
        yield y0, y1, p.permute(2, 0, 1)


def predict_tiled(model: torch.nn.Module, image: np.ndarray, normalise: Normaliser,
                  options: TileOptions = TileOptions(), *, probabilities: bool = False,
                  uncertainty: bool = True, truth: np.ndarray | None = None,
                  objects: ObjectHead | None = None,
                  on_progress: ProgressFn | None = None,
                  cancel: CancelToken | None = None) -> Prediction:
    """Class ids for every pixel, with entropy and margin maps (and probabilities if asked).

    truth: an (h, w) mask; the prediction then also carries the cross-entropy of its labelled
    pixels (255 and ids the model does not know left out): the validation loss of training.
    objects: the model's object head (`LoadedModel.objects`): its boundary output is read out
    into object ids (`segstudio.ml.objects.read_out`) and the labels are the project's ids.
    """
    height, width = int(image.shape[0]), int(image.shape[1])
    if truth is not None and truth.shape != (height, width):
        raise ValueError(f"truth {truth.shape} and image {(height, width)} differ in size")
    labels = np.empty((height, width), np.uint8)
    entropy = margin = probs_out = None
    num_classes = 0
    nll_sum, nll_pixels = 0.0, 0
    best_other = sure = None
    for y0, y1, p in _bands(model, image, normalise, options, on_progress, cancel):
        if not num_classes:
            num_classes = int(p.shape[-1])
            if num_classes > 255:
                raise ValueError(f"the model predicts {num_classes} classes; masks hold 255")
            if objects is not None:
                if objects.num_outputs != num_classes:
                    raise ValueError(f"the object head expects {objects.num_outputs} outputs, "
                                     f"the model gives {num_classes}")
                best_other = np.zeros((height, width), np.uint8)
                sure = np.zeros((height, width), bool)
            if uncertainty:
                entropy = np.empty((height, width), np.float16)
                margin = np.empty((height, width), np.float16)
            if probabilities:
                probs_out = np.empty((num_classes, height, width), np.float16)
        if not uncertainty:        # one pass over the classes instead of a top-2 sort
            labels[y0:y1] = p.argmax(dim=-1).to(torch.uint8).numpy()
        else:
            top, idx = p.topk(min(2, num_classes), dim=-1)
            labels[y0:y1] = idx[..., 0].to(torch.uint8).numpy()
        if uncertainty:
            assert entropy is not None and margin is not None
            entropy[y0:y1] = _entropy(p).numpy()
            m = top[..., 0] - top[..., 1] if num_classes > 1 else torch.ones_like(top[..., 0])
            margin[y0:y1] = m.clamp_(0.0, 1.0).to(torch.float16).numpy()
        if best_other is not None:
            best_other[y0:y1] = p[..., :-1].argmax(dim=-1).to(torch.uint8).numpy()
            lead = p.amax(dim=-1) - p[..., objects.boundary]
            sure[y0:y1] = (lead > objects.seed_margin).numpy()
        if probs_out is not None:
            probs_out[:, y0:y1] = p.to(torch.float16).permute(2, 0, 1).numpy()
        if truth is not None:
            t = torch.from_numpy(np.ascontiguousarray(truth[y0:y1]).astype(np.int64))
            keep = (t != UNLABELED) & (t < num_classes)
            if bool(keep.any()):
                picked = p[keep].gather(1, t[keep][:, None])[:, 0]
                nll_sum -= float(torch.log(picked.double().clamp_min(1e-12)).sum())
                nll_pixels += int(keep.sum())
    ids = None
    if objects is not None and best_other is not None and sure is not None:
        labels, ids = read_out(labels, best_other, objects, sure=sure)
        num_classes = objects.boundary
    return Prediction(labels, entropy, margin, probs_out, num_classes, nll_sum, nll_pixels, ids)


def _entropy(p: torch.Tensor) -> torch.Tensor:
    """Normalised Shannon entropy over the last dim as float16: 0 = certain, 1 = uniform."""
    c = p.shape[-1]
    if c < 2:
        return torch.zeros(p.shape[:-1], dtype=torch.float16)
    h = torch.special.entr(p).sum(dim=-1)     # -p log p, 0 where p = 0
    return (h / math.log(c)).clamp_(0.0, 1.0).to(torch.float16)


def predict_probabilities(model: torch.nn.Module, image: np.ndarray, normalise: Normaliser,
                          options: TileOptions = TileOptions(), *,
                          on_progress: ProgressFn | None = None,
                          cancel: CancelToken | None = None) -> np.ndarray:
    """Full (C, h, w) float32 probabilities (a strided view): small images, comparisons."""
    out: np.ndarray | None = None
    for y0, y1, p in _bands(model, image, normalise, options, on_progress, cancel):
        if out is None:        # stored (h, w, C) like the bands: rows copy without striding
            out = np.empty((image.shape[0], image.shape[1], p.shape[-1]), np.float32)
        out[y0:y1] = p.numpy()
    assert out is not None
    return np.moveaxis(out, -1, 0)
