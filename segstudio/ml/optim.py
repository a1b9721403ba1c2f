"""AdamW in a few foreach ops: torch's update, without torch.optim's first-step imports.

`torch.optim.Optimizer.step` imports `torch._dynamo` on its first call (for a graph break
under torch.compile), and with it `torch._inductor`: over a second of imports, most of it in
C code that holds the GIL, so the window stalls while a training job starts. This optimizer
does the same arithmetic as `torch.optim.AdamW` (decoupled weight decay, bias-corrected
moments, eps outside the square root) with the same `param_groups` (the trainer sets `lr`
there each step) and the same `state_dict` layout, so checkpoints written by either load into
the other and a resumed run goes on exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch


class AdamW:
    """`torch.optim.AdamW(params, lr, betas, eps, weight_decay)` for the trainer's needs."""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2) -> None:
        if not lr >= 0 or not eps >= 0 or not weight_decay >= 0:
            raise ValueError(f"AdamW: lr {lr}, eps {eps} and weight_decay {weight_decay} must "
                             f"not be negative")
        self.defaults = {"lr": lr, "betas": tuple(betas), "eps": eps,
                         "weight_decay": weight_decay, "amsgrad": False, "maximize": False,
                         "foreach": True, "capturable": False, "differentiable": False,
                         "fused": None}
        self.param_groups: list[dict[str, Any]] = [{**self.defaults, "params": list(params)}]
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = {}

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            for p in params:
                if p not in self.state:
                    self.state[p] = {"step": torch.tensor(0.0),
                                     "exp_avg": torch.zeros_like(p),
                                     "exp_avg_sq": torch.zeros_like(p)}
            lr, (beta1, beta2) = group["lr"], group["betas"]
            eps, wd = group["eps"], group["weight_decay"]
            grads = [p.grad for p in params]
            states = [self.state[p] for p in params]
            avg = [s["exp_avg"] for s in states]
            sq = [s["exp_avg_sq"] for s in states]
            for s in states:
                s["step"] += 1
            step = float(states[0]["step"])
            if wd:
                torch._foreach_mul_(params, 1.0 - lr * wd)
            torch._foreach_lerp_(avg, grads, 1.0 - beta1)
            torch._foreach_mul_(sq, beta2)
            torch._foreach_addcmul_(sq, grads, grads, 1.0 - beta2)
            bias1 = 1.0 - beta1 ** step
            bias2_sqrt = math.sqrt(1.0 - beta2 ** step)
            denom = torch._foreach_sqrt(sq)
            torch._foreach_div_(denom, bias2_sqrt)
            torch._foreach_add_(denom, eps)
            torch._foreach_addcdiv_(params, avg, denom, -lr / bias1)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.detach_()
                    p.grad.zero_()

    # -- torch.optim's state_dict layout ----------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            ids = []
            for p in group["params"]:
                index.setdefault(id(p), len(index))
                ids.append(index[id(p)])
            groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": ids})
        state = {index[id(p)]: {k: v.clone() for k, v in s.items()}
                 for p, s in self.state.items() if id(p) in index}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups) or any(
                len(g["params"]) != len(mine["params"]) for g, mine in zip(groups, self.param_groups)):
            raise ValueError("the optimizer state does not match the model's parameters "
                             "(another model or parameter count)")
        by_index = {}
        for g, mine in zip(groups, self.param_groups):
            for i, p in zip(g["params"], mine["params"]):
                by_index[i] = p
            for k, v in g.items():
                if k != "params":
                    mine[k] = tuple(v) if k == "betas" else v
        self.state = {}
        for i, s in state_dict["state"].items():
            p = by_index[int(i)]
            self.state[p] = {"step": torch.as_tensor(s["step"], dtype=torch.float32).clone(),
                             "exp_avg": s["exp_avg"].to(p.device, p.dtype).clone(),
                             "exp_avg_sq": s["exp_avg_sq"].to(p.device, p.dtype).clone()}
