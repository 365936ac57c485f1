"""The optimizers of `optim.OPTIMIZERS` under `rules = "torch"`: torch.optim's update rules, op for op, without
torch.optim (Keras' rules, where their maths differ, are in `keras_optimizers`; both share the `Optimizer` here).

Every torch.optim optimizer imports torch._dynamo on its first call (`add_param_group`, `step` and `zero_grad` are
wrapped by `torch._disable_dynamo`): 1.1 s, a third of `cnnscope train`'s start-up (benchmarks/README.md,
"Start-up"). These are the single-tensor rules torch runs on CPU, in the same order of the same in-place ops, so
the weights come out bit-identical (tests/test_optimizers.py steps both side by side), and `state_dict` has
torch's layout and key names, so a checkpoint written by either loads into the other.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch

from cnnscope.base.errors import ConfigError

Group = dict[str, Any]
State = dict[str, torch.Tensor]


def zeros(p: torch.Tensor) -> torch.Tensor:
    """A moment buffer for `p`: zeros of its shape, dtype, device and memory format."""
    return torch.zeros_like(p, memory_format=torch.preserve_format)


def scalar(value: float) -> torch.Tensor:
    """A step counter as torch keeps it: a 0-d float tensor (float64 only when that is the default dtype)."""
    return torch.tensor(value, dtype=torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32)


def coupled_decay(grad: torch.Tensor, p: torch.Tensor, group: Group) -> torch.Tensor:
    """L2 as torch's `weight_decay` (not AdamW's): wd·p added to the gradient, out of place."""
    return grad.add(p, alpha=group["weight_decay"]) if group["weight_decay"] != 0 else grad


def _sgd(p: torch.Tensor, grad: torch.Tensor, state: State, group: Group) -> None:
    grad = coupled_decay(grad, p, group)
    momentum = group["momentum"]
    if momentum != 0:
        buf = state.get("momentum_buffer")
        if buf is None:
            buf = state["momentum_buffer"] = torch.clone(grad).detach()
        else:
            buf.mul_(momentum).add_(grad)  # dampening 0
        grad = grad.add(buf, alpha=momentum) if group["nesterov"] else buf
    p.add_(grad, alpha=-group["lr"])


def _rmsprop(p: torch.Tensor, grad: torch.Tensor, state: State, group: Group) -> None:
    state["step"] += 1
    grad = coupled_decay(grad, p, group)
    alpha, momentum = group["alpha"], group["momentum"]
    state["square_avg"].mul_(alpha).addcmul_(grad, grad, value=1 - alpha)
    avg = state["square_avg"].sqrt().add_(group["eps"])
    if momentum > 0:
        buf = state["momentum_buffer"]
        buf.mul_(momentum).addcdiv_(grad, avg)
        p.add_(buf, alpha=-group["lr"])
    else:
        p.addcdiv_(grad, avg, value=-group["lr"])


def _adam(p: torch.Tensor, grad: torch.Tensor, state: State, group: Group) -> None:
    """Adam, and AdamW when group["decoupled"] (the decay scales the weights, not the gradient)."""
    lr, (beta1, beta2), wd = group["lr"], group["betas"], group["weight_decay"]
    state["step"] += 1
    if wd != 0 and group["decoupled"]:
        p.mul_(1 - lr * wd)
    elif wd != 0:
        grad = grad.add(p, alpha=wd)
    exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
    exp_avg.lerp_(grad, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    step = state["step"].item()
    bias_correction2_sqrt = (1 - beta2**step) ** 0.5
    denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(group["eps"])
    p.addcdiv_(exp_avg, denom, value=-(lr / (1 - beta1**step)))


def _nadam(p: torch.Tensor, grad: torch.Tensor, state: State, group: Group) -> None:
    lr, (beta1, beta2), decay = group["lr"], group["betas"], group["momentum_decay"]
    state["step"] += 1
    step = state["step"].item()
    bias_correction2 = 1 - beta2**step
    grad = coupled_decay(grad, p, group)
    mu = beta1 * (1.0 - 0.5 * (0.96 ** (step * decay)))  # the momentum schedule of Dozat's NAdam
    mu_next = beta1 * (1.0 - 0.5 * (0.96 ** ((step + 1) * decay)))
    state["mu_product"] *= mu
    exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
    exp_avg.lerp_(grad, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    denom = exp_avg_sq.div(bias_correction2).sqrt().add_(group["eps"])
    mu_product = state["mu_product"].item()
    p.addcdiv_(grad, denom, value=-lr * (1.0 - mu) / (1.0 - mu_product))
    p.addcdiv_(exp_avg, denom, value=(-lr * mu_next) / (1.0 - mu_product * mu_next))


def _adamax(p: torch.Tensor, grad: torch.Tensor, state: State, group: Group) -> None:
    lr, (beta1, beta2) = group["lr"], group["betas"]
    state["step"] += 1
    grad = coupled_decay(grad, p, group)
    exp_avg, exp_inf = state["exp_avg"], state["exp_inf"]
    exp_avg.lerp_(grad, 1 - beta1)
    torch.maximum(exp_inf.mul_(beta2), grad.abs().add_(group["eps"]), out=exp_inf)
    p.addcdiv_(exp_avg, exp_inf, value=-(lr / (1 - beta1 ** state["step"].item())))


@dataclass(frozen=True)
class Rule:
    """An update rule: its hyperparameters beyond lr and weight_decay, its per-parameter state, its step."""

    defaults: dict[str, Any]
    state: Callable[[torch.Tensor, Group], State]
    update: Callable[[torch.Tensor, torch.Tensor, State, Group], None]
    name: str = ""  # shown in errors


def moments(*names: str) -> Callable[[torch.Tensor, Group], State]:
    """The state of a rule keeping a step counter and the named moment buffers."""
    return lambda p, group: {"step": scalar(0.0), **{name: zeros(p) for name in names}}


RULES: dict[str, Rule] = {
    "sgd": Rule({"momentum": 0.0, "nesterov": False}, lambda p, group: {}, _sgd),
    "rmsprop": Rule({"alpha": 0.99, "eps": 1e-8, "momentum": 0.0},
                    lambda p, group: {"step": scalar(0.0), "square_avg": zeros(p),
                                      **({"momentum_buffer": zeros(p)} if group["momentum"] > 0 else {})},
                    _rmsprop),
    "adam": Rule({"betas": (0.9, 0.999), "eps": 1e-8, "decoupled": False}, moments("exp_avg", "exp_avg_sq"), _adam),
    "adamw": Rule({"betas": (0.9, 0.999), "eps": 1e-8, "decoupled": True}, moments("exp_avg", "exp_avg_sq"), _adam),
    "nadam": Rule({"betas": (0.9, 0.999), "eps": 1e-8, "momentum_decay": 4e-3},
                  lambda p, group: {**moments("exp_avg", "exp_avg_sq")(p, group), "mu_product": scalar(1.0)},
                  _nadam),
    "adamax": Rule({"betas": (0.9, 0.999), "eps": 1e-8}, moments("exp_avg", "exp_inf"), _adamax),
}


class Optimizer:
    """torch.optim.Optimizer's interface as the training loop and checkpoints use it: `param_groups` (one group),
    `state`, `step()`, `zero_grad()`, `state_dict()`, `load_state_dict()`."""

    def __init__(self, rule: str | Rule, params: Iterable[torch.Tensor], lr: float, weight_decay: float = 0.0,
                 **hyper: Any) -> None:
        self.rule = RULES[rule] if isinstance(rule, str) else rule
        unknown = set(hyper) - set(self.rule.defaults)
        if unknown:
            raise ConfigError(f"optimizer {self.rule.name or rule!r} has no setting {sorted(unknown)}; valid: "
                              f"{', '.join(self.rule.defaults)}")
        tensors = list(params)
        if not tensors or not all(isinstance(p, torch.Tensor) for p in tensors):
            raise ConfigError("an optimizer needs a non-empty list of parameter tensors")
        group = {"lr": lr, "weight_decay": weight_decay, **self.rule.defaults, **hyper}
        self.param_groups: list[Group] = [{**group, "params": tensors}]
        self.state: defaultdict[torch.Tensor, State] = defaultdict(dict)  # as torch.optim's

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter that has a gradient."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state.get(p) or self.rule.state(p, group)
                self.rule.update(p, p.grad, state, group)
                if state:  # as torch: no entry for a rule without state (sgd without momentum)
                    self.state[p] = state

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop (or zero) every parameter's gradient."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.detach_() if p.grad.grad_fn is not None else p.grad.requires_grad_(False)
                    p.grad.zero_()

    def _params(self) -> list[torch.Tensor]:
        return self.param_groups[0]["params"]

    def state_dict(self) -> dict[str, Any]:
        """torch's layout: {"state": {index: {name: tensor}}, "param_groups": [{..., "params": [indices]}]}."""
        index = {id(p): i for i, p in enumerate(self._params())}
        group = {k: v for k, v in self.param_groups[0].items() if k != "params"}
        return {"state": {index[id(p)]: dict(values) for p, values in self.state.items()},
                "param_groups": [{**group, "params": list(range(len(index)))}]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Per-parameter state as torch loads it: counters kept as saved, the rest cast to the parameter's dtype and
        device; the group's settings (lr, betas, …) are taken over. ValueError when it does not fit."""
        params, groups = self._params(), state_dict["param_groups"]
        if len(groups) != 1 or len(groups[0]["params"]) != len(params):
            raise ValueError(f"the saved state is for {sum(len(g['params']) for g in groups)} parameters in "
                             f"{len(groups)} groups; this optimizer has {len(params)} in 1")
        state: defaultdict[torch.Tensor, State] = defaultdict(dict)
        for i, values in state_dict["state"].items():
            p = params[int(i)]
            state[p] = {key: _loaded(key, value, p) for key, value in values.items()}
        self.param_groups[0].update({k: v for k, v in groups[0].items() if k != "params"})
        self.state = state


def _loaded(key: str, value: Any, p: torch.Tensor) -> Any:
    """A saved state value as torch.optim loads it: counters as saved, moments on the parameter's dtype/device."""
    if not torch.is_tensor(value):
        return value
    return value.clone() if key in ("step", "mu_product") else value.to(p.device, p.dtype).clone()
