"""Keras 3's update rules, where their maths differ from torch.optim's (`rules = "keras"`, the default).

The series trained with Keras; these reproduce `keras.optimizers` step for step (tests/test_keras_optimizers.py
checks every optimizer × option against weights saved by Keras 3.15, tests/fixtures/keras_optim/). The differences
from `optimizers` (torch's rules), formula by formula (g the gradient, t the step counted from 1):

- RMSprop: v = ρv + (1−ρ)g²; Keras steps by lr·g/√(v+ε) (ε inside the root) and keeps lr inside the momentum
  buffer, m = μm + lr·g/√(v+ε); torch steps by g/(√v+ε) and multiplies by lr afterwards. On the first step Keras
  moves every weight by ≈ lr/√(1−ρ) ≈ 3.16·lr (ρ 0.9), torch by the same, but the two drift apart from there, and
  with a schedule the buffer remembers the lr of each past step in Keras only.
- SGD with momentum: Keras keeps lr inside the buffer, m = μm − lr·g (Nesterov: w += μm − lr·g); torch keeps
  b = μb + g and steps by lr·b. The same with a constant lr; not with a schedule.
- Adam (and AdamW): ε is added to √v before the bias correction (Keras: lr·√(1−β₂ᵗ)/(1−β₁ᵗ) · m/(√v+ε); torch:
  lr/(1−β₁ᵗ) · m/(√v/√(1−β₂ᵗ)+ε)).
- Adamax: ε is added to u after the max (Keras: u = max(β₂u, |g|), step lr·m/((1−β₁ᵗ)(u+ε)); torch:
  u = max(β₂u, |g|+ε)).
- Nadam: Keras 3 uses Dozat's momentum schedule μₜ = β₁(1 − ½·0.96ᵗ); torch's rule with momentum_decay 1.0 is
  exactly that (torch's default, 0.004, stretches it: μ ≈ 0.46 at step 100), so no rule of its own here.

L2: the series' penalty is a kernel_regularizer, part of the loss, so it reaches these rules inside the gradient
(cnnscope's `regularizer` in the model spec). The `weight_decay` setting keeps its meaning under both rules:
coupled (wd·w added to the gradient) except for adamw, which decays the weights before the step as Keras does
(w −= lr·wd·w).
"""

from __future__ import annotations

import torch

from cnnscope.trainer.rules_torch import RULES, Group, Rule, State, coupled_decay, moments, scalar, zeros


def _decay(p: torch.Tensor, grad: torch.Tensor, group: Group) -> torch.Tensor:
    """Keras' decoupled weight decay for adamw (w −= lr·wd·w before the step), coupled L2 for the others."""
    if group["weight_decay"] != 0 and group.get("decoupled"):
        p.sub_(p * (group["weight_decay"] * group["lr"]))
        return grad
    return coupled_decay(grad, p, group)


def _rmsprop(p: torch.Tensor, grad: torch.Tensor, state: State, group: Group) -> None:
    state["step"] += 1
    grad = _decay(p, grad, group)
    rho, momentum = group["alpha"], group["momentum"]
    velocity = state["square_avg"]
    velocity.mul_(rho).add_(grad.square().mul_(1 - rho))
    increment = grad.mul(group["lr"]).div_(velocity.add(group["eps"]).sqrt_())  # lr·g/√(v+ε)
    if momentum > 0:
        buf = state["momentum_buffer"]
        buf.mul_(momentum).add_(increment)  # lr lives in the buffer
        p.sub_(buf)
    else:
        p.sub_(increment)


def _sgd(p: torch.Tensor, grad: torch.Tensor, state: State, group: Group) -> None:
    grad = _decay(p, grad, group)
    momentum, lr = group["momentum"], group["lr"]
    if momentum == 0:
        p.sub_(grad.mul(lr))
        return
    buf = state["momentum_buffer"]
    buf.mul_(momentum).sub_(grad.mul(lr))  # m = μm − lr·g
    p.add_(buf.mul(momentum).sub_(grad.mul(lr)) if group["nesterov"] else buf)


def _adam(p: torch.Tensor, grad: torch.Tensor, state: State, group: Group) -> None:
    (beta1, beta2), lr = group["betas"], group["lr"]
    state["step"] += 1
    t = state["step"].item()
    grad = _decay(p, grad, group)
    m, v = state["exp_avg"], state["exp_avg_sq"]
    m.add_((grad - m).mul_(1 - beta1))
    v.add_((grad.square() - v).mul_(1 - beta2))
    alpha = lr * (1 - beta2**t) ** 0.5 / (1 - beta1**t)
    p.sub_(m.mul(alpha).div_(v.sqrt().add_(group["eps"])))


def _adamax(p: torch.Tensor, grad: torch.Tensor, state: State, group: Group) -> None:
    (beta1, beta2), lr = group["betas"], group["lr"]
    state["step"] += 1
    t = state["step"].item()
    grad = _decay(p, grad, group)
    m, u = state["exp_avg"], state["exp_inf"]
    m.add_((grad - m).mul_(1 - beta1))
    torch.maximum(u.mul_(beta2), grad.abs(), out=u)
    p.sub_(m.mul(lr).div_(u.add(group["eps"]).mul_(1 - beta1**t)))


def _sgd_state(p: torch.Tensor, group: Group) -> State:
    return {"momentum_buffer": zeros(p)} if group["momentum"] > 0 else {}


def _rmsprop_state(p: torch.Tensor, group: Group) -> State:
    return {"step": scalar(0.0), "square_avg": zeros(p),
            **({"momentum_buffer": zeros(p)} if group["momentum"] > 0 else {})}


KERAS_RULES: dict[str, Rule] = {
    "sgd": Rule({"momentum": 0.0, "nesterov": False}, _sgd_state, _sgd, "sgd (Keras rules)"),
    "rmsprop": Rule({"alpha": 0.9, "eps": 1e-7, "momentum": 0.0}, _rmsprop_state, _rmsprop, "rmsprop (Keras rules)"),
    "adam": Rule({"betas": (0.9, 0.999), "eps": 1e-7, "decoupled": False}, moments("exp_avg", "exp_avg_sq"),
                 _adam, "adam (Keras rules)"),
    "adamw": Rule({"betas": (0.9, 0.999), "eps": 1e-7, "decoupled": True}, moments("exp_avg", "exp_avg_sq"),
                  _adam, "adamw (Keras rules)"),
    "nadam": Rule({**RULES["nadam"].defaults, "eps": 1e-7, "momentum_decay": 1.0}, RULES["nadam"].state,
                  RULES["nadam"].update, "nadam (Keras rules)"),
    "adamax": Rule({"betas": (0.9, 0.999), "eps": 1e-7}, moments("exp_avg", "exp_inf"), _adamax,
                   "adamax (Keras rules)"),
}
