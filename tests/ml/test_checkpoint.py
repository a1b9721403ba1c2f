import pickle

import pytest
import torch

from segstudio.ml.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from segstudio.ml.data import prepare_image
from segstudio.ml.train import train


class _Evil:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (str(self.target), "w"))


def test_round_trip_gives_identical_predictions(tiny_data, tiny_cfg, tmp_path):
    result = train(tiny_data, tiny_cfg, runs_dir=tmp_path)
    loaded = load_model(result.run_dir)
    assert loaded.in_channels == 1 and [c["name"] for c in loaded.classes] == ["background", "cell"]
    assert loaded.card["run_id"] == result.run_dir.name
    x = torch.from_numpy(prepare_image(tiny_data.val[0].image[..., 0] * 100, loaded.normalisation,
                                       loaded.in_channels))[None]
    again = load_model(result.run_dir / "best.pt")
    with torch.inference_mode():
        assert torch.equal(loaded.model(x), again.model(x))
    save_checkpoint(tmp_path / "copy.pt", loaded.config, loaded.model.state_dict())
    assert load_checkpoint(tmp_path / "copy.pt")["config"] == loaded.config


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
                       match="refused to load" if form != "pickle-default" else "checkpoint"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError):
        load_model(path)
    assert not target.exists()
    # the same file really is harmful when unpickled without the weights-only guard
    if form == "torch.save":
        torch.load(path, weights_only=False)
    else:
        pickle.loads(path.read_bytes())
    assert target.exists()


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
