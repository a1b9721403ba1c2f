"""The "ours" click backend: a click-model run answering prompts through a window around them.

The window: a box gives it directly (1.4 x its side); clicks with an earlier proposal give the
box around both (1.8 x); a lone first click gives a square of the run's typical object size
(`window.first_side`, from the objects it was trained on). Then the window follows the answer
(LOOKS forwards at most): RITM's zoom-in to 1.8 x the answer's side when the answer fills
little of it, wider (1.7 x at least, centred on the answer) when it runs into a window edge
inside the image; the model was trained on windows tighter than an object too, so a big object
answers up to the edge of a small window rather than as a blob inside it. So the cost per
click stays that of a few small forwards whatever the image size. The answer is cut at
probability 0.5 (a run may store another as `window.threshold`); components that hold no
positive click are dropped.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from segstudio.core.clicks import ClickPrompt, register_backend
from segstudio.core.jobs import CancelToken
from segstudio.io.bundled import starter_models
from segstudio.ml import click_sim
from segstudio.ml.click_model import (CLICK_KIND, ClickConfig, build_click_model, click_runs_dir,
                                      image_norm, model_input, window_input, with_class_planes)
from segstudio.ml.normalise import PixelNormalisation

log = logging.getLogger(__name__)

GROW = 1.7          # a wider look when the answer runs into the window's edge
LOOKS = 3           # forwards per click at most


class ClickModelError(ValueError):
    """A click-model run that cannot be loaded; the message names the file."""


class ClickModel:
    """A loaded click-model run: weights, window settings, card."""

    def __init__(self, run_dir: Path | str) -> None:
        from segstudio.ml.checkpoint import CheckpointError, load_checkpoint
        from segstudio.ml.cards import read_run_card

        self.run_dir = Path(run_dir)
        card, problem = read_run_card(self.run_dir)
        if problem:
            raise ClickModelError(f"{self.run_dir / 'model_card.json'}: {problem}")
        self.card: dict[str, Any] = card or {}
        try:
            ckpt = load_checkpoint(self.run_dir / "best.pt")
        except CheckpointError as e:
            raise ClickModelError(str(e)) from None
        cfg = ckpt["config"]
        if cfg.get("kind") != CLICK_KIND:
            raise ClickModelError(f"{self.run_dir}: not a click model (kind "
                                  f"{cfg.get('kind')!r}, expected {CLICK_KIND!r})")
        self.config = cfg
        win = cfg.get("window") or {}
        self.size = int(win.get("size", 96))
        self.radius = float(win.get("radius", 3.0))
        self.first_side = float(win.get("first_side", 48.0))
        self.margin = float(win.get("margin", 1.8))
        self.threshold = float(win.get("threshold", 0.5))      # the probability cut
        self.channels = int(cfg.get("image_channels", 1))
        self.class_ids = tuple(int(c) for c in cfg.get("class_ids") or ())
        spec = dict(cfg.get("model") or {})
        train = ClickConfig(**{k: v for k, v in (cfg.get("train") or {}).items()
                               if k in ClickConfig.__dataclass_fields__})
        train = ClickConfig(**{**train.__dict__, "depth": int(spec.get("depth", train.depth)),
                               "width": int(spec.get("width", train.width))})
        self.model = build_click_model(self.channels, train, len(self.class_ids))
        try:
            self.model.load_state_dict({k: v.float() if v.is_floating_point() else v
                                        for k, v in ckpt["state_dict"].items()})
        except (RuntimeError, KeyError) as e:
            raise ClickModelError(f"{self.run_dir / 'best.pt'} does not fit its click model: "
                                  f"{e}") from None
        self.model.eval()
        self._lock = threading.Lock()

    @property
    def run_id(self) -> str:
        return str(self.card.get("run_id") or self.run_dir.name)

    def _forward(self, x: np.ndarray) -> np.ndarray:
        with self._lock, torch.no_grad():
            return torch.sigmoid(self.model(torch.from_numpy(x[None]))[0, 0]).numpy()

    def window_for(self, prompt: ClickPrompt, shape: tuple[int, int]) -> click_sim.Window:
        if prompt.box is not None:
            return click_sim.window_around(prompt.box, 1.4, 16.0, self.size)
        ext = prompt.extent()
        prev_box = _bbox(prompt.previous) if prompt.previous is not None else None
        if prev_box is not None and ext is not None:
            ext = (min(ext[0], prev_box[0]), min(ext[1], prev_box[1]),
                   max(ext[2], prev_box[2]), max(ext[3], prev_box[3]))
            return click_sim.window_around(ext, self.margin, 16.0, self.size)
        assert ext is not None
        return click_sim.window_around(ext, self.margin, self.first_side, self.size)

    def propose(self, pixels: np.ndarray, norm: PixelNormalisation, prompt: ClickPrompt,
                cancel: CancelToken | None = None) -> np.ndarray:
        """bool (h, w) proposal for the prompt on raw `pixels` normalised by `norm`."""
        h, w = pixels.shape[:2]
        out = np.zeros((h, w), bool)
        if prompt.is_empty:
            return out if prompt.previous is None else prompt.previous.copy()
        win = self.window_for(prompt, (h, w))
        prob = None
        zoomed = False
        for look in range(LOOKS):
            if cancel:
                cancel.raise_if_cancelled()
            local = [type(c)((c.y - win.y0) * win.scale, (c.x - win.x0) * win.scale, c.positive)
                     for c in prompt.clicks]
            if prob is None:
                prev = None
                if prompt.previous is not None:
                    prev = win.crop(prompt.previous.astype(np.uint8), nearest=True) > 0
                img = with_class_planes(window_input(pixels, norm, win), self.class_ids,
                                        prompt.class_id)
                prob = self._forward(model_input(img, local, prev, self.radius))
            if look == LOOKS - 1:
                break
            part = _keep_clicked(prob > self.threshold, [(c.y, c.x) for c in local if c.positive])
            better = self._rescaled(part, win, (h, w), zoomed)
            if better is None:
                break
            zoomed = zoomed or better.side < win.side
            win, prob = better, None
        y0, x0, region = win.paste_region(prob, (h, w))
        mask = region > self.threshold
        mask = _keep_clicked(mask, [(c.y - y0, c.x - x0) for c in prompt.clicks if c.positive])
        out[y0:y0 + mask.shape[0], x0:x0 + mask.shape[1]] = mask
        return out

    def _rescaled(self, part: np.ndarray, win: click_sim.Window, shape: tuple[int, int],
                  zoomed: bool) -> click_sim.Window | None:
        """The window at the answer's own scale (margin x its side, centred on it), when this
        one is far from it: RITM's zoom-in when the answer fills little of the window (once),
        a wider look when it runs into a window edge inside the image. None: keep this one."""
        box = _bbox(part)
        if box is None:
            return None
        y0, x0, y1, x1 = box
        img_box = (win.y0 + y0 / win.scale, win.x0 + x0 / win.scale,
                   win.y0 + y1 / win.scale, win.x0 + x1 / win.scale)
        want = self.margin * max(img_box[2] - img_box[0], img_box[3] - img_box[1])
        if _runs_into_edge(part, win, shape):
            side = max(want, win.side * GROW)
            cy, cx = (img_box[0] + img_box[2]) / 2, (img_box[1] + img_box[3]) / 2
            return click_sim.Window(cy - side / 2, cx - side / 2, side, self.size)
        if not zoomed and want < 0.6 * win.side:
            return click_sim.window_around(img_box, self.margin, 16.0, self.size)
        return None


def _bbox(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    rows = np.flatnonzero(mask.any(axis=1))
    if not len(rows):
        return None
    cols = np.flatnonzero(mask[rows[0]:rows[-1] + 1].any(axis=0))
    return float(rows[0]), float(cols[0]), float(rows[-1] + 1), float(cols[-1] + 1)


def _runs_into_edge(small: np.ndarray, win: click_sim.Window, shape: tuple[int, int]) -> bool:
    """The answer touches a window edge that is inside the image (there is more to see)."""
    h, w = shape
    b = 2
    return bool((small[:b].any() and win.y0 > 0) or
                (small[-b:].any() and win.y0 + win.side < h) or
                (small[:, :b].any() and win.x0 > 0) or
                (small[:, -b:].any() and win.x0 + win.side < w))


def _keep_clicked(mask: np.ndarray, points: list[tuple[float, float]]) -> np.ndarray:
    """The components of `mask` under a positive click (all of them when none is under one)."""
    if not mask.any() or not points:
        return mask
    n, comp = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    keep = set()
    for y, x in points:
        iy, ix = int(round(y)), int(round(x))
        if 0 <= iy < comp.shape[0] and 0 <= ix < comp.shape[1] and comp[iy, ix] > 0:
            keep.add(int(comp[iy, ix]))
    if not keep:
        return mask
    return np.isin(comp, list(keep))


@register_backend("ours")
class OursBackend:
    """Click backend of a click-model run (a project's own, or the bundled starter)."""

    def __init__(self, run_dir: Path | str) -> None:
        self.model = ClickModel(run_dir)
        self.name = f"ours: {self.model.run_id}"
        self.licence = str(self.model.card.get("licence", ""))
        self._norms: OrderedDict[str, PixelNormalisation] = OrderedDict()
        self._lock = threading.Lock()

    def embedding_seconds(self, height: int, width: int) -> float | None:
        return None          # no embedding: each click runs the small model on its window

    def prepare(self, image_id: str, image: np.ndarray, cancel: CancelToken | None = None) -> None:
        if self.is_prepared(image_id):
            return
        norm = image_norm(np.asarray(image), self.model.channels)
        with self._lock:
            self._norms[image_id] = norm
            while len(self._norms) > 8:
                self._norms.popitem(last=False)

    def is_prepared(self, image_id: str) -> bool:
        with self._lock:
            return image_id in self._norms

    def propose(self, image_id: str, image: np.ndarray, prompt: ClickPrompt,
                cancel: CancelToken | None = None) -> np.ndarray:
        self.prepare(image_id, image, cancel)
        with self._lock:
            norm = self._norms[image_id]
        return self.model.propose(_without_alpha(image), norm, prompt, cancel)


def _without_alpha(image: np.ndarray) -> np.ndarray:
    """A view of the image without alpha (no whole-image copy: window_input converts the crop)."""
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] in (2, 4):      # alpha never counts
        a = a[..., : a.shape[2] - 1]
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    return a


def click_runs(project_root: Path | str | None) -> list[Path]:
    """Click-model runs to answer clicks, newest first: the project's, then the bundled starters."""
    from segstudio.ml.cards import list_run_cards

    found: list[Path] = []
    if project_root is not None:
        found += [Path(c["run_dir"]) for c in list_run_cards(click_runs_dir(project_root))
                  if not c["broken"] and c.get("kind") == CLICK_KIND and c["has_checkpoint"]]
    found += [Path(c["run_dir"]) for c in sorted(list_run_cards(starter_models()),
                                                   key=lambda c: c["run_dir"])
              if not c["broken"] and c.get("kind") == CLICK_KIND and c["has_checkpoint"]]
    return found

