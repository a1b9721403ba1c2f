"""Segmentation models behind a name registry: a configurable U-Net family and a tiny FCN."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
import torch.onnx.operators
from torch import nn

from segstudio.ml.config import PRESETS  # the presets are declared once, without torch

log = logging.getLogger(__name__)

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}



class ModelError(ValueError):
    """An unknown model or preset, or arguments a model does not take."""


# Sane bounds, checked before any layer is allocated: a checkpoint's config comes from anyone,
# and "width": 2048 or 1e9 input channels would try to allocate many gigabytes first.
MAX_IN_CHANNELS = 1024         # hyperspectral stacks fit; the first conv stays small
MAX_CLASSES = 255              # class ids are uint8 and 255 means "unlabeled"
MAX_DEPTH = 8
MAX_WIDTH = 512
MAX_BOTTOM_CHANNELS = 4096     # width * 2**depth: "strong" has 512; 4096 is ~1 GB of weights


def _whole(name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(value) or value != int(value):
        raise ModelError(f"{name} must be a whole number from {lo} to {hi}, got {value!r}")
    if not lo <= value <= hi:
        raise ModelError(f"{name} is {int(value)}, outside the sane range {lo}..{hi}")
    return int(value)


def check_model_args(name: str, in_channels: Any, num_classes: Any, **kw: Any
                     ) -> tuple[int, int, dict[str, Any]]:
    """Refuse sizes no real model has, naming the field, before building anything.

    Returns (in_channels, num_classes, kw) with the sizes as ints."""
    in_channels = _whole("in_channels", in_channels, 1, MAX_IN_CHANNELS)
    num_classes = _whole("num_classes", num_classes, 1, MAX_CLASSES)
    kw = dict(kw)
    if "depth" in kw:
        kw["depth"] = _whole("model depth", kw["depth"], 1, MAX_DEPTH)
    if "width" in kw:
        kw["width"] = _whole("model width", kw["width"], 1, MAX_WIDTH)
    if name == "unet":
        depth, width = kw.get("depth", 4), kw.get("width", 32)
        if width * 2**depth > MAX_BOTTOM_CHANNELS:
            raise ModelError(f"model width {width} with depth {depth} gives {width * 2**depth} "
                             f"channels at the bottom of the U-Net (at most "
                             f"{MAX_BOTTOM_CHANNELS}); lower the width or the depth")
    return in_channels, num_classes, kw


def register_model(name: str):
    """Decorator: `@register_model("unet")` on a factory(in_channels, num_classes, **kw)."""
    def add(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[name] = factory
        return factory
    return add


def known_models() -> list[str]:
    return sorted(_REGISTRY)


def build_model(name: str, in_channels: int, num_classes: int, **kw: Any) -> nn.Module:
    """A fresh model by registered name; the error lists the known names."""
    if name not in _REGISTRY:
        raise ModelError(f"unknown model {name!r}; known: {known_models()}")
    in_channels, num_classes, kw = check_model_args(name, in_channels, num_classes, **kw)
    try:
        return _REGISTRY[name](in_channels=in_channels, num_classes=num_classes, **kw)
    except TypeError as e:
        raise ModelError(f"model {name!r} does not accept these arguments {sorted(kw)}: {e}") \
            from None


def preset_spec(preset: str) -> dict[str, Any]:
    """{'model': name, **kwargs} for a preset; the error lists the known presets."""
    if preset not in PRESETS:
        raise ModelError(f"unknown preset {preset!r}; known: {sorted(PRESETS)}")
    return dict(PRESETS[preset])


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "none":
        return nn.Identity()
    raise ModelError(f"unknown norm {kind!r}; known: ['batch', 'group', 'instance', 'none']")


class ConvBlock(nn.Sequential):
    """Two 3x3 conv + norm + ReLU; bias only when no norm follows."""

    def __init__(self, cin: int, cout: int, norm: str) -> None:
        bias = norm == "none"
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=bias), _norm(norm, cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=bias), _norm(norm, cout), nn.ReLU(inplace=True),
        )


class UNet(nn.Module):
    """U-Net: `depth` poolings, `width` channels at full resolution, doubling per level.

    Any input size works: the input is padded to a multiple of 2**depth and the output cropped,
    so prediction on whole images needs no caller-side padding. The pad is tensor arithmetic on
    the input's shape, so an ONNX export pads and crops right at every size, not only the traced one.
    """

    def __init__(self, in_channels: int, num_classes: int, depth: int = 4, width: int = 32,
                 norm: str = "batch") -> None:
        super().__init__()
        if depth < 1 or width < 1:
            raise ModelError(f"U-Net needs depth >= 1 and width >= 1, got {depth}, {width}")
        self.depth = depth
        chans = [width * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList([ConvBlock(in_channels, chans[0], norm)])
        self.down.extend(ConvBlock(chans[i], chans[i + 1], norm) for i in range(depth))
        self.up = nn.ModuleList(nn.ConvTranspose2d(chans[i + 1], chans[i], 2, stride=2)
                                for i in reversed(range(depth)))
        self.dec = nn.ModuleList(ConvBlock(chans[i] * 2, chans[i], norm)
                                 for i in reversed(range(depth)))
        self.head = nn.Conv2d(chans[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]      # ints in eager mode, traced sizes under export
        x = _pad_to_multiple(x, 2**self.depth)
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()
        for up, dec in zip(self.up, self.dec):
            x = dec(torch.cat([up(x), skips.pop()], dim=1))
        return self.head(x)[..., :h, :w]


def _pad_to_multiple(x: torch.Tensor, m: int) -> torch.Tensor:
    """Pad (B, C, h, w) at the bottom/right to multiples of `m`: mirror where every pad fits
    (min(h, w) > largest pad), else repeat the edge, as F.pad's "reflect"/"replicate" would.

    Tensor ops only, no Python branch on a size: the ONNX tracer records this for any input
    size (an `if pad:` would be frozen at the size traced). A gather of computed indices
    gives F.pad's values exactly, and with no padding the input's values unchanged.
    """
    size = torch.onnx.operators.shape_as_tensor(x)[-2:]     # (h, w) on the CPU, traced
    pad = (m - size % m) % m
    fits = size.min() > pad.max()
    for axis in (2, 3):
        n, p = size[axis - 2], pad[axis - 2]
        i = torch.arange(n + p)      # indices on the CPU: no wait for a GPU to answer a size
        mirror = torch.where(i < n, i, 2 * (n - 1) - i)
        edge = torch.clamp(i, max=n - 1)
        x = x.index_select(axis, torch.where(fits, mirror, edge).to(x.device))
    return x


class TinyFCN(nn.Module):
    """Two 3x3 convs and a 1x1 head: for tests, trains in milliseconds."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 8) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True))
        self.head = nn.Conv2d(width, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


@register_model("unet")
def _unet(in_channels: int, num_classes: int, depth: int = 4, width: int = 32,
          norm: str = "batch") -> nn.Module:
    return UNet(in_channels, num_classes, depth=depth, width=width, norm=norm)


@register_model("tiny-fcn")
def _tiny_fcn(in_channels: int, num_classes: int, width: int = 8) -> nn.Module:
    return TinyFCN(in_channels, num_classes, width=width)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
