"""Export a trained segmentation model to ONNX, checked against onnxruntime when installed.

The graph takes `image` (batch, channels, height, width) float32 and returns `logits`
(batch, classes, height, width); batch, height and width are dynamic. The check runs the
same random input through torch and onnxruntime and requires
|onnx - torch| <= atol + rtol * |torch| everywhere (defaults 1e-4 and 1e-3: float32
convolutions summed in a different order differ by ~1e-6 relative).
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


class OnnxExportError(Exception):
    """The model could not be exported, or the exported graph disagrees with torch."""


@dataclass(frozen=True)
class OnnxExportResult:
    path: Path
    opset: int
    checked: bool                    # False when onnxruntime is not installed
    max_abs_diff: float | None       # largest |onnx - torch| on the check input


def export_onnx(module: torch.nn.Module, in_channels: int, path: Path | str,
                opset: int = DEFAULT_OPSET, *, size: tuple[int, int] = (64, 64),
                check: bool = True, atol: float = ATOL, rtol: float = RTOL) -> OnnxExportResult:
    """Write `module` as ONNX to `path` (atomically) and check it against onnxruntime.

    `size` is the (height, width) traced; pick a multiple of the model's down-sampling
    factor. The check feeds a batch of 2 of that size.
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
        if check:
            diff = _check(module, tmp, in_channels, size, device, atol, rtol)
        else:
            diff = None
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        module.train(was_training)
    log.info("exported ONNX %s (opset %d, max |diff| %s)", path, opset, diff)
    return OnnxExportResult(path, opset, diff is not None, diff)


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


def _check(module: torch.nn.Module, onnx_path: str, in_channels: int, size: tuple[int, int],
           device: torch.device, atol: float, rtol: float) -> float | None:
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
    x = np.random.default_rng(0).standard_normal((2, in_channels, *size)).astype(np.float32)
    with torch.no_grad():
        want = module(torch.from_numpy(x).to(device)).float().cpu().numpy()
    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    got = session.run(["logits"], {"image": x})[0]
    if got.shape != want.shape:
        raise OnnxExportError(f"ONNX output has shape {got.shape}, torch {want.shape}")
    diff = np.abs(got - want)
    if not np.all(diff <= atol + rtol * np.abs(want)):
        raise OnnxExportError(f"ONNX output differs from torch by up to {float(diff.max()):.3g} "
                              f"(allowed {atol:g} + {rtol:g} x |value|)")
    return float(diff.max())
