import pickle

import pytest
import torch

from segstudio.ml.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from segstudio.ml.runs import RunError, load_run_model
from segstudio.ml.train import train


class _Evil:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (str(self.target), "w"))


def test_round_trip_gives_identical_predictions(tiny_data, tiny_cfg, tmp_path):
    result = train(tiny_data, tiny_cfg, runs_dir=tmp_path)
    loaded = load_run_model(None, result.run_dir)
    assert loaded.in_channels == 1 and [c.name for c in loaded.classes] == ["background", "cell"]
    assert loaded.card["run_id"] == result.run_dir.name
    assert loaded.checkpoint == result.run_dir / "best.pt"
    x = torch.from_numpy(loaded.normalise(tiny_data.val[0].image).copy())[None]
    again = load_run_model(None, result.run_dir / "best.pt")
    with torch.inference_mode():
        assert torch.equal(loaded.model(x), again.model(x))
    save_checkpoint(tmp_path / "copy.pt", loaded.config, loaded.model.state_dict())
    assert load_checkpoint(tmp_path / "copy.pt")["config"] == loaded.config
    assert load_run_model(None, result.run_dir, which="last").checkpoint.name == "last.pt"


@pytest.mark.parametrize("form", ["torch.save", "pickle-2", "pickle-default"])
def test_malicious_pickle_is_refused_without_running_code(tmp_path, form):
    target = tmp_path / "pwned.txt"
    path = tmp_path / "evil.pt"
    payload = {"config": {}, "state_dict": {"w": _Evil(target)}}
    if form == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2 if form == "pickle-2" else None))
    assert not target.exists()
    with pytest.raises(CheckpointError,
                       match="contains code .a pickled object.; refused for safety"):
        load_checkpoint(path)
    with pytest.raises(RunError):
        load_run_model(None, path)
    assert not target.exists()
    # the same file really is harmful when unpickled without the weights-only guard
    if form == "torch.save":
        torch.load(path, weights_only=False)
    else:
        pickle.loads(path.read_bytes())
    assert target.exists()


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="is not a SegStudio checkpoint .not a PyTorch file."):
        load_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


class _Prints:
    """Unpickling this calls print: harmless, visible proof that loading would run code."""

    def __reduce__(self):
        return (print, ("PWNED-BY-CHECKPOINT",))


def test_text_file_named_best_pt_is_not_a_pytorch_file(tmp_path):
    run = tmp_path / "run1"
    run.mkdir()
    (run / "best.pt").write_text("root:x:0:0:root:/root:/bin/bash\n", encoding="utf-8")
    expected = f"{run / 'best.pt'} is not a SegStudio checkpoint (not a PyTorch file)"
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(run / "best.pt")
    assert str(e.value) == expected
    with pytest.raises(RunError) as e:
        load_run_model(None, run)
    assert str(e.value) == expected


def test_checkpoint_that_would_run_code_says_so_and_runs_nothing(tmp_path, capfd):
    path = tmp_path / "best.pt"
    torch.save({"config": {}, "state_dict": {"w": _Prints()}}, path)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    assert str(e.value).startswith(f"{path} contains code (a pickled object); refused for safety")
    assert "print" in str(e.value) and "damaged" not in str(e.value)
    assert "PWNED" not in capfd.readouterr().out
    torch.load(path, weights_only=False)          # without the guard the code really runs
    assert "PWNED-BY-CHECKPOINT" in capfd.readouterr().out


def test_truncated_checkpoint_is_damaged_not_code(tiny_data, tiny_cfg, tmp_path):
    result = train(tiny_data, tiny_cfg, runs_dir=tmp_path)
    best = result.run_dir / "best.pt"
    raw = best.read_bytes()
    best.write_bytes(raw[: len(raw) // 2])
    (result.run_dir / "last.pt").unlink()
    with pytest.raises(RunError) as e:
        load_run_model(None, result.run_dir)
    assert str(e.value).startswith(f"{best} is damaged") and "code" not in str(e.value)


def test_oversized_checkpoint_config_is_refused_naming_the_field(tiny_data, tiny_cfg, tmp_path):
    """Sizes are checked before a layer is allocated: none of these may try gigabytes."""
    import copy

    result = train(tiny_data, tiny_cfg, runs_dir=tmp_path)
    ckpt = load_checkpoint(result.run_dir / "best.pt")
    (result.run_dir / "last.pt").unlink()
    cases = [("num_classes", 10**6, "num_classes is 1000000"),
             ("model", {"name": "tiny-fcn", "width": 2048}, "width is 2048"),
             ("model", {"name": "unet", "depth": 4, "width": 2048}, "width is 2048"),
             ("in_channels", 10**9, "in_channels is 1000000000")]
    for field, value, says in cases:
        cfg = copy.deepcopy(ckpt["config"])
        cfg[field] = value
        save_checkpoint(result.run_dir / "best.pt", cfg, ckpt["state_dict"])
        with pytest.raises(RunError) as e:
            load_run_model(None, result.run_dir)
        assert says in str(e.value) and "outside the sane range" in str(e.value), str(e.value)
