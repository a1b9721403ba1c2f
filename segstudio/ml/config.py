"""Training settings: `TrainConfig` and the model presets, without torch.

The window builds and checks a `TrainConfig` when Train is pressed, before any job starts and
before torch is imported; the CLI builds the same dataclass from `--config` and its flags. Every
refusal is a `ConfigError` naming the setting, what it holds and what it takes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

SCHEDULES = ("cosine", "onecycle")
# per image (normalise.PER_IMAGE), or CT's clip + z-score of the foreground; None: the plan picks
TRAIN_NORMALISATIONS = ("percentile", "meanstd", "clip")

# Named model shapes the app and CLI offer; each is a registered model plus its arguments.
# "fast" trains a usable nuclei model in minutes on two CPU cores; "strong" is ~4x the compute.
PRESETS: dict[str, dict[str, Any]] = {
    "fast": {"model": "unet", "depth": 3, "width": 16, "norm": "batch"},
    "strong": {"model": "unet", "depth": 4, "width": 32, "norm": "batch"},
    "tiny": {"model": "tiny-fcn"},
}
PRESET_LABELS = {"fast": "Fast (small U-Net)", "strong": "Strong (bigger U-Net)",
                 "tiny": "Tiny (a quick look)"}
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
# keys older runs stored that no longer shape a run; read and dropped so they still resume
_RETIRED = ("val_tile",)


class ConfigError(ValueError):
    """A training setting that cannot be used; the message names it and what it takes."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that shapes a run; stored in every checkpoint and model card."""

    preset: str = "fast"                 # PRESETS: "fast", "strong", "tiny"
    model: str | None = None             # overrides the preset's registered model name
    depth: int | None = None             # U-Net overrides of the preset
    width: int | None = None
    norm: str | None = None
    epochs: int = 40
    minutes: float | None = None         # time budget; whichever of epochs/minutes ends first
    steps_per_epoch: int = 50
    # None: the plan (segstudio.ml.plan) decides from the labelled data, and says why
    batch_size: int | None = None
    patch_size: int | None = None
    working_size: int | None = None      # every image resampled to this longer side (px)
    working_scale: float | None = None   # or one factor for all (1: full resolution)
    lr: float = 3e-3
    weight_decay: float = 1e-4
    schedule: str = "cosine"             # linear warm-up then cosine; or "onecycle"
    warmup: float = 0.05                 # fraction of the run spent warming up
    dice_weight: float = 1.0             # loss = CE + dice_weight * soft Dice
    class_weights: tuple[float, ...] | str | None = None   # CE weight per class id, or "balanced"
    normalisation: str | None = None     # TRAIN_NORMALISATIONS; None: by modality (the plan)
    augment: bool = True                 # False: no augmentation at all
    flip_h: bool | None = None           # left-right mirror; None: off for lateral classes
    flip_v: bool | None = None           # up-down mirror; None: off for classes bound to a side
    rot90: bool | None = None            # 90-degree rotations; None: only with both mirrors
    label_bias: float = 0.8              # share of patches centred on a labelled pixel
    patience: int | None = 10            # epochs without gain (from half the run on); 0/None: never
    device: str = "auto"
    amp: bool = True                     # mixed precision, CUDA only
    cpu_bf16: bool = False               # bf16 autocast on CPUs with AMX (docs/training.md)
    channels_last: bool = True
    compile: bool = False                # torch.compile the training forward (slower start)
    threads: int | None = None           # torch CPU threads; None keeps torch's default
    seed: int = 0

    def __post_init__(self) -> None:
        problem = self._problem()
        if problem:
            raise ConfigError(problem)

    def _problem(self) -> str | None:
        if self.preset not in PRESETS:
            return f"unknown preset {self.preset!r}; known: {sorted(PRESETS)}"
        if self.schedule not in SCHEDULES:
            return f"unknown schedule {self.schedule!r}; known: {list(SCHEDULES)}"
        if self.normalisation is not None and self.normalisation not in TRAIN_NORMALISATIONS:
            return (f"unknown normalisation {self.normalisation!r}; known: "
                    f"{list(TRAIN_NORMALISATIONS)}")
        for name in ("epochs", "steps_per_epoch", "batch_size"):
            value = getattr(self, name)
            if value is None and name == "batch_size":
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                return f"{name} must be a whole number of at least 1, got {value!r}"
        if self.patch_size is not None and (not isinstance(self.patch_size, int)
                                            or self.patch_size < 16):
            return f"patch_size must be a whole number of at least 16, got {self.patch_size}"
        if self.working_size is not None and self.working_scale is not None:
            return ("give working_size (a longer side in px) or working_scale (a factor), "
                    "not both")
        if self.working_size is not None and (not isinstance(self.working_size, int)
                                              or self.working_size < 16):
            return f"working_size must be a whole number of pixels, at least 16, got " \
                   f"{self.working_size!r}"
        if self.working_scale is not None and not 0.0 < self.working_scale <= 8.0:
            return f"working_scale must be a factor in (0, 8], got {self.working_scale}"
        for name in ("flip_h", "flip_v", "rot90"):
            if getattr(self, name) not in (None, True, False):
                return f"{name} is true, false or unset (the plan decides), got " \
                       f"{getattr(self, name)!r}"
        if self.minutes is not None and not self.minutes > 0:
            return f"minutes must be positive (or unset for no time limit), got {self.minutes}"
        if not self.lr > 0:
            return f"lr (the learning rate) must be positive, got {self.lr}"
        if not 0.0 <= self.warmup < 1.0:
            return f"warmup is a fraction of the run in [0, 1), got {self.warmup}"
        if not 0.0 <= self.label_bias <= 1.0:
            return f"label_bias is a share in [0, 1], got {self.label_bias}"
        if self.patience is not None and self.patience < 0:
            return (f"patience is a number of epochs (0 or unset: never stop early), got "
                    f"{self.patience}")
        if self.threads is not None and self.threads < 1:
            return f"threads must be at least 1 (or unset), got {self.threads}"
        if not isinstance(self.device, str) or not _DEVICE.match(self.device):
            return (f"unknown device {self.device!r}; use auto, cpu, cuda, cuda:N or mps")
        if isinstance(self.class_weights, str) and self.class_weights != "balanced":
            return f"class_weights is a list of numbers or 'balanced', got {self.class_weights!r}"
        if isinstance(self.class_weights, tuple) and any(not w >= 0 for w in self.class_weights):
            return f"class_weights must not be negative, got {list(self.class_weights)}"
        return None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        """From a TOML table, the panel's values or a checkpoint's dict; unknown keys are errors."""
        names = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k not in _RETIRED}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown training setting(s) {unknown}; known: {sorted(names)}")
        if d.get("class_weights") is not None and not isinstance(d["class_weights"], str):
            try:
                d["class_weights"] = tuple(float(w) for w in d["class_weights"])
            except (TypeError, ValueError):
                raise ConfigError(f"class_weights is a list of numbers or 'balanced', got "
                                  f"{d['class_weights']!r}") from None
        try:
            return cls(**d)
        except TypeError as e:         # a string where a number belongs, and such
            raise ConfigError(f"training settings: {e}") from None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def model_spec(self) -> dict[str, Any]:
        """{'name': registered model, **its keyword arguments}."""
        spec = dict(PRESETS[self.preset])
        spec["name"] = self.model or spec.pop("model")
        spec.pop("model", None)
        for key in ("depth", "width", "norm"):
            if getattr(self, key) is not None:
                spec[key] = getattr(self, key)
        return spec


def check_config(values: Mapping[str, Any]) -> tuple[TrainConfig | None, str | None]:
    """(config, None), or (None, why not): what the Training panel calls when Train is pressed."""
    try:
        return TrainConfig.from_dict(values), None
    except (ConfigError, TypeError, ValueError) as e:
        return None, str(e)
