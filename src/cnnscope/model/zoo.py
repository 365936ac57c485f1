"""The preset models: the article series' seed-ii and seed-iv, `tiny` for tests, and models for the recipes in
configs/ (`seed-iv-bn`, `seed-iv-bn-same`, `cifar-small`). `cnnscope.presets` is this module's `presets` dict."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from cnnscope.base.errors import SpecError, choice_error
from cnnscope.model.spec import ConvSpec, DenseSpec, ModelSpec, PoolSpec, RegularizerSpec, read_spec_table

__all__ = ["get_preset", "load_spec", "presets", "spec_from_any"]


def _series(c3: int, dense: int, l2: float) -> ModelSpec:
    return ModelSpec(
        conv=(ConvSpec(32, pool=PoolSpec("max", 2)), ConvSpec(64, pool=PoolSpec("max", 2)), ConvSpec(c3)),
        dense=(DenseSpec(dense),),
        regularizer=RegularizerSpec("l2", l2) if l2 else RegularizerSpec(),
    )


def _with_batch_norm(spec: ModelSpec) -> ModelSpec:
    """`spec` with batch norm in every conv and hidden dense layer."""
    return dataclasses.replace(spec, conv=tuple(dataclasses.replace(c, batch_norm=True) for c in spec.conv),
                               dense=tuple(dataclasses.replace(d, batch_norm=True) for d in spec.dense))


def _same_first(spec: ModelSpec) -> ModelSpec:
    """`spec` with its first conv `same`-padded: the first maps stay 28×28, so the edges of the picture are seen
    whole and the last conv's maps are 4×4 instead of 3×3."""
    return dataclasses.replace(spec, conv=(dataclasses.replace(spec.conv[0], padding="same"), *spec.conv[1:]))


def _cifar_small() -> ModelSpec:
    """32×32×3: two blocks of two same-padded 3×3 convs (32, 64) and a 128 conv, each block max-pooled; all with
    batch norm; dense 64 with batch norm; dropout 0.25. Maps of 32×32, 16×16, 8×8 and 4×4; 272,746 parameters
    (768 of them running statistics)."""
    same = {"padding": "same", "batch_norm": True}
    return ModelSpec(
        conv=(ConvSpec(32, **same), ConvSpec(32, pool=PoolSpec(), **same),
              ConvSpec(64, **same), ConvSpec(64, pool=PoolSpec(), **same),
              ConvSpec(128, pool=PoolSpec(), **same)),
        dense=(DenseSpec(64, batch_norm=True),), input_shape=(3, 32, 32), dropout=0.25)


presets: dict[str, ModelSpec] = {
    # Article II: conv 32/64/64, dense 70 -> 96,844 parameters.
    "seed-ii": _series(64, 70, 0.0),
    # Article IV: conv 32/64/128, dense 100, L2 0.001 on the dense layers -> 208,982 parameters.
    "seed-iv": _series(128, 100, 0.001),
    # A small model for quick experiments and tests.
    "tiny": ModelSpec(conv=(ConvSpec(8, pool=PoolSpec()), ConvSpec(16, pool=PoolSpec())), dense=(DenseSpec(32),)),
    # seed-iv with batch norm (conv -> BatchNorm -> relu) in every conv and hidden dense layer: 210,278 parameters
    # (648 of them BatchNorm's running statistics).
    "seed-iv-bn": _with_batch_norm(_series(128, 100, 0.001)),
    # seed-iv-bn with a same-padded Conv2D_1: maps 28, 14→12, 6→4; 299,878 parameters (648 running statistics),
    # ~1.3× the computation of seed-iv-bn. The model of configs/fashion-mnist-fast.toml.
    "seed-iv-bn-same": _same_first(_with_batch_norm(_series(128, 100, 0.001))),
    # A simple CNN for 32×32 colour images (CIFAR-10): configs/cifar10-fast.toml.
    "cifar-small": _cifar_small(),
}


def get_preset(name: str) -> ModelSpec:
    """The preset model spec called `name`; SpecError listing the presets for an unknown name."""
    if name not in presets:
        raise choice_error(SpecError, "preset", name, presets)
    return presets[name]


def spec_from_any(data: dict[str, Any], where: str = "model") -> ModelSpec:
    """A spec from a dict that is either `{"preset": NAME}` or a full model description."""
    if set(data) == {"preset"}:
        return get_preset(data["preset"])
    return ModelSpec.from_dict(data, where)


def load_spec(path: str | Path) -> ModelSpec:
    """Read a model from .toml or .json: a full description (a [model] table or the bare keys) or
    `preset = "…"`."""
    return spec_from_any(read_spec_table(path), where=str(path))
