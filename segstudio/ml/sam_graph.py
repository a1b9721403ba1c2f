"""What a Segment-Anything-style ONNX encoder + decoder pair expects, read from the graphs.

Exports differ (segment-anything's own script, labelme/osam, X-AnyLabeling, samexporter;
SAM, SAM 2.1, MobileSAM, EfficientViT-SAM): the encoder's input is called "image", "input_image",
"input" or "x", SAM 2 encoders return three feature maps under varying names, some decoders take
`orig_im_size` and some do not. So nothing is hard-coded but the prompt inputs' names
(point_coords, point_labels, mask_input, has_mask_input, orig_im_size), which every SAM-style
decoder shares; sizes come from the graph's shapes, names of the features are matched to the
decoder's inputs by name, then by shape. onnxruntime is imported here, lazily.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

PROMPT_INPUTS = ("point_coords", "point_labels", "mask_input", "has_mask_input", "orig_im_size")
DEFAULT_SIZE = 1024          # SAM's input side when a graph leaves it dynamic
INSTALL_HINT = "pip install onnxruntime (or: pip install 'segstudio[onnx]')"

_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16,
           "tensor(double)": np.float64, "tensor(uint8)": np.uint8, "tensor(int32)": np.int32,
           "tensor(int64)": np.int64}


class SamModelError(ValueError):
    """A SAM-style model file is missing, unreadable or not what its role needs."""


@dataclass(frozen=True)
class Port:
    """One graph input or output: name, shape (None for a dynamic dimension), numpy dtype."""

    name: str
    shape: tuple[int | None, ...]
    dtype: Any

    @classmethod
    def of(cls, node) -> Port:
        shape = tuple(d if isinstance(d, int) and d > 0 else None for d in (node.shape or ()))
        return cls(node.name, shape, _DTYPES.get(node.type, np.float32))

    def describe(self) -> str:
        dims = "x".join("?" if d is None else str(d) for d in self.shape)
        return f"'{self.name}' {dims or 'scalar'}"


def import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as e:
        raise SamModelError(f"SAM-style model files run with onnxruntime, which is not installed: "
                            f"{INSTALL_HINT}") from e
    return onnxruntime


def open_session(path: Path, role: str, threads: int | None = None):
    """An onnxruntime session on `path`; a missing or non-ONNX file says so in words."""
    ort = import_onnxruntime()
    path = Path(path)
    if not path.is_file():
        raise SamModelError(f"the SAM {role} file {path} does not exist; pick the {role} .onnx "
                            f"file of the model (a SAM-style model is two files, encoder and decoder)")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = int(threads)
    providers = [p for p in ort.get_available_providers()
                 if p in ("CUDAExecutionProvider", "CPUExecutionProvider")] or None
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as e:  # onnxruntime raises its own pybind classes (InvalidProtobuf, Fail, ...)
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise SamModelError(f"{path.name} is not an ONNX model onnxruntime can open ({first}); "
                            f"pick the {role} .onnx file of a SAM-style export") from e


def _is_decoder_like(inputs: list[Port]) -> bool:
    names = {p.name for p in inputs}
    return "point_coords" in names and "point_labels" in names


@dataclass(frozen=True)
class EncoderSpec:
    """The encoder's one image input and its outputs (the image's features)."""

    image: Port
    outputs: tuple[Port, ...]
    channels_last: bool      # (h, w, 3) input: the graph resizes/normalises itself
    size: int                # the side the image is resized to (longest side or square)

    @classmethod
    def read(cls, session, path: Path, size_hint: int | None = None) -> EncoderSpec:
        inputs = [Port.of(n) for n in session.get_inputs()]
        outputs = tuple(Port.of(n) for n in session.get_outputs())
        if _is_decoder_like(inputs):
            raise SamModelError(f"{path.name} is a SAM decoder (it takes point_coords), given as "
                                f"the encoder; pick the encoder file (its input is the image)")
        if len(inputs) != 1:
            raise SamModelError(f"{path.name} does not look like a SAM image encoder: it takes "
                                f"{len(inputs)} inputs ({', '.join(p.describe() for p in inputs)}), "
                                f"an encoder takes one image")
        image = inputs[0]
        shape = image.shape
        if len(shape) == 4 and shape[1] in (3, None):
            side = shape[2] if shape[2] == shape[3] else None
            channels_last = False
        elif len(shape) == 3 and shape[2] in (3, None):
            side, channels_last = None, True
        else:
            raise SamModelError(f"{path.name} does not look like a SAM image encoder: its input "
                                f"{image.describe()} is neither 1x3xHxW nor HxWx3")
        return cls(image, outputs, channels_last, int(side or size_hint or DEFAULT_SIZE))


@dataclass(frozen=True)
class DecoderSpec:
    """The decoder's inputs by role and which output is which."""

    inputs: tuple[Port, ...]
    features: dict[str, str]        # decoder input name -> encoder output name
    masks: str
    scores: str | None
    low_res: str | None

    def port(self, name: str) -> Port | None:
        return next((p for p in self.inputs if p.name == name), None)

    @property
    def mask_input_shape(self) -> tuple[int, int] | None:
        """(h, w) of the low-resolution mask a decoder takes back, None when it takes none."""
        p = self.port("mask_input")
        if p is None:
            return None
        h, w = p.shape[-2:] if len(p.shape) >= 2 else (None, None)
        return (h, w) if h and w else None

    @classmethod
    def read(cls, session, path: Path, encoder: EncoderSpec) -> DecoderSpec:
        inputs = tuple(Port.of(n) for n in session.get_inputs())
        outputs = [Port.of(n) for n in session.get_outputs()]
        if not _is_decoder_like(list(inputs)):
            looks = ("it looks like an encoder (its input is an image)"
                     if len(inputs) == 1 and len(inputs[0].shape) in (3, 4) else
                     f"its inputs are {', '.join(p.describe() for p in inputs)}")
            raise SamModelError(f"{path.name} is not a SAM decoder: it takes no point_coords / "
                                f"point_labels, {looks}; pick the decoder file of the same model")
        feature_inputs = [p for p in inputs if p.name not in PROMPT_INPUTS]
        features = match_features(feature_inputs, list(encoder.outputs), path)
        names = [p.name for p in outputs]
        masks = "masks" if "masks" in names else next(
            (p.name for p in outputs if len(p.shape) == 4), None)
        if masks is None:
            raise SamModelError(f"{path.name} returns no masks (outputs: "
                                f"{', '.join(p.describe() for p in outputs)})")
        scores = next((n for n in ("iou_predictions", "scores", "iou_scores") if n in names), None)
        low_res = next((n for n in ("low_res_masks", "low_res_mask", "low_res_logits")
                        if n in names), None)
        return cls(inputs, features, masks, scores, low_res)


def _fits(a: tuple[int | None, ...], b: tuple[int | None, ...]) -> bool:
    return len(a) == len(b) and all(x is None or y is None or x == y for x, y in zip(a, b))


def match_features(wanted: list[Port], given: list[Port], path: Path) -> dict[str, str]:
    """Decoder feature input -> encoder output: same name first, then the one shape that fits."""
    if not wanted:
        raise SamModelError(f"{path.name} takes no image features (only prompts); it is not a "
                            f"SAM decoder")
    out: dict[str, str] = {}
    free = list(given)
    for p in wanted:
        same = next((g for g in free if g.name == p.name), None)
        if same is not None:
            out[p.name] = same.name
            free.remove(same)
    for p in wanted:
        if p.name in out:
            continue
        fitting = [g for g in free if _fits(g.shape, p.shape)]
        if len(fitting) == 1 or (len(fitting) > 1 and len(wanted) - len(out) == 1):
            out[p.name] = fitting[0].name
            free.remove(fitting[0])
    missing = [p for p in wanted if p.name not in out]
    if missing:
        raise SamModelError(
            f"the encoder's outputs ({', '.join(g.describe() for g in given)}) do not give the "
            f"decoder {path.name} its inputs {', '.join(p.describe() for p in missing)}; are the "
            f"encoder and decoder files of the same model?")
    return out


@dataclass(frozen=True)
class Description:
    """The optional JSON/YAML beside a model pair (X-AnyLabeling writes a YAML config)."""

    name: str = ""
    licence: str = ""
    size: int | None = None          # input_size / target_size: the side the image is resized to
    resize: str | None = None        # "longest" (pad) | "stretch"; None = from the graph
    mask_threshold: float = 0.0
    encoder: Path | None = None
    decoder: Path | None = None
    path: Path | None = None


def read_description(path: Path) -> Description:
    """Name, licence and sizes from a model's JSON or YAML description; unknown keys are ignored."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise SamModelError(f"cannot read the model description {path.name}: {e}") from e
    except Exception as e:  # yaml.YAMLError and friends
        raise SamModelError(f"cannot read the model description {path.name}: {e}") from e
    if not isinstance(data, dict):
        raise SamModelError(f"the model description {path.name} is not a mapping of fields")

    def text_of(*keys: str) -> str:
        for k in keys:
            v = data.get(k)
            if isinstance(v, (str, int, float)) and str(v).strip():
                return str(v).strip()
        return ""

    def file_of(*keys: str) -> Path | None:
        v = text_of(*keys)
        if not v or "://" in v:      # a download address: never fetched, the user brings files
            return None
        p = Path(v)
        return p if p.is_absolute() else path.parent / p

    size = text_of("input_size", "target_size", "image_size")
    resize = text_of("resize").lower() or None
    if resize not in (None, "longest", "stretch"):
        raise SamModelError(f"{path.name}: resize must be 'longest' or 'stretch', not {resize!r}")
    try:
        threshold = float(text_of("mask_threshold") or 0.0)
        side = int(float(size)) if size else None
    except ValueError as e:
        raise SamModelError(f"{path.name}: {e}") from e
    return Description(name=text_of("display_name", "name", "model_name"),
                       licence=text_of("licence", "license"), size=side, resize=resize,
                       mask_threshold=threshold,
                       encoder=file_of("encoder_model_path", "encoder"),
                       decoder=file_of("decoder_model_path", "decoder"), path=path)


def find_description(encoder: Path, decoder: Path) -> Path | None:
    """A .json/.yaml/.yml beside the encoder that names it, or shares its stem."""
    encoder, decoder = Path(encoder), Path(decoder)
    folder = encoder.parent
    stems = {model_stem(encoder), model_stem(decoder), encoder.stem}
    candidates = sorted(p for p in folder.glob("*") if p.suffix.lower() in (".json", ".yaml", ".yml"))
    for p in candidates:
        if p.stem in stems:
            return p
    for p in candidates:
        try:
            head = p.read_text(encoding="utf-8", errors="replace")[:20000]
        except OSError:
            continue
        if encoder.name in head and decoder.name in head:
            return p
    return None


def model_stem(path: Path) -> str:
    """'sam_vit_b.encoder.onnx' -> 'sam_vit_b': the name both files of a pair share."""
    stem = Path(path).name
    for suffix in (".onnx",):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
    for tail in (".encoder", "_encoder", "-encoder", ".decoder", "_decoder", "-decoder"):
        if stem.lower().endswith(tail):
            return stem[: -len(tail)]
    return stem


def partner_of(path: Path) -> Path | None:
    """The other file of a pair by name: '...encoder...' <-> '...decoder...' in the same folder."""
    path = Path(path)
    name = path.name
    for a, b in (("encoder", "decoder"), ("decoder", "encoder"),
                 ("Encoder", "Decoder"), ("Decoder", "Encoder")):
        if a in name:
            other = path.with_name(name.replace(a, b))
            if other.is_file():
                return other
    return None
