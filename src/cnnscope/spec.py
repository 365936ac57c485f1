"""Declarative CNN specification: frozen dataclasses, validation, shapes, receptive fields, presets."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import SpecError, choice_error
from .fileio import atomic_write_text, read_toml, write_toml

ACTIVATIONS = ("relu", "sigmoid", "elu", "selu", "tanh", "gelu", "linear")
OUTPUT_ACTIVATIONS = ("softmax", "sigmoid")
POOL_KINDS = ("max", "average")
PADDINGS = ("valid", "same")
REGULARIZERS = ("none", "l1", "l2")
_NAME_RE = re.compile(r"[A-Za-z0-9_-]+")


def _pair(value: Any, where: str) -> tuple[int, int]:
    """Accept 3 or (3, 3) / [3, 3]; return a pair of positive ints."""
    if isinstance(value, bool):
        raise SpecError(f"{where}: expected a positive integer or a pair, received {value!r}")
    if isinstance(value, int):
        value = (value, value)
    if not (isinstance(value, (tuple, list)) and len(value) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value)):
        raise SpecError(f"{where}: expected a positive integer or a pair, received {value!r}")
    if min(value) < 1:
        raise SpecError(f"{where}: must be >= 1, received {list(value)}")
    return (int(value[0]), int(value[1]))


def _fmt(pair: tuple[int, int]) -> str:
    return f"{pair[0]}×{pair[1]}"


@dataclass(frozen=True)
class PoolSpec:
    """A pooling layer placed after a conv layer."""

    kind: str = "max"
    size: int | tuple[int, int] = 2
    stride: int | tuple[int, int] | None = None  # None: same as size (Keras' default)
    name: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in POOL_KINDS:
            raise choice_error(SpecError, "pool kind", self.kind, POOL_KINDS)
        object.__setattr__(self, "size", _pair(self.size, "pool size"))
        stride = self.size if self.stride is None else self.stride
        object.__setattr__(self, "stride", _pair(stride, "pool stride"))


@dataclass(frozen=True)
class ConvSpec:
    """A 2-D convolution with its activation (Keras semantics: the layer's output is activated)."""

    filters: int
    kernel: int | tuple[int, int] = 3
    stride: int | tuple[int, int] = 1
    padding: str = "valid"
    activation: str = "relu"
    pool: PoolSpec | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        _positive_int(self.filters, "conv filters")
        object.__setattr__(self, "kernel", _pair(self.kernel, "conv kernel"))
        object.__setattr__(self, "stride", _pair(self.stride, "conv stride"))
        if self.padding not in PADDINGS:
            raise choice_error(SpecError, "padding", self.padding, PADDINGS)
        if self.activation not in ACTIVATIONS:
            raise choice_error(SpecError, "activation", self.activation, ACTIVATIONS)


@dataclass(frozen=True)
class DenseSpec:
    """A hidden fully connected layer."""

    units: int
    activation: str = "relu"
    name: str | None = None

    def __post_init__(self) -> None:
        _positive_int(self.units, "dense units")
        if self.activation not in ACTIVATIONS:
            raise choice_error(SpecError, "activation", self.activation, ACTIVATIONS)


@dataclass(frozen=True)
class RegularizerSpec:
    """Weight penalty added to the loss, Keras-style: coefficient * sum(|w|) or sum(w²) of kernels."""

    kind: str = "none"
    coefficient: float = 0.0
    conv: bool = False  # also penalise conv kernels (dense kernels always are)

    def __post_init__(self) -> None:
        if self.kind not in REGULARIZERS:
            raise choice_error(SpecError, "regularizer", self.kind, REGULARIZERS)
        if not isinstance(self.coefficient, (int, float)) or self.coefficient < 0:
            raise SpecError(f"regularizer coefficient must be >= 0, received {self.coefficient!r}")


@dataclass(frozen=True)
class LayerInfo:
    """One resolved layer: its name, type, output shape (C, H, W) or (units,), params, receptive field."""

    name: str
    type: str
    output_shape: tuple[int, ...]
    params: int
    receptive_field: int | None  # side, in input pixels, of the patch one output node sees
    jump: int | None  # input pixels between neighbouring output nodes


def _positive_int(value: Any, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError(f"{where} must be a positive integer, received {value!r}")


@dataclass(frozen=True)
class ModelSpec:
    """A CNN: conv layers (each optionally followed by a pool), flatten, dense layers, output layer."""

    conv: tuple[ConvSpec, ...] = ()
    dense: tuple[DenseSpec, ...] = ()
    input_shape: tuple[int, int, int] = (1, 28, 28)  # (C, H, W)
    num_classes: int = 10
    output_activation: str = "softmax"
    dropout: float = 0.0  # after the flatten and each hidden dense layer when > 0
    regularizer: RegularizerSpec = field(default_factory=RegularizerSpec)
    output_name: str | None = None
    flatten_name: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "conv", tuple(self.conv))
        object.__setattr__(self, "dense", tuple(self.dense))
        shape = self.input_shape
        if not (isinstance(shape, (tuple, list)) and len(shape) == 3 and all(
                isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in shape)):
            raise SpecError(f"input_shape must be three positive integers (C, H, W), received {shape!r}")
        object.__setattr__(self, "input_shape", tuple(shape))
        _positive_int(self.num_classes, "num_classes")
        if self.output_activation not in OUTPUT_ACTIVATIONS:
            raise choice_error(SpecError, "output activation", self.output_activation, OUTPUT_ACTIVATIONS)
        if not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise SpecError(f"dropout must be in [0, 1), received {self.dropout!r}")
        self.layers()  # validates shapes and names

    # --- resolution -------------------------------------------------------------------------
    def layers(self) -> list[LayerInfo]:
        """Resolve names, output shapes, parameter counts and receptive fields; raise SpecError on misfit."""
        out: list[LayerInfo] = []
        c, h, w = self.input_shape
        rf, jump = 1, 1
        pool_counts = {"max": 0, "average": 0}
        for i, conv in enumerate(self.conv, start=1):
            name = conv.name or f"Conv2D_{i}"
            (kh, kw), (sh, sw) = conv.kernel, conv.stride
            if conv.padding == "valid":
                if h < kh or w < kw:
                    raise SpecError(f"{name}: input is {h}×{w}, smaller than its {_fmt(conv.kernel)} kernel")
                h, w = (h - kh) // sh + 1, (w - kw) // sw + 1
            else:
                h, w = math.ceil(h / sh), math.ceil(w / sw)
            params = conv.filters * (c * kh * kw + 1)
            c = conv.filters
            rf += (max(kh, kw) - 1) * jump
            jump *= max(sh, sw)
            out.append(LayerInfo(name, "Conv2D", (c, h, w), params, rf, jump))
            if conv.pool is not None:
                pool = conv.pool
                pool_counts[pool.kind] += 1
                prefix = "Max_Pool" if pool.kind == "max" else "Avg_Pool"
                pname = pool.name or f"{prefix}_{pool_counts[pool.kind]}"
                (ph, pw), (qh, qw) = pool.size, pool.stride
                if h < ph or w < pw:
                    raise SpecError(f"{pname}: input is {h}×{w}, smaller than its {_fmt(pool.size)} window")
                h, w = (h - ph) // qh + 1, (w - pw) // qw + 1
                rf += (max(ph, pw) - 1) * jump
                jump *= max(qh, qw)
                kind = "MaxPooling2D" if pool.kind == "max" else "AveragePooling2D"
                out.append(LayerInfo(pname, kind, (c, h, w), 0, rf, jump))
        features = c * h * w
        out.append(LayerInfo(self.flatten_name or "Flatten_1", "Flatten", (features,), 0, None, None))
        n_dropout = 0
        if self.dropout > 0:
            n_dropout += 1
            out.append(LayerInfo(f"Dropout_{n_dropout}", "Dropout", (features,), 0, None, None))
        for i, dense in enumerate(self.dense, start=1):
            name = dense.name or f"Dense_{i}"
            out.append(LayerInfo(name, "Dense", (dense.units,), features * dense.units + dense.units, None, None))
            features = dense.units
            if self.dropout > 0:
                n_dropout += 1
                out.append(LayerInfo(f"Dropout_{n_dropout}", "Dropout", (features,), 0, None, None))
        name = self.output_name or f"Dense_{len(self.dense) + 1}"
        out.append(LayerInfo(name, "Dense", (self.num_classes,), features * self.num_classes + self.num_classes,
                             None, None))
        seen: set[str] = set()
        for layer in out:
            if not _NAME_RE.fullmatch(layer.name):
                raise SpecError(f"layer name {layer.name!r} is invalid; use letters, digits, '_' and '-'")
            if layer.name in seen:
                raise SpecError(f"layer name {layer.name!r} is used twice; layer names must be unique")
            seen.add(layer.name)
        return out

    def layer_names(self) -> list[str]:
        return [layer.name for layer in self.layers()]

    def layer(self, name: str) -> LayerInfo:
        """The resolved layer called `name`; SpecError listing the valid names otherwise."""
        for layer in self.layers():
            if layer.name == name:
                return layer
        raise choice_error(SpecError, "layer", name, self.layer_names())

    @property
    def total_params(self) -> int:
        return sum(layer.params for layer in self.layers())

    # --- (de)serialisation ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A plain dict (TOML/JSON-ready); `None` values are omitted."""
        return _drop_none(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "model") -> ModelSpec:
        """Build from a dict, rejecting unknown keys with the list of valid ones."""
        data = dict(_check_keys(data, cls, where))
        if "preset" in data:
            raise SpecError(f"{where}: 'preset' cannot be combined with other model keys")
        try:
            data["conv"] = tuple(_conv_from(d, f"{where}.conv[{i}]") for i, d in enumerate(data.get("conv", [])))
            data["dense"] = tuple(DenseSpec(**_check_keys(d, DenseSpec, f"{where}.dense[{i}]"))
                                  for i, d in enumerate(data.get("dense", [])))
            if "regularizer" in data:
                data["regularizer"] = RegularizerSpec(**_check_keys(data["regularizer"], RegularizerSpec,
                                                                    f"{where}.regularizer"))
            if "input_shape" in data:
                data["input_shape"] = tuple(data["input_shape"])
            return cls(**data)
        except TypeError as exc:  # a required key is missing
            raise SpecError(f"{where}: {exc}") from None

    def save(self, path: str | Path) -> None:
        """Write the spec to .toml or .json (chosen by suffix)."""
        path = Path(path)
        if path.suffix == ".json":
            atomic_write_text(path, json.dumps(self.to_dict(), indent=2))
        else:
            write_toml(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> ModelSpec:
        """Read a spec from .toml or .json; a [model] table or `preset = "…"` is accepted."""
        path = Path(path)
        if not path.is_file():
            raise SpecError(f"model spec file not found: {path}")
        if path.suffix == ".json":
            try:
                data = json.loads(path.read_text())
            except json.JSONDecodeError as exc:
                raise SpecError(f"{path}: not valid JSON ({exc})") from None
        else:
            data = read_toml(path, SpecError)
        data = data.get("model", data)
        return spec_from_any(data, where=str(path))


def spec_from_any(data: dict[str, Any], where: str = "model") -> ModelSpec:
    """A spec from a dict that is either `{"preset": NAME}` or a full model description."""
    if set(data) == {"preset"}:
        return get_preset(data["preset"])
    return ModelSpec.from_dict(data, where)


def _conv_from(data: dict[str, Any], where: str) -> ConvSpec:
    data = dict(_check_keys(data, ConvSpec, where))
    if data.get("pool") is not None:
        data["pool"] = PoolSpec(**_check_keys(data["pool"], PoolSpec, f"{where}.pool"))
    try:
        return ConvSpec(**data)
    except SpecError as exc:
        raise SpecError(f"{where}: {exc}") from None


def _check_keys(data: Any, cls: type, where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise SpecError(f"{where}: expected a table, received {data!r}")
    valid = [f.name for f in dataclasses.fields(cls)]
    extra = [k for k in data if k not in valid and not (cls is ModelSpec and k == "preset")]
    if extra:
        raise SpecError(f"{where}: unknown key {extra[0]!r}; valid: {', '.join(valid)}")
    return data


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_drop_none(v) for v in value]
    return value


# --- presets --------------------------------------------------------------------------------
def _series(c3: int, dense: int, l2: float) -> ModelSpec:
    return ModelSpec(
        conv=(ConvSpec(32, pool=PoolSpec("max", 2)), ConvSpec(64, pool=PoolSpec("max", 2)), ConvSpec(c3)),
        dense=(DenseSpec(dense),),
        regularizer=RegularizerSpec("l2", l2) if l2 else RegularizerSpec(),
    )


presets: dict[str, ModelSpec] = {
    # Article II: conv 32/64/64, dense 70 -> 96,844 parameters.
    "seed-ii": _series(64, 70, 0.0),
    # Article IV: conv 32/64/128, dense 100, L2 0.001 on the dense layers -> 208,982 parameters.
    "seed-iv": _series(128, 100, 0.001),
    # A small model for quick experiments and tests.
    "tiny": ModelSpec(conv=(ConvSpec(8, pool=PoolSpec()), ConvSpec(16, pool=PoolSpec())), dense=(DenseSpec(32),)),
}


def get_preset(name: str) -> ModelSpec:
    if name not in presets:
        raise choice_error(SpecError, "preset", name, presets)
    return presets[name]


# --- summary --------------------------------------------------------------------------------
def summary_dict(spec: ModelSpec) -> dict[str, Any]:
    """Keras-like summary as data: layers with shapes, params and receptive fields, and totals."""
    layers = spec.layers()
    return {
        "input_shape": list(spec.input_shape),
        "layers": [{"name": layer.name, "type": layer.type, "output_shape": list(layer.output_shape),
                    "params": layer.params, "receptive_field": layer.receptive_field} for layer in layers],
        "total_params": sum(layer.params for layer in layers),
        "trainable_params": sum(layer.params for layer in layers),
        "regularizer": dataclasses.asdict(spec.regularizer),
    }


def summary_table(spec: ModelSpec) -> str:
    """Keras-like summary as text: name (type), output shape (C, H, W), params, receptive field."""
    rows = [("Layer (type)", "Output shape", "Param #", "Receptive field")]
    for layer in spec.layers():
        rf = f"{layer.receptive_field}×{layer.receptive_field}" if layer.receptive_field else ""
        rows.append((f"{layer.name} ({layer.type})", str(layer.output_shape).replace(",)", ")"),
                     f"{layer.params:,}", rf))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    line = "─" * (sum(widths) + 6)

    def fmt(row: tuple[str, ...]) -> str:
        return "  ".join(cell.ljust(width) if i in (0, 1) else cell.rjust(width)
                         for i, (cell, width) in enumerate(zip(row, widths, strict=False))).rstrip()

    total = spec.total_params
    reg = spec.regularizer
    reg_text = "none" if reg.kind == "none" else f"{reg.kind} {reg.coefficient:g} on dense" + (
        " and conv" if reg.conv else "") + " kernels"
    lines = [f"Input shape (C, H, W): {spec.input_shape}", line, fmt(rows[0]), line,
             *(fmt(r) for r in rows[1:]), line,
             f"Total params: {total:,}", f"Trainable params: {total:,}", "Non-trainable params: 0",
             f"Output: {spec.num_classes} classes, {spec.output_activation}; regularizer: {reg_text}"]
    return "\n".join(lines)
