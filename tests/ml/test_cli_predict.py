"""`segstudio-cli predict` / `evaluate` against a run saved the way the trainer saves one."""

import importlib.util
import json
import sys
import types

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from segstudio.cli import main  # noqa: E402
from segstudio.core.metrics import confusion_matrix  # noqa: E402
from segstudio.io.masks import read_mask_file  # noqa: E402
from segstudio.io.project import Project  # noqa: E402
from segstudio.ml.predict import Normalisation  # noqa: E402
from segstudio.ml.runs import RunError, load_run_model  # noqa: E402

HAS_REGISTRY = importlib.util.find_spec("segstudio.ml.models") is not None


class PixelNet(nn.Module):
    """Per-pixel (1x1) model: tiled prediction equals a whole-image pass exactly."""

    def __init__(self, in_channels: int = 3, num_classes: int = 2) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(in_channels, 4, 1), nn.BatchNorm2d(4), nn.ReLU(),
                                  nn.Conv2d(4, num_classes, 1))

    def forward(self, x):
        return self.body(x)


@pytest.fixture
def registry(monkeypatch):
    """Stands in for the ml branch's segstudio.ml.models until the two are merged."""
    fake = types.ModuleType("segstudio.ml.models")

    def build_model(name, in_channels, num_classes):
        if name != "pixel-net":
            raise KeyError(f"unknown model {name!r}; known: ['pixel-net']")
        return PixelNet(in_channels, num_classes)

    fake.build_model = build_model
    monkeypatch.setitem(sys.modules, "segstudio.ml.models", fake)
    return fake


def _trained_pixel_net() -> PixelNet:
    torch.manual_seed(0)
    m = PixelNet()
    with torch.no_grad():            # bright pixels -> class 1, so both classes occur
        m.body[0].weight.fill_(1.0)
        m.body[0].bias.fill_(-1.2)
        m.body[1].running_mean.fill_(0.1)
        m.body[1].running_var.fill_(2.0)
        m.body[3].weight.copy_(torch.tensor([[-1.0] * 4, [1.0] * 4]).view(2, 4, 1, 1))
        m.body[3].bias.copy_(torch.tensor([0.3, 0.0]))
    return m.eval()


def _save_run(root, run="r1", model=None, card=None, name="best.pt", config=None):
    model = model or _trained_pixel_net()
    d = root / "runs" / run
    d.mkdir(parents=True, exist_ok=True)
    cfg = config or {"model": "pixel-net", "in_channels": 3, "num_classes": 2}
    torch.save({"config": cfg, "state_dict": model.state_dict()}, d / name)
    (d / "model_card.json").write_text(json.dumps(card or {"run": run}))
    return d


def _direct(model, image):
    x = torch.from_numpy(Normalisation(in_channels=3)(image))[None]
    with torch.no_grad():
        return model(x)[0].argmax(0).numpy().astype(np.uint8)


def test_load_run_model(sample_copy, registry):
    _save_run(sample_copy, card={"normalisation": {"mean": [0.5], "std": [0.5]}})
    model, norm, classes = load_run_model(sample_copy, "r1")
    assert isinstance(model, PixelNet) and not model.training
    assert [c.name for c in classes] == ["background", "nucleus"]
    assert norm.mean == (0.5,) and norm.in_channels == 3
    assert load_run_model(sample_copy, "latest")[2] == classes
    assert load_run_model(None, sample_copy / "runs" / "r1")[2][1].name == "class 1"
    _save_run(sample_copy, "named", card={"classes": ["sky", "cell"]},
              config={"model": "pixel-net", "in_channels": 3})      # num_classes from names
    assert [c.name for c in load_run_model(None, sample_copy / "runs" / "named")[2]] == [
        "sky", "cell"]


def test_load_run_errors_teach(sample_copy, registry, monkeypatch):
    _save_run(sample_copy)
    with pytest.raises(RunError, match=r"known runs: \['r1'\]"):
        load_run_model(sample_copy, "nope")
    (sample_copy / "runs" / "empty").mkdir()
    with pytest.raises(RunError, match="no checkpoint"):
        load_run_model(sample_copy, "empty")
    _save_run(sample_copy, "bad", config={"model": "unet9", "num_classes": 2})
    with pytest.raises(RunError, match="unknown model 'unet9'"):
        load_run_model(sample_copy, "bad")
    _save_run(sample_copy, "wrong", config={"model": "pixel-net", "num_classes": 3})
    with pytest.raises(RunError, match="does not fit"):
        load_run_model(sample_copy, "wrong")
    (sample_copy / "runs" / "junk").mkdir()
    (sample_copy / "runs" / "junk" / "last.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(RunError, match=r"is not a SegStudio checkpoint \(not a PyTorch file\)"):
        load_run_model(sample_copy, "junk")
    monkeypatch.setitem(sys.modules, "segstudio.ml.models", None)     # no registry at all
    with pytest.raises(RunError, match="no model registry"):
        load_run_model(sample_copy, "r1")


def test_evaluate_json_matches_a_direct_computation(sample_copy, registry, capsys):
    _save_run(sample_copy)
    assert main(["evaluate", str(sample_copy), "--run", "r1", "--json", "--split", "all"]) == 0
    report = json.loads(capsys.readouterr().out)
    project = Project.open(sample_copy)
    model = _trained_pixel_net()
    cm = np.zeros((2, 2), np.int64)
    ids = []
    for e in project.images:
        if not project.masks.has_mask(e.id):
            continue
        image = project.read_image(e).data
        mask = project.load_mask(e, image.shape[:2])
        if (mask == 255).all():
            continue
        ids.append(e.id)
        cm += confusion_matrix(mask, _direct(model, image), 2)
    assert report["confusion"] == cm.tolist()
    assert sorted(r["image_id"] for r in report["images"]) == sorted(ids)
    assert [c["name"] for c in report["classes"]] == ["background", "nucleus"]
    assert report["classes"][1]["support"] == int(cm[1].sum())
    tp = cm[1, 1]
    assert report["classes"][1]["iou"] == pytest.approx(tp / (cm[1].sum() + cm[:, 1].sum() - tp))
    assert report["instances"]["1"]["true"] > 0           # binary project: objects counted


def test_evaluate_table_and_empty_split(sample_copy, registry, capsys):
    _save_run(sample_copy)
    assert main(["evaluate", str(sample_copy), "--run", "r1"]) == 0
    out = capsys.readouterr().out
    assert "nucleus" in out and "IoU" in out and "objects 'nucleus'" in out
    assert main(["evaluate", str(sample_copy), "--run", "r1", "--split", "test"]) == 1
    assert "nothing was measured" in capsys.readouterr().err
    assert main(["evaluate", str(sample_copy), "--run", "r1", "--objects", "none",
                 "--exclude-background"]) == 0
    out = capsys.readouterr().out
    assert "objects" not in out and "mean (excl. 0)" in out
    assert main(["evaluate", str(sample_copy), "--run", "r1", "--objects", "x"]) == 2


def test_predict_project_writes_masks_and_probabilities(sample_copy, registry, tmp_path):
    _save_run(sample_copy)
    out = tmp_path / "out"
    assert main(["predict", str(sample_copy), "--run", "r1", "--out", str(out),
                 "--probabilities", "--tile", "128"]) == 0
    project = Project.open(sample_copy)
    model = _trained_pixel_net()
    summary = json.loads((out / "predictions.json").read_text())
    assert len(summary["images"]) == len(project.images)
    for e in project.images[:3] + project.images[-1:]:
        image = project.read_image(e).data
        mask = read_mask_file(out / f"{e.id}.png")
        assert (mask == _direct(model, image)).mean() > 0.999
        probs = np.load(out / f"{e.id}.probs.npy")
        assert probs.shape == (2, *image.shape[:2]) and probs.dtype == np.float16
    row = summary["images"][0]
    assert 0.0 <= row["mean_entropy"] <= 1.0 and 0.0 <= row["mean_margin"] <= 1.0


def test_predict_folder_with_a_run_folder(sample_copy, registry, tmp_path):
    run_dir = _save_run(sample_copy)
    out = tmp_path / "out"
    src = sample_copy / "images"
    assert main(["predict", str(src), "--run", str(run_dir), "--out", str(out)]) == 0
    assert (out / "nuclei_01.png").is_file() and not (out / "nuclei_01.probs.npy").exists()
    assert main(["predict", str(src), "--run", "r1", "--out", str(out)]) == 2   # no project
    inside = src / "predicted"                  # masks written into the folder being read
    for _ in range(2):
        assert main(["predict", str(src), "--run", str(run_dir), "--out", str(inside)]) == 0
    summary = json.loads((inside / "predictions.json").read_text())
    assert len(summary["images"]) == 14         # the first run's masks were not predicted


def test_predict_reports_unreadable_files_and_goes_on(sample_copy, registry, tmp_path, capsys):
    run_dir = _save_run(sample_copy)
    src = tmp_path / "imgs"
    src.mkdir()
    (src / "a.png").write_bytes((sample_copy / "images" / "nuclei_01.png").read_bytes())
    (src / "broken.png").write_bytes(b"\x89PNG nope")
    assert main(["predict", str(src), "--run", str(run_dir), "--out", str(tmp_path / "o")]) == 1
    assert (tmp_path / "o" / "a.png").is_file()
    assert "broken.png" in capsys.readouterr().err


@pytest.mark.skipif(not HAS_REGISTRY, reason="needs segstudio.ml.models from the ml branch")
def test_evaluate_with_the_real_registry(sample_copy, capsys):
    from segstudio.ml.models import build_model

    torch.manual_seed(0)
    model = build_model("tiny-fcn", in_channels=3, num_classes=2)
    d = sample_copy / "runs" / "real"
    d.mkdir(parents=True)
    torch.save({"config": {"model": "tiny-fcn", "in_channels": 3, "num_classes": 2},
                "state_dict": model.state_dict()}, d / "last.pt")
    (d / "model_card.json").write_text("{}")
    assert main(["evaluate", str(sample_copy), "--run", "real", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["classes"]) == 2
