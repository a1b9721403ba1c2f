"""The fast path's pieces: pinned batches from the prefetch thread, torch.compile, CUDA AMP."""

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from segstudio.ml.data import PatchSampler, Prefetcher
from segstudio.ml.models import build_model
from segstudio.ml.runs import read_card
from segstudio.ml.train import SegLoss, TrainStep, train

from .test_cli_train import REPO

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_prefetcher_hands_over_host_tensors(tiny_data, tiny_cfg):
    step = TrainStep(build_model("tiny-fcn", 1, 2), SegLoss(2), tiny_cfg, torch.device("cpu"))
    sampler = PatchSampler(tiny_data.train, 32, 4, seed=3)
    expected = PatchSampler(tiny_data.train, 32, 4, seed=3).next_batch()
    stream = Prefetcher(sampler, transform=step.host_batch)
    try:
        x, y = next(stream)
    finally:
        stream.close()
    assert isinstance(x, torch.Tensor) and x.shape == (4, 1, 32, 32)
    assert np.array_equal(x.numpy(), expected[0]) and np.array_equal(y.numpy(), expected[1])
    xd, yd = step.to_device(x, y)
    assert yd.dtype == torch.int64 and xd.is_contiguous(memory_format=torch.channels_last)
    loss = step(xd, yd)
    assert np.isfinite(loss)


def test_compile_flag_reaches_the_cli_config():
    from segstudio import cli

    args = cli.build_parser().parse_args(["train", "p", "--compile"])
    assert cli.train_config_from_args(args).compile is True
    args = cli.build_parser().parse_args(["train", "p"])
    assert cli.train_config_from_args(args).compile is False


@pytest.mark.slow
def test_compiled_step_trains(tiny_data, tiny_cfg, tmp_path):
    result = train(tiny_data, replace(tiny_cfg, compile=True, epochs=1), runs_dir=tmp_path)
    card = read_card(result.run_dir)
    assert card["config"]["compile"] is True and result.steps == tiny_cfg.steps_per_epoch
    assert not any(k.startswith("_orig_mod") for k in torch.load(
        result.run_dir / "best.pt", weights_only=True)["state_dict"])


def _benchmark(*args: str) -> dict:
    proc = subprocess.run([sys.executable, "benchmarks/gpu_train.py", "--preset", "tiny",
                           "--batch", "2", "--patch", "32", "--steps", "1", "--warmup", "1",
                           "--rounds", "1", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1
    return json.loads(lines[0])


def test_gpu_benchmark_smoke_on_cpu():
    out = _benchmark("--device", "cpu")
    assert out["cuda"] is False and out["amp_dtype"] is None and "smoke" in out["note"]
    for c in ("ours_fp32", "ours_amp", "plain_fp32", "plain_amp"):
        assert out[c]["images_per_s"] > 0 and out[c]["peak_mib"] is None
    assert out["ours_amp_vs_plain_amp"] == pytest.approx(
        out["ours_amp"]["images_per_s"] / out["plain_amp"]["images_per_s"], rel=1e-2)


def test_cpu_step_runs_bf16_only_when_asked_and_where_amx_makes_it_fast(tiny_data, tiny_cfg):
    from segstudio.ml.device import cpu_bf16_fast

    off = TrainStep(build_model("unet", 1, 2, depth=2, width=8), SegLoss(2), tiny_cfg,
                    torch.device("cpu"))
    assert off.amp_dtype is None and not off.scaler.is_enabled()     # the default: fp32
    model = build_model("unet", 1, 2, depth=2, width=8)
    step = TrainStep(model, SegLoss(2), replace(tiny_cfg, cpu_bf16=True), torch.device("cpu"))
    assert step.amp_dtype == (torch.bfloat16 if cpu_bf16_fast() else None)
    x, y = step.to_device(*PatchSampler(tiny_data.train, 32, 4, seed=0).next_batch())
    losses = [step(x, y) for _ in range(8)]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert all(p.dtype == torch.float32 for p in model.parameters())   # weights stay fp32


@pytest.mark.gpu
@needs_cuda
def test_gpu_benchmark_on_cuda():
    out = _benchmark("--device", "cuda")
    assert out["cuda"] is True and out["amp_dtype"] in ("bfloat16", "float16")
    assert all(out[c]["peak_mib"] > 0 for c in ("ours_fp32", "ours_amp", "plain_amp"))


@pytest.mark.gpu
@needs_cuda
def test_cuda_step_uses_pinned_batches_and_autotuning(tiny_data, tiny_cfg):
    step = TrainStep(build_model("unet", 1, 2, depth=2, width=8), SegLoss(2),
                     replace(tiny_cfg, device="cuda"), torch.device("cuda"))
    assert torch.backends.cudnn.benchmark
    assert step.amp_dtype in (torch.bfloat16, torch.float16)
    assert step.scaler.is_enabled() == (step.amp_dtype == torch.float16)
    x, y = step.host_batch(*PatchSampler(tiny_data.train, 32, 4, seed=0).next_batch())
    assert x.is_pinned() and y.is_pinned()
    xd, yd = step.to_device(x, y)
    assert xd.is_cuda and xd.is_contiguous(memory_format=torch.channels_last)
    assert np.isfinite(step(xd, yd))


@pytest.mark.gpu
@needs_cuda
def test_cuda_compiled_amp_training(tiny_data, tiny_cfg, tmp_path):
    result = train(tiny_data, replace(tiny_cfg, device="cuda", preset="fast", compile=True),
                   runs_dir=tmp_path)
    card = read_card(result.run_dir)
    assert card["device"].startswith("cuda") and card["config"]["compile"] is True
