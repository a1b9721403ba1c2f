"""Click prompts and the click-backend contract shared by the Click tool and every backend.

numpy only (no Qt, no torch): the window builds prompts, a backend (our click model, a
SAM-style ONNX pair) turns one into a proposal on a worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Protocol, runtime_checkable

import numpy as np

from segstudio.core.jobs import CancelToken


@dataclass(frozen=True)
class Click:
    """One click in full-resolution image pixels; positive = "this is the object"."""

    y: float
    x: float
    positive: bool


@dataclass(frozen=True, eq=False)
class ClickPrompt:
    """Everything the user said about one object so far: clicks, a dragged box, the proposal."""

    clicks: tuple[Click, ...] = ()
    box: tuple[float, float, float, float] | None = None  # (y0, x0, y1, x1) image px
    previous: np.ndarray | None = None  # bool (h, w): the current proposal
    # the class the proposal will be committed to; a click model trained on several classes
    # reads it (a ring of cytoplasm and the nucleus inside it are different answers to a click)
    class_id: int | None = None

    @property
    def is_empty(self) -> bool:
        return not self.clicks and self.box is None

    def with_click(self, click: Click) -> "ClickPrompt":
        return replace(self, clicks=self.clicks + (click,))

    def with_previous(self, previous: np.ndarray | None) -> "ClickPrompt":
        return replace(self, previous=previous)

    def extent(self) -> tuple[float, float, float, float] | None:
        """(y0, x0, y1, x1) around the clicks and the box, None for an empty prompt."""
        ys = [c.y for c in self.clicks]
        xs = [c.x for c in self.clicks]
        if self.box is not None:
            y0, x0, y1, x1 = self.box
            ys += [y0, y1]
            xs += [x0, x1]
        if not ys:
            return None
        return min(ys), min(xs), max(ys), max(xs)


@runtime_checkable
class ClickBackend(Protocol):
    """What the Click tool needs from a model; prepare/propose run on a worker."""

    name: str  # tool bar: "ours: <run id>", "SAM file: <model name>"
    licence: str  # "" when unknown

    def embedding_seconds(self, height: int, width: int) -> float | None: ...

    def prepare(self, image_id: str, image: np.ndarray,
                cancel: CancelToken | None = None) -> None: ...

    def is_prepared(self, image_id: str) -> bool: ...

    def propose(self, image_id: str, image: np.ndarray, prompt: ClickPrompt,
                cancel: CancelToken | None = None) -> np.ndarray: ...


BACKEND_KINDS: dict[str, Callable[..., ClickBackend]] = {}


def register_backend(kind: str) -> Callable:
    """Decorator: `@register_backend("ours")` on a backend class or factory."""

    def decorate(factory: Callable[..., ClickBackend]) -> Callable[..., ClickBackend]:
        if kind in BACKEND_KINDS and BACKEND_KINDS[kind] is not factory:
            raise ValueError(f"click backend kind {kind!r} registered twice")
        BACKEND_KINDS[kind] = factory
        return factory

    return decorate


def build_backend(kind: str, *args, **kwargs) -> ClickBackend:
    """The backend registered as `kind`; an unknown kind names the known ones."""
    try:
        factory = BACKEND_KINDS[kind]
    except KeyError:
        raise ValueError(
            f"unknown click backend {kind!r}; known: {sorted(BACKEND_KINDS)}") from None
    return factory(*args, **kwargs)


def click_maps(shape: tuple[int, int], clicks: tuple[Click, ...] | list[Click],
               radius: float, origin: tuple[float, float] = (0.0, 0.0),
               scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Positive and negative disk maps (float32 0/1, `shape`) of the clicks.

    `origin` (y, x) and `scale` map image pixels into the map: map = (image - origin) * scale,
    so a model that sees a resized window around the clicks gets its disks in place.
    `radius` is in map pixels. Clicks outside the map draw nothing.
    """
    h, w = int(shape[0]), int(shape[1])
    pos = np.zeros((h, w), np.float32)
    neg = np.zeros((h, w), np.float32)
    if radius <= 0:
        raise ValueError(f"click radius must be positive, got {radius}")
    r = float(radius)
    for c in clicks:
        cy = (c.y - origin[0]) * scale
        cx = (c.x - origin[1]) * scale
        y0, y1 = max(0, int(np.floor(cy - r))), min(h, int(np.ceil(cy + r)) + 1)
        x0, x1 = max(0, int(np.floor(cx - r))), min(w, int(np.ceil(cx + r)) + 1)
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.ogrid[y0:y1, x0:x1]
        disk = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        target = pos if c.positive else neg
        target[y0:y1, x0:x1][disk] = 1.0
    return pos, neg
