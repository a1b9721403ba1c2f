"""`segstudio-cli train` under torchrun: 2 CPU processes, gloo, one run folder, equal weights."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from segstudio.ml import distributed
from segstudio.ml.checkpoint import load_checkpoint
from segstudio.ml.distributed import RANK_DUMP_ENV, DistContext, state_hash
from segstudio.ml.models import build_model
from segstudio.ml.runs import load_run_model, read_card

from .test_cli_train import REPO, make_project


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(args: list[str], dump: Path, nproc: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, RANK_DUMP_ENV: str(dump), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    for attempt in range(2):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
               "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
               "-m", "segstudio", *args]
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=180)
        # the free port can be taken between our probe and torchrun's bind: retry only that
        if proc.returncode == 0 or "address already in use" not in proc.stderr.lower():
            break
    return proc


def test_torchrun_two_cpu_ranks_train_one_run(tmp_path, rng):
    root = make_project(tmp_path, rng)
    dump = tmp_path / "dump"
    # a 2-level U-Net with batch norm: its running statistics must end equal too
    config = tmp_path / "segstudio.toml"
    config.write_text('[train]\npreset = "fast"\ndepth = 2\nwidth = 4\n')
    proc = _torchrun(["train", str(root), "--config", str(config), "--epochs", "2",
                      "--steps-per-epoch", "3", "--batch-size", "2", "--patch-size", "32",
                      "--device", "cpu", "--threads", "1"], dump)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out

    ranks = [json.loads((dump / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2], out
    # DDP kept the weights equal although each rank saw other patches
    assert ranks[0]["state_sha256"] == ranks[1]["state_sha256"], (ranks, out)
    assert ranks[0]["first_batch_sha256"] != ranks[1]["first_batch_sha256"], out

    # rank 0 alone wrote: one run folder, one model card, one result line
    runs = [d for d in (root / "runs").iterdir() if d.is_dir()]
    assert len(runs) == 1, (runs, out)
    files = sorted(p.name for p in runs[0].iterdir())
    assert files == ["best.pt", "last.pt", "model_card.json"], (files, out)
    assert proc.stdout.count("run: ") == 1 and f"run: {runs[0]}" in proc.stdout, out
    card = read_card(runs[0])
    assert (card["epochs"], card["steps"], card["status"]) == (2, 6, "finished"), (card, out)
    assert [h["epoch"] for h in card["history"]] == [1.0, 2.0] and card["world_size"] == 2

    # last.pt holds the weights both ranks ended with; the app loads the run and predicts
    last = load_checkpoint(runs[0] / "last.pt")["state_dict"]
    assert state_hash(last) == ranks[0]["state_sha256"]
    loaded = load_run_model(root, "latest")
    assert [c.id for c in loaded.classes] == [0, 1]
    from segstudio.ml.predict import TileOptions, predict_tiled

    image = (rng.random((40, 48)) * 255).astype(np.uint8)
    pred = predict_tiled(loaded.model, image, loaded.normalise,
                         TileOptions(tile=32, overlap=0.25, batch_size=2))
    assert pred.labels.shape == (40, 48) and set(np.unique(pred.labels)) <= {0, 1}


def test_torchrun_ranks_agree_on_a_time_budget(tmp_path, rng):
    """Each rank's clock differs: stopping and the learning rate must still be agreed."""
    root = make_project(tmp_path, rng)
    dump = tmp_path / "dump"
    config = tmp_path / "segstudio.toml"
    config.write_text("[train]\npatience = 0\n")          # 0: never stop early
    proc = _torchrun(["train", str(root), "--config", str(config), "--preset", "tiny",
                      "--epochs", "100000",
                      "--steps-per-epoch", "4", "--minutes", "0.06", "--batch-size", "2",
                      "--patch-size", "32", "--device", "cpu", "--threads", "1", "--quiet"], dump)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    ranks = [json.loads((dump / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["state_sha256"] == ranks[1]["state_sha256"], (ranks, out)
    (run,) = [d for d in (root / "runs").iterdir() if d.is_dir()]
    card = read_card(run)
    assert card["status"] == "time-budget" and card["steps"] >= 1, (card, out)
    assert state_hash(load_checkpoint(run / "last.pt")["state_dict"]) == ranks[0]["state_sha256"]


def test_single_process_context_is_a_pass_through(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    ctx = distributed.setup(torch.device("cpu"))
    assert not ctx.enabled and ctx.is_main and distributed.is_main_process()
    model = build_model("tiny-fcn", 1, 2)
    assert ctx.wrap(model) is model
    assert ctx.seed(7) == 7
    assert ctx.shared_run_dir(lambda: Path("/x/run")) == Path("/x/run")
    assert ctx.agree_step(0.25, True, False) == (0.25, True, False)
    assert ctx.mean(1.5) == 1.5
    ctx.barrier()
    ctx.close()


def test_other_ranks_draw_other_patches(tiny_data):
    from segstudio.ml.data import PatchSampler

    seeds = [DistContext(torch.device("cpu"), rank=r, world_size=3).seed(11) for r in range(3)]
    assert seeds[0] == 11                         # rank 0 draws what a single process draws
    batches = [PatchSampler(tiny_data.train, 16, 2, seed=s).next_batch()[0] for s in seeds]
    single = PatchSampler(tiny_data.train, 16, 2, seed=11).next_batch()[0]
    assert np.array_equal(batches[0], single)
    assert not np.array_equal(batches[0], batches[1])
    assert not np.array_equal(batches[1], batches[2])


def test_mps_is_refused_under_torchrun(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="CUDA .nccl. or the CPU .gloo."):
        distributed.setup(torch.device("mps"))
