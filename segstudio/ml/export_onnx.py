"""Export a trained segmentation model to ONNX, checked against onnxruntime when installed.

The graph takes `image` (batch, channels, height, width) float32 and returns `logits`
(batch, classes, height, width); batch, height and width are dynamic. The check runs the
same random input through torch and onnxruntime at the traced size and at two sizes that are
no multiple of any down-sampling factor (255 x 301 and 100 x 100: a graph that froze a
size-dependent branch at the traced size fails there), and requires
|onnx - torch| <= atol + rtol * |torch| everywhere (defaults 1e-4 and 1e-3: float32
convolutions summed in a different order differ by ~1e-6 relative).

`metadata` (str -> str) goes into the file's metadata_props: the export of a run writes how
pixels become the input there (segstudio.ml.export_model.preprocessing), so a consumer with only
the .onnx file knows the channel rule, the normalisation and that the output is logits.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17
ATOL = 1e-4
RTOL = 1e-3
CHECK_SIZES = ((255, 301), (100, 100))     # odd, and no multiple of 2, 8 or 16


class OnnxExportError(Exception):
    """The model could not be exported, or the exported graph disagrees with torch."""


@dataclass(frozen=True)
class OnnxExportResult:
    path: Path
    opset: int
    checked: bool                    # False when onnxruntime is not installed
    max_abs_diff: float | None       # largest |onnx - torch| over the check inputs
    checked_sizes: tuple[tuple[int, int], ...] = ()    # (height, width) run through both


def export_onnx(module: torch.nn.Module, in_channels: int, path: Path | str,
                opset: int = DEFAULT_OPSET, *, size: tuple[int, int] = (64, 64),
                check: bool = True, atol: float = ATOL, rtol: float = RTOL,
                check_sizes: tuple[tuple[int, int], ...] = CHECK_SIZES,
                metadata: dict[str, str] | None = None) -> OnnxExportResult:
    """Write `module` as ONNX to `path` (atomically) and check it against onnxruntime.

    `size` is the (height, width) traced; pick a multiple of the model's down-sampling
    factor. The check feeds a batch of 2 of that size, then one image of each `check_sizes`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        device = next(module.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    was_training = module.training
    module.eval()
    dummy = torch.zeros(1, in_channels, *size, device=device)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        _export(module, dummy, tmp, opset)
        if metadata:
            _write_metadata(tmp, metadata)
        sizes = ((2, *size),) + tuple((1, *s) for s in check_sizes if tuple(s) != tuple(size))
        diff = _check(module, tmp, in_channels, sizes, device, atol, rtol) if check else None
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        module.train(was_training)
    log.info("exported ONNX %s (opset %d, max |diff| %s)", path, opset, diff)
    return OnnxExportResult(path, opset, diff is not None, diff,
                            tuple(s[1:] for s in sizes) if diff is not None else ())


def _write_metadata(onnx_path: str, metadata: dict[str, str]) -> None:
    """Set the file's metadata_props (what onnxruntime's `get_modelmeta().custom_metadata_map`
    returns)."""
    try:
        import onnx
    except ImportError:
        log.warning("the onnx package is not installed (`pip install onnx`); the ONNX file "
                    "carries no preprocessing notes (the model card has them)")
        return
    model = onnx.load(onnx_path)
    onnx.helper.set_model_props(model, {str(k): str(v) for k, v in metadata.items()})
    onnx.save(model, onnx_path)


def _export(module: torch.nn.Module, dummy: torch.Tensor, dest: str, opset: int) -> None:
    axes = {0: "batch", 2: "height", 3: "width"}
    kwargs = dict(input_names=["image"], output_names=["logits"], opset_version=opset,
                  dynamic_axes={"image": axes, "logits": axes})
    try:
        with warnings.catch_warnings():
            # the TorchScript exporter is deprecated in favour of the torch.export one, which
            # needs the extra onnxscript package; it still exports plain conv nets exactly
            warnings.simplefilter("ignore", DeprecationWarning)
            with torch.no_grad():
                torch.onnx.export(module, (dummy,), dest, dynamo=False, **kwargs)
    except TypeError:   # a torch without the `dynamo` switch
        with torch.no_grad():
            torch.onnx.export(module, (dummy,), dest, **kwargs)
    except Exception as e:
        raise OnnxExportError(f"could not export {type(module).__name__} to ONNX (opset "
                              f"{opset}): {e}") from e


def _check(module: torch.nn.Module, onnx_path: str, in_channels: int,
           sizes: tuple[tuple[int, int, int], ...], device: torch.device, atol: float,
           rtol: float) -> float | None:
    """Largest |onnx - torch| over random inputs of each (batch, height, width) in `sizes`."""
    try:
        import onnxruntime as ort
    except ImportError:
        log.info("onnxruntime is not installed (`pip install onnxruntime`); ONNX output not checked")
        return None
    try:
        import onnx

        onnx.checker.check_model(onnx_path)
    except ImportError:
        pass
    except Exception as e:
        raise OnnxExportError(f"the exported graph is not valid ONNX: {e}") from e
    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    worst = 0.0
    for batch, h, w in sizes:
        x = rng.standard_normal((batch, in_channels, h, w)).astype(np.float32)
        with torch.no_grad():
            want = module(torch.from_numpy(x).to(device)).float().cpu().numpy()
        try:
            got = session.run(["logits"], {"image": x})[0]
        except Exception as e:   # onnxruntime's own errors: a shape frozen at the traced size
            raise OnnxExportError(f"the exported graph fails on a {h} x {w} input (height x "
                                  f"width) that torch takes: {' '.join(str(e).split())[:300]}"
                                  ) from e
        if got.shape != want.shape:
            raise OnnxExportError(f"ONNX output for a {h} x {w} input has shape {got.shape}, "
                                  f"torch {want.shape}")
        diff = np.abs(got - want)
        if not np.all(diff <= atol + rtol * np.abs(want)):
            raise OnnxExportError(f"ONNX output differs from torch by up to "
                                  f"{float(diff.max()):.3g} on a {h} x {w} input (allowed "
                                  f"{atol:g} + {rtol:g} x |value|)")
        worst = max(worst, float(diff.max()))
    return worst
