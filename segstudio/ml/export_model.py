"""Exporting a trained run: its checkpoint and model card, and an ONNX file checked against torch."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path

from segstudio.core.jobs import CancelToken, Progress, ProgressFn
from segstudio.io.outdir import OutputFolderError, check_output_folder, swap_into_place
from segstudio.ml.runs import find_checkpoint, load_run_model, read_model_card, resolve_run_dir

log = logging.getLogger(__name__)


class ModelExportError(Exception):
    """The run cannot be exported; the message says why."""


def export_run(project_root: Path | str | None, run: str | Path, out: Path | str, *,
               onnx: bool = True, overwrite: bool = False, on_progress: ProgressFn | None = None,
               cancel: CancelToken | None = None) -> dict:
    """Write `out/` with model.pt, model_card.json and (optionally) model.onnx; returns a summary.

    Written into a temporary folder beside `out` and renamed at the end, like dataset exports.
    """
    cancel = cancel or CancelToken()
    run_dir = resolve_run_dir(project_root, run)
    protect = [Path(project_root)] if project_root is not None else []
    if (run_dir.parent.parent / "project.json").exists():     # a run folder of a project
        protect.append(run_dir.parent.parent)
    try:
        out = check_output_folder(out, protect=protect or [run_dir], overwrite=overwrite,
                                  marker="model_card.json", marker_key="exported",
                                  what="model export")
    except OutputFolderError as e:
        raise ModelExportError(str(e)) from None
    ckpt = find_checkpoint(run_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        report = on_progress or (lambda _p: None)
        report(Progress(0, 3, "copying the checkpoint"))
        shutil.copy2(ckpt, tmp / "model.pt")
        card = read_model_card(run_dir)
        summary = {"run": run_dir.name, "checkpoint": ckpt.name, "onnx": None}
        cancel.raise_if_cancelled()
        if onnx:
            report(Progress(1, 3, "writing ONNX"))
            from segstudio.ml.export_onnx import export_onnx

            model = load_run_model(project_root, run_dir).model
            in_channels = int(card.get("in_channels") or model_in_channels(model))
            notes = preprocessing(card, in_channels)
            result = export_onnx(model, in_channels, tmp / "model.onnx",
                                 metadata={f"segstudio.{k}": v for k, v in notes.items()})
            summary["onnx"] = {"file": "model.onnx", "opset": result.opset,
                               "checked_with_onnxruntime": result.checked,
                               "checked_sizes": [list(s) for s in result.checked_sizes],
                               "max_abs_diff": result.max_abs_diff,
                               "preprocessing": notes}
        cancel.raise_if_cancelled()
        card = {**card, "exported": summary}
        (tmp / "model_card.json").write_text(json.dumps(card, indent=2, allow_nan=False),
                                            encoding="utf-8")
        report(Progress(3, 3, "done"))
        swap_into_place(tmp, out)
        return {**summary, "out": str(out)}
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def channel_rule(in_channels: int) -> str:
    """How an image's bands become the model's channels (segstudio.ml.normalise.to_channels)."""
    if in_channels == 1:
        return ("1 channel: a grey image as it is; a colour image is the mean of R, G and B; "
                "an alpha channel is dropped")
    if in_channels == 3:
        return ("3 channels in R, G, B order (as the file stores them, not OpenCV's BGR); a grey "
                "image is repeated to 3 channels; an alpha channel is dropped")
    return (f"{in_channels} channels in the order the file stores them; an alpha channel "
            f"is dropped")


def preprocessing(card: dict, in_channels: int) -> dict[str, str]:
    """What a consumer of the ONNX file must do to an image, in words plus the stored rule:
    written into the file's metadata_props (as `segstudio.<key>`) and the model card."""
    import json

    from segstudio.ml.normalise import Normalisation

    raw = card.get("normalisation") if isinstance(card.get("normalisation"), dict) else {}
    scale = "images at their own resolution"
    try:
        norm = Normalisation.from_dict(raw, in_channels)
        described = norm.describe()
        working = getattr(norm, "working", None)       # the run's working scale, if any
        if working is not None and not working.native:
            scale = (f"{working.describe()}: resample the image (area averaging to shrink) "
                     f"before the rule above, and the logits back to the image's size")
    except (TypeError, ValueError) as e:
        described = f"unreadable in the model card ({e})"
    classes = [{"id": c.get("id"), "name": c.get("name")} for c in card.get("classes") or []
               if isinstance(c, dict)]
    return {
        "input": (f"'image': float32 (batch, {in_channels}, height, width); any height and "
                  f"width (the graph pads internally)"),
        "channels": channel_rule(in_channels),
        "normalisation": (f"{described}; statistics of the whole image after the channel "
                          f"rule, never of a tile"),
        "normalisation_rule": json.dumps(raw, allow_nan=False, default=str),
        "scale": scale,
        "output": ("'logits': float32 (batch, classes, height, width), raw scores before "
                   "softmax; argmax over axis 1 is the class id (one channel: a sigmoid logit "
                   "of class 1)"),
        "classes": json.dumps(classes, ensure_ascii=False),
    }


def model_in_channels(model) -> int:
    import torch

    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            return int(m.in_channels)
    raise ModelExportError("cannot tell the model's input channels")
