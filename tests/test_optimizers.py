"""cnnscope.trainer.rules_torch against torch.optim: the same weights, bit for bit, and state dicts that load
both ways."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from cnnscope.base.errors import ConfigError
from cnnscope.trainer.optim import OPTIMIZERS, make_optimizer
from cnnscope.trainer.rules_torch import Optimizer


def _torch_optimizer(name: str, params, lr: float, momentum: float, nesterov: bool, wd: float):
    """torch.optim with the hyperparameters cnnscope's registry sets (Keras' eps and RMSprop rho)."""
    common = {"lr": lr, "weight_decay": wd}
    if name == "sgd":
        return torch.optim.SGD(params, momentum=momentum, nesterov=nesterov, **common)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, alpha=0.9, eps=1e-7, momentum=momentum, **common)
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "nadam": torch.optim.NAdam,
           "adamax": torch.optim.Adamax}[name]
    return cls(params, eps=1e-7, **common)


def _params(seed: int) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    conv = torch.randn(4, 2, 3, 3, generator=g).contiguous(memory_format=torch.channels_last)
    return [torch.nn.Parameter(conv), torch.nn.Parameter(torch.randn(7, generator=g)),
            torch.nn.Parameter(torch.randn(3, 5, generator=g))]


def _run(make, steps: int, seed: int) -> tuple[list[torch.Tensor], object]:
    """`steps` updates with the same gradients (one parameter skipped on odd steps: no grad, no update)."""
    params = _params(seed)
    optimizer = make(params)
    g = torch.Generator().manual_seed(seed + 1)
    for step in range(steps):
        optimizer.zero_grad(set_to_none=True)
        for i, p in enumerate(params):
            grad = torch.randn(p.shape, generator=g)
            if not (i == 1 and step % 2):
                p.grad = grad
        optimizer.step()
    return [p.detach().clone() for p in params], optimizer


SETTINGS = [(name, momentum, nesterov, wd) for name in OPTIMIZERS for momentum, nesterov, wd in
            [(0.0, False, 0.0), (0.5, False, 0.01), (0.9, True, 0.0)]
            if not (nesterov and name != "sgd")]


@pytest.mark.parametrize(("name", "momentum", "nesterov", "wd"), SETTINGS)
def test_weights_are_bit_identical_to_torch_optim(name, momentum, nesterov, wd):
    ours, opt = _run(lambda p: make_optimizer(name, p, 0.01, momentum, nesterov, wd, rules="torch"), 7, 0)
    theirs, ref = _run(lambda p: _torch_optimizer(name, p, 0.01, momentum, nesterov, wd), 7, 0)
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a, b), (name, (a - b).abs().max())
    assert [set(s) for s in opt.state_dict()["state"].values()] == \
        [set(s) for s in ref.state_dict()["state"].values()]


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_state_dicts_load_both_ways_and_continue_identically(name):
    """Half the steps in one implementation, its state_dict loaded into the other, the rest there: the same as
    all the steps in torch.optim (a checkpoint of an older cnnscope, written by torch.optim, resumes)."""
    make_ours = lambda p: make_optimizer(name, p, 0.01, 0.5, rules="torch")  # noqa: E731
    make_torch = lambda p: _torch_optimizer(name, p, 0.01, 0.5, False, 0.0)  # noqa: E731
    reference, _ = _run(make_torch, 6, 3)
    for first, second in [(make_torch, make_ours), (make_ours, make_torch)]:
        _, half = _run(first, 3, 3)
        params = [p for group in half.param_groups for p in group["params"]]
        other = second(params)
        # as runs.load_training_state: the saved per-parameter state, the group settings of the run's optimizer
        other.load_state_dict({"state": half.state_dict()["state"], "param_groups": other.state_dict()["param_groups"]})
        _continue(params, other, seed=3)
        for a, b in zip(params, reference, strict=True):
            assert torch.equal(a.detach(), b), name


def _continue(params, optimizer, seed: int) -> None:
    """Steps 4-6 of _run(…, 6, seed): the same gradient stream, the first 3 steps' draws skipped."""
    g = torch.Generator().manual_seed(seed + 1)
    for step in range(6):
        grads = [torch.randn(p.shape, generator=g) for p in params]
        if step < 3:
            continue
        optimizer.zero_grad(set_to_none=True)
        for i, (p, grad) in enumerate(zip(params, grads, strict=True)):
            if not (i == 1 and step % 2):
                p.grad = grad
        optimizer.step()


def test_using_an_optimizer_does_not_import_dynamo():
    code = ("import sys, torch\nfrom cnnscope.trainer.optim import make_optimizer\n"
            "p = torch.nn.Parameter(torch.ones(3)); p.grad = torch.ones(3)\n"
            "for rules in ('keras', 'torch'):\n"
            "    o = make_optimizer('adam', [p], 0.1, rules=rules); o.step(); o.zero_grad()\n"
            "    o.load_state_dict(o.state_dict()); p.grad = torch.ones(3)\n"
            "print('torch._dynamo' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_zero_grad_without_set_to_none_zeroes():
    p = torch.nn.Parameter(torch.ones(2))
    p.grad = torch.full((2,), 3.0)
    opt = Optimizer("sgd", [p], 0.1)
    opt.zero_grad(set_to_none=False)
    assert torch.equal(p.grad, torch.zeros(2))
    opt.zero_grad()
    assert p.grad is None


def test_bad_arguments_are_config_errors():
    p = torch.nn.Parameter(torch.ones(2))
    with pytest.raises(ConfigError, match=r"optimizer 'sgd' has no setting \['betas'\]; valid: momentum, nesterov"):
        Optimizer("sgd", [p], 0.1, betas=(0.9, 0.9))
    with pytest.raises(ConfigError, match="needs a non-empty list of parameter tensors"):
        Optimizer("adam", [], 0.1)
    opt = Optimizer("adam", [p], 0.1)
    with pytest.raises(ValueError, match="the saved state is for 2 parameters in 1 groups; this optimizer has 1"):
        opt.load_state_dict({"state": {}, "param_groups": [{"params": [0, 1]}]})
