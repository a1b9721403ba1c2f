"""Segmentation models behind a name registry: a configurable U-Net family and a tiny FCN."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}

# Named model shapes the app and CLI offer; each is a registered model plus its arguments.
# "fast" trains a usable nuclei model in minutes on two CPU cores; "strong" is ~4x the compute.
PRESETS: dict[str, dict[str, Any]] = {
    "fast": {"model": "unet", "depth": 3, "width": 16, "norm": "batch"},
    "strong": {"model": "unet", "depth": 4, "width": 32, "norm": "batch"},
    "tiny": {"model": "tiny-fcn"},
}


class ModelError(ValueError):
    """An unknown model or preset, or arguments a model does not take."""


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
    so prediction on whole images needs no caller-side padding.
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
        h, w = x.shape[-2:]
        m = 2**self.depth
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "replicate")
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()
        for up, dec in zip(self.up, self.dec):
            x = dec(torch.cat([up(x), skips.pop()], dim=1))
        x = self.head(x)
        return x[..., :h, :w] if (ph or pw) else x


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
