"""Models: predict, evaluate, train, doctor, export-model."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from segstudio.cli.base import command, err

# -- predict / evaluate --------------------------------------------------------------------------
def _add_tiling(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tile", type=int, default=256, help="tile size in pixels (default 256)")
    p.add_argument("--overlap", type=float, default=0.25, help="tile overlap, 0..1 (default 0.25)")
    p.add_argument("--batch", type=int, default=8, help="tiles per forward pass (default 8)")


def _tile_options(args: argparse.Namespace):
    from segstudio.ml.predict import TileOptions

    return TileOptions(tile=args.tile, overlap=args.overlap, batch_size=args.batch)


def _add_predict(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", type=Path, help="project folder, folder of images, or one image")
    p.add_argument("--run", required=True,
                   help="run id under PROJECT/runs, 'latest', or the path of a run folder")
    p.add_argument("--out", type=Path, required=True, help="folder for the masks")
    p.add_argument("--probabilities", action="store_true",
                   help="also write ID.probs.npy: (classes, h, w) float16 probabilities")
    _add_tiling(p)


def _raising(error: Exception):
    def read():
        raise error
    return read


def _prediction_sources(source: Path, out: Path):
    """(id, label, read() -> ndarray) for a project's images or a folder's image files."""
    from segstudio.core.names import slug
    from segstudio.io.images import is_supported, probe, read_image
    from segstudio.io.project import Project

    if (source / "project.json").is_file():
        project = Project.open(source)
        return source, [(e.id, e.display_name, lambda e=e: project.read_image(e).data)
                        for e in project.images]
    out = out.resolve()
    files = ([source] if source.is_file() else
             sorted(f for f in source.rglob("*") if f.is_file() and is_supported(f)
                    and out not in f.resolve().parents))       # not our own earlier masks
    items = []
    for f in files:
        rel = f.name if source.is_file() else f.relative_to(source).as_posix()
        stem = slug(rel.rsplit(".", 1)[0])          # named as a project would name it
        try:
            infos = probe(f)
        except Exception as e:   # an unreadable file is reported, the others still predicted
            items.append((stem, rel, _raising(e)))
            continue
        for info in infos:
            iid = stem if info.frame is None else f"{stem}_{info.frame:03d}"
            items.append((iid, rel, lambda f=f, fr=info.frame: read_image(f, fr).data))
    return None, items


@command("predict", "predict masks for a project or a folder of images with a trained run")(
    _add_predict)
def _run_predict(args: argparse.Namespace) -> int:
    import numpy as np

    from segstudio.core.ranking import uncertainty_score
    from segstudio.io.atomic import atomic_write_bytes, atomic_write_json
    from segstudio.io.masks import encode_mask_png
    from segstudio.ml.objects import write_object_ids
    from segstudio.io.project import ProjectError
    from segstudio.ml.predict import predict_tiled
    from segstudio.ml.runs import RunError, load_run_model

    if not args.source.exists():
        err(f"{args.source} does not exist")
        return 2
    from segstudio.io.outdir import OutputFolderError, check_output_folder

    try:
        project_root, items = _prediction_sources(args.source, args.out)
        check_output_folder(args.out, protect=[project_root] if project_root else [],
                            overwrite=False, marker="predictions.json", marker_key=None,
                            what="prediction folder", replaces=False)
        loaded = load_run_model(project_root, args.run)
        options = _tile_options(args)
    except (ProjectError, RunError, ValueError, OutputFolderError) as e:
        err(str(e))
        return 2
    if not items:
        err(f"{args.source} holds no images")
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    summary, failed = [], 0
    for k, (iid, label, read) in enumerate(items, start=1):
        try:
            image = read()
        except Exception as e:
            err(f"{label}: {e}")
            failed += 1
            continue
        pred = predict_tiled(loaded.model, image, loaded.normalise, options,
                             probabilities=args.probabilities, objects=loaded.objects)
        atomic_write_bytes(args.out / f"{iid}.png", encode_mask_png(pred.labels))
        row = {"id": iid, "source": label, "mask": f"{iid}.png",
               "height": int(image.shape[0]), "width": int(image.shape[1])}
        if pred.objects is not None:
            row["objects"] = write_object_ids(args.out, iid, pred.objects)
            row["object_count"] = int(pred.objects.max(initial=0))
        if pred.probabilities is not None:
            np.save(args.out / f"{iid}.probs.npy", pred.probabilities)
            row["probabilities"] = f"{iid}.probs.npy"
        assert pred.entropy is not None and pred.margin is not None
        score = uncertainty_score(iid, pred.entropy, pred.margin)
        row.update(mean_entropy=round(score.mean_entropy, 6),
                   mean_margin=round(score.mean_margin, 6))
        summary.append(row)
        print(f"[{k}/{len(items)}] {label} -> {args.out / row['mask']}", file=sys.stderr)
    atomic_write_json(args.out / "predictions.json", {
        "run": str(args.run), "classes": [{"id": c.id, "name": c.name, "color": c.color}
                                          for c in loaded.classes], "images": summary})
    print(f"wrote {len(summary)} mask(s) to {args.out}" + (f"; {failed} failed" if failed else ""))
    return 1 if failed else 0


def _add_evaluate(p: argparse.ArgumentParser) -> None:
    p.add_argument("project", type=Path)
    p.add_argument("--run", required=True,
                   help="run id under PROJECT/runs, 'latest', or the path of a run folder")
    p.add_argument("--split", default="val", choices=["train", "val", "test", "all"],
                   help="which labelled images to measure (default: val)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--exclude-background", action="store_true",
                   help="leave class 0 out of the class means")
    p.add_argument("--objects", default=None, metavar="IDS",
                   help="comma-separated class ids to count as objects (matched one-to-one "
                        "at IoU >= 0.5; AP 0.5-0.95, PQ); default: the run's object classes "
                        "(their object ids), else class 1 of a background/one-class project "
                        "(connected regions); 'none' turns it off")
    _add_tiling(p)


@command("evaluate", "measure a trained run on the project's labelled images, per class")(
    _add_evaluate)
def _run_evaluate(args: argparse.Namespace) -> int:
    import json

    from segstudio.io.project import Project, ProjectError
    from segstudio.ml.evaluate import evaluate_project
    from segstudio.ml.runs import RunError, load_run_model

    objects = None
    try:
        if args.objects is not None:
            objects = () if args.objects == "none" else tuple(
                int(v) for v in args.objects.split(",") if v.strip())
    except ValueError:
        err(f"--objects takes class ids like 1,3 or 'none', got {args.objects!r}")
        return 2
    try:
        project = Project.open(args.project)
        loaded = load_run_model(project.root, args.run)
        options = _tile_options(args)
    except (ProjectError, RunError, ValueError) as e:
        err(str(e))
        return 2
    report = evaluate_project(project, loaded.model, loaded.normalise, loaded.classes,
                              split=args.split,
                              options=options, instance_classes=objects,
                              objects=loaded.objects,
                              exclude_from_mean=(0,) if args.exclude_background else ())
    if args.json:
        print(json.dumps(report.as_dict(), indent=1))
    else:
        print(f"run {args.run} on {project.name}, split {args.split}")
        print(report.format_table())
        if report.instances:
            print(report.format_objects())
    if not report.images:
        err(f"no labelled images in split {args.split!r}; nothing was measured")
        return 1
    return 0


# -- plan and train ------------------------------------------------------------------------------
def _add_plan_settings(p: argparse.ArgumentParser) -> None:
    """The settings the plan decides unless given (segstudio.ml.plan)."""
    p.add_argument("--batch-size", type=int, default=None, help="default: from the plan")
    p.add_argument("--patch-size", type=int, default=None, help="default: from the plan")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--working-size", type=int, default=None, metavar="PX",
                      help="resample every image to this longer side (default: from the plan)")
    size.add_argument("--working-scale", type=float, default=None, metavar="F",
                      help="resample every image by this factor; 1 = full resolution")
    for flag, what in (("flip-h", "left-right mirroring"), ("flip-v", "up-down mirroring"),
                       ("rot90", "90-degree rotations")):
        p.add_argument(f"--{flag}", action=argparse.BooleanOptionalAction, default=None,
                       help=f"{what} on or off (default: the plan, off where it would swap "
                            f"labels)")
    p.add_argument("--depth", type=int, default=None,
                   help="U-Net depth (default: the preset's, deeper for large objects)")
    p.add_argument("--normalisation", default=None, choices=["percentile", "meanstd", "clip"],
                   help="default: by modality (clip + z-score for CT, per image otherwise)")


def _add_plan(p: argparse.ArgumentParser) -> None:
    p.add_argument("project", type=Path, help="project folder")
    p.add_argument("--preset", default=None, help="model preset: fast (default), strong, tiny")
    p.add_argument("--device", default=None, help="plan for this device: auto (default), cpu, "
                   "cuda, ...")
    p.add_argument("--config", type=Path, help="TOML file with a [train] table")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    _add_plan_settings(p)


@command("plan", "show the training plan derived from a project's labelled images, "
                 "without training")(_add_plan)
def _run_plan(args: argparse.Namespace) -> int:
    import json

    from segstudio.io.images import ImageReadError
    from segstudio.io.project import Project, ProjectError
    from segstudio.ml.data import project_plan, read_labelled

    try:
        cfg = train_config_from_args(args)
        project = Project.open(args.project)
        items = read_labelled(project)
    except (ValueError, OSError, ProjectError, ImageReadError) as e:
        err(str(e))
        return 2
    if not items:
        err(f"{args.project}: no labelled images in the train or val split; label some, then "
            f"plan again")
        return 1
    device = cfg.device
    if device == "auto":
        device = "cuda" if _cuda_available() else "cpu"
    plan = project_plan(items, project.classes, cfg, device=device)
    if args.json:
        print(json.dumps(plan.to_dict(), indent=1))
    else:
        fp = plan.fingerprint
        print(f"plan for {project.name}: {fp['images']} labelled image(s), "
              f"{fp['height'][0]}-{fp['height'][1]} x {fp['width'][0]}-{fp['width'][1]} px, "
              f"{fp['modality']}")
        for line in plan.lines():
            print(f"  {line}")
    return 0


def _cuda_available() -> bool:
    """Without importing torch when it is not installed or there is no driver."""
    import importlib.util

    if importlib.util.find_spec("torch") is None or not os.path.exists("/proc/driver/nvidia"):
        return False
    import torch
    return bool(torch.cuda.is_available())


def _add_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("project", type=Path, help="project folder")
    p.add_argument("--preset", default=None, help="model preset: fast (default), strong, tiny")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--minutes", type=float, default=None, help="time budget (stops at whichever "
                   "of --epochs and --minutes comes first)")
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:N, mps")
    p.add_argument("--resume", metavar="RUN", help="continue a run (id or folder) from its last.pt")
    p.add_argument("--from", dest="init_from", metavar="RUN",
                   help="fine-tune: start from a run's best weights (classes may have been added)")
    p.add_argument("--config", type=Path, help="TOML file with a [train] table of TrainConfig "
                   "fields (flags override it)")
    _add_plan_settings(p)
    p.add_argument("--steps-per-epoch", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    p.add_argument("--compile", action="store_true", default=None,
                   help="torch.compile the training step (slower start, often faster on CUDA)")
    p.add_argument("--quiet", action="store_true", help="no progress bar, only the result")


def train_config_from_args(args: argparse.Namespace):
    """TrainConfig from --config (a [train] table) then the flags; unknown keys are errors."""
    import dataclasses

    from segstudio.ml.train import TrainConfig

    values: dict = {}
    if args.config:
        import tomllib   # Python 3.11+

        table = tomllib.loads(args.config.read_text(encoding="utf-8"))
        values.update(table.get("train", table))
    for flag in ("preset", "epochs", "minutes", "device", "batch_size", "patch_size",
                 "steps_per_epoch", "lr", "seed", "threads", "compile", "working_size",
                 "working_scale", "flip_h", "flip_v", "rot90", "normalisation", "depth"):
        if getattr(args, flag, None) is not None:
            values[flag] = getattr(args, flag)
    return TrainConfig.from_dict(dataclasses.asdict(TrainConfig()) | values)


class ProgressBar:
    """One rewritten line on a terminal; one line per epoch otherwise (logs, CI)."""

    def __init__(self, stream=None, width: int = 28) -> None:
        import time

        self._time = time
        stream = stream or sys.stderr
        self._stream, self._width = stream, width
        self._start = time.perf_counter()
        self._tty = stream.isatty()
        self._last = 0.0

    def __call__(self, p) -> None:
        from segstudio.ml.events import EpochDone, StepDone, TrainFinished

        frac = p.done / p.total if p.total else 0.0
        elapsed = self._time.perf_counter() - self._start
        eta = f"ETA {_clock(elapsed * (1 - frac) / frac)}" if frac > 0.01 else "ETA --:--"
        detail, line_done = "", False
        match p:
            case StepDone(loss=loss):
                detail = f" loss {loss:.4f}"
            case EpochDone(scores=scores):
                dice = scores.get("mean_dice", float("nan"))   # NaN: no foreground labelled
                detail = (f" loss {scores['loss']:.4f}" if "loss" in scores else "") + (
                    f" val Dice {dice:.3f}" if dice == dice else " no val score")
                line_done = True
            case TrainFinished():
                line_done = True
        if self._tty:
            now = self._time.perf_counter()
            if now - self._last < 0.1 and not line_done and p.done < p.total:
                return
            self._last = now
            n = int(frac * self._width)
            line = (f"\r[{'#' * n}{'.' * (self._width - n)}] {frac:4.0%} {p.message}{detail} "
                    f"{_clock(elapsed)} {eta}")
            self._stream.write(line[:160].ljust(100))
            if line_done:
                self._stream.write("\n")
        elif not isinstance(p, StepDone):      # logs and CI: epochs and stages, not steps
            self._stream.write(f"{frac:4.0%} {p.message} ({_clock(elapsed)}, {eta})\n")
        self._stream.flush()


def _clock(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60:02d}:{seconds % 60:02d}"


@command("train", "train a model on a project's labelled images")(_add_train)
def _run_train(args: argparse.Namespace) -> int:
    rc = _train(args)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # Under torchrun, gloo's worker threads can abort interpreter finalization
        # ("terminate called without an active exception", SIGABRT) after the process group
        # is destroyed; the run is complete on disk by now, so leave without that teardown.
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(rc)
    return rc


def _train(args: argparse.Namespace) -> int:
    import signal

    from segstudio.core.jobs import Cancelled, CancelToken
    from segstudio.io.project import Project, ProjectError
    from segstudio.ml.allocator import tune_allocator

    tune_allocator()
    from segstudio.ml.checkpoint import CheckpointError
    from segstudio.ml.data import DataError
    from segstudio.ml.device import DeviceError
    from segstudio.ml.distributed import is_main_process, quiet_other_ranks
    from segstudio.ml.models import ModelError
    from segstudio.ml.train import TrainingError, cancelled_message, describe_score, train

    # under torchrun every rank runs this command; rank 0 alone prints, logs and writes
    quiet_other_ranks()
    main_rank = is_main_process()

    try:
        cfg = train_config_from_args(args)
        project = Project.open(args.project)
    except (ValueError, OSError, ProjectError) as e:
        err(str(e))
        return 2
    token = CancelToken()

    def on_sigint(_sig, _frame):      # first Ctrl-C stops cleanly after the step; second kills
        if token.cancelled:
            raise KeyboardInterrupt
        print("\nstopping after this step (Ctrl-C again to abort)...", file=sys.stderr)
        token.cancel()

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        result = train(project, cfg, resume=args.resume, init_from=args.init_from,
                       on_progress=None if args.quiet or not main_rank else ProgressBar(),
                       cancel=token)
    except Cancelled as e:
        if main_rank:
            err(cancelled_message(e))
        return 130
    except (TrainingError, DataError, CheckpointError, DeviceError, ModelError,
            FileNotFoundError) as e:
        err(str(e) if main_rank else f"rank {os.environ.get('RANK')}: {e}")
        return 1
    finally:
        signal.signal(signal.SIGINT, previous)
    if not main_rank:
        return 0
    for w in result.warnings:
        print(f"warning: {w}", file=sys.stderr)
    best = result.best_metrics
    print(f"run: {result.run_dir}")
    print(f"status: {result.status} after {result.epochs} epochs, {result.steps} steps, "
          f"{result.elapsed_s:.0f} s; best epoch {result.best_epoch}")
    score = describe_score(best)
    if best and score.startswith("mean Dice"):
        per_class = ", ".join(f"{k[5:]} {v:.3f}" for k, v in best.items()
                              if k.startswith("dice:") and v == v)
        print(f"validation: {score}, mean IoU {best['mean_iou']:.3f} "
              f"(Dice per class: {per_class})")
    else:
        print(f"validation: {score}")
    return 0


# -- doctor --------------------------------------------------------------------------------------
def _add_doctor(p: argparse.ArgumentParser) -> None:
    pass


@command("doctor", "say which device trains and, if no GPU is used, why and what to do")(_add_doctor)
def _run_doctor(args: argparse.Namespace) -> int:
    from segstudio.ml.allocator import allocator_report
    from segstudio.ml.device import doctor
    from segstudio.ui.app import window_report     # no Qt import: checks the libraries Qt needs

    print(doctor())
    print(allocator_report())
    print(window_report())
    return 0


# -- export-model --------------------------------------------------------------------------------
def _add_export_model(p: argparse.ArgumentParser) -> None:
    p.add_argument("project", type=Path, help="project folder")
    p.add_argument("--run", default="latest", help="run id, 'latest' (default) or a run folder")
    p.add_argument("--out", type=Path, required=True, help="folder to write (model.pt, model.onnx, model_card.json)")
    p.add_argument("--no-onnx", action="store_true", help="only the checkpoint and model card")
    p.add_argument("--overwrite", action="store_true")


@command("export-model", "export a trained run: checkpoint, model card and ONNX")(_add_export_model)
def _run_export_model(args: argparse.Namespace) -> int:
    from segstudio.ml.export_model import ModelExportError, export_run
    from segstudio.ml.export_onnx import OnnxExportError
    from segstudio.ml.runs import RunError

    try:
        summary = export_run(args.project, args.run, args.out, onnx=not args.no_onnx,
                             overwrite=args.overwrite)
    except (ModelExportError, OnnxExportError, RunError, OSError) as e:
        err(str(e))
        return 2
    onnx = summary["onnx"]
    check = ""
    if onnx:
        check = (f"; ONNX checked with onnxruntime, max |diff| {onnx['max_abs_diff']:.2e}"
                 if onnx["checked_with_onnxruntime"] else "; ONNX written (onnxruntime not installed: not checked)")
    print(f"exported run {summary['run']} to {summary['out']}{check}")
    return 0
