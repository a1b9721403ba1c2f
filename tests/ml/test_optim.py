"""The trainer's AdamW does torch's arithmetic, shares its state layout, and imports no dynamo."""

import subprocess
import sys

import pytest
import torch

from segstudio.ml.optim import AdamW


def _model(seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.BatchNorm2d(4),
                               torch.nn.Conv2d(4, 1, 1))


def _steps(model, opt, n, seed=1, lrs=None):
    g = torch.Generator().manual_seed(seed)
    for i in range(n):
        if lrs:
            for group in opt.param_groups:
                group["lr"] = lrs[i]
        opt.zero_grad(set_to_none=True)
        x = torch.randn(3, 2, 9, 9, generator=g)
        model(x).square().mean().backward()
        opt.step()


def test_same_updates_as_torch_adamw_with_a_changing_learning_rate():
    ours, ref = _model(0), _model(0)
    lrs = [0.01, 0.02, 0.005, 0.01, 0.001, 0.03]
    _steps(ours, AdamW(ours.parameters(), lr=0.01, weight_decay=1e-2), 6, lrs=lrs)
    _steps(ref, torch.optim.AdamW(ref.parameters(), lr=0.01, weight_decay=1e-2), 6, lrs=lrs)
    for a, b in zip(ours.parameters(), ref.parameters()):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("direction", ["torch->ours", "ours->torch"])
def test_state_dicts_load_across_so_old_runs_resume(direction):
    """A run saved by torch.optim.AdamW resumes under ours (and back) with the same steps."""
    first, second = (torch.optim.AdamW, AdamW) if direction == "torch->ours" else \
        (AdamW, torch.optim.AdamW)
    a = _model(0)
    opt_a = first(a.parameters(), lr=0.01, weight_decay=1e-2)
    _steps(a, opt_a, 3)
    saved = opt_a.state_dict()
    b = _model(0)
    b.load_state_dict(a.state_dict())
    opt_b = second(b.parameters(), lr=0.01, weight_decay=1e-2)
    opt_b.load_state_dict(saved)
    _steps(a, opt_a, 3, seed=2)
    _steps(b, opt_b, 3, seed=2)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.allclose(p, q, rtol=1e-5, atol=1e-7)


def test_a_mismatched_state_is_refused():
    opt = AdamW(_model(0).parameters())
    with pytest.raises(ValueError, match="does not match"):
        opt.load_state_dict({"state": {}, "param_groups": [{"params": [0], "lr": 1}]})


def test_training_steps_import_no_dynamo():
    code = ("import sys, torch\n"
            "from segstudio.ml.step import TrainStep\n"
            "from segstudio.ml.config import TrainConfig\n"
            "from segstudio.ml.loss import SegLoss\n"
            "from segstudio.ml.models import build_model\n"
            "m = build_model('tiny-fcn', 1, 2)\n"
            "s = TrainStep(m, SegLoss(2), TrainConfig(device='cpu'), torch.device('cpu'))\n"
            "x = torch.randn(2, 1, 16, 16); y = torch.randint(0, 2, (2, 16, 16), dtype=torch.uint8)\n"
            "s(*s.to_device(x, y)); s.opt.load_state_dict(s.opt.state_dict())\n"
            "print('torch._dynamo' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
