"""Declarative CNN specification: frozen dataclasses, validation, shapes, receptive fields.

A conv or dense layer may normalise its outputs (`batch_norm = true`): inside the one named layer the order is
conv (or dense) -> BatchNorm -> activation, so every view still shows one set of maps per conv layer, taken
after the activation. The presets live in `cnnscope.model.zoo` (which also reads a spec that names one), the
summaries in `cnnscope.model.summary`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnscope.base.display import RichDisplay
from cnnscope.base.errors import SpecError, check_number, choice_error
from cnnscope.base.fileio import atomic_write_text, read_json, read_toml, write_toml
from cnnscope.model.geometry import NO_PADDING, Geometry, Padding, window_padding
from cnnscope.model.layers import CONV, DENSE, DROPOUT, FLATTEN, POOL, POOL_PREFIXES, POOL_TYPES, has_maps

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
class BatchNormSpec:
    """Batch normalisation inside a conv/dense layer, before its activation. `momentum` follows PyTorch: the
    weight of each new batch in the running statistics (Keras' momentum 0.99 is 0.01 here). The defaults are
    PyTorch's (Keras' momentum 0.9): statistics that follow the weights within ~10 steps suit short trainings.
    `center`/`scale` learn a shift (beta) / a scale (gamma) per channel."""

    epsilon: float = 1e-5
    momentum: float = 0.1
    center: bool = True
    scale: bool = True

    def __post_init__(self) -> None:
        check_number(SpecError, "batch_norm epsilon", self.epsilon, 0, low_open=True)
        check_number(SpecError, "batch_norm momentum", self.momentum, 0, 1, low_open=True, high_open=False)
        for key in ("center", "scale"):
            if not isinstance(getattr(self, key), bool):
                raise SpecError(f"batch_norm {key} must be true or false, received {getattr(self, key)!r}")

    def params(self, channels: int) -> tuple[int, int]:
        """(all, non-trainable) parameters for `channels` channels, as Keras counts them (running mean and
        variance are the non-trainable two)."""
        return channels * (2 + self.center + self.scale), 2 * channels


def _batch_norm(value: Any) -> BatchNormSpec | None:
    """true / false / None / a table / a BatchNormSpec -> BatchNormSpec or None."""
    if value is None or value is False:
        return None
    if value is True:
        return BatchNormSpec()
    if isinstance(value, BatchNormSpec):
        return value
    if isinstance(value, dict):
        return BatchNormSpec(**_check_keys(value, BatchNormSpec, "batch_norm"))
    raise SpecError(f"batch_norm must be true, false or a table with epsilon, momentum, center, scale; received "
                    f"{value!r}")


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
    batch_norm: bool | BatchNormSpec | None = None  # true: conv -> BatchNorm -> activation, in this one layer

    def __post_init__(self) -> None:
        _positive_int(self.filters, "conv filters")
        object.__setattr__(self, "batch_norm", _batch_norm(self.batch_norm))
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
    batch_norm: bool | BatchNormSpec | None = None  # true: dense -> BatchNorm -> activation, in this one layer

    def __post_init__(self) -> None:
        _positive_int(self.units, "dense units")
        object.__setattr__(self, "batch_norm", _batch_norm(self.batch_norm))
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
        check_number(SpecError, "regularizer coefficient", self.coefficient, 0)


@dataclass(frozen=True)
class LayerInfo:
    """One resolved layer: name, Keras type name, kind (cnnscope.model.layers), output shape (C, H, W) or (units,),
    parameters and, for conv/pool layers, its window (kernel, stride, padding) and receptive-field geometry."""

    name: str
    type: str  # Conv2D, MaxPooling2D, AveragePooling2D, Flatten, Dropout, Dense
    output_shape: tuple[int, ...]
    params: int
    kind: str  # conv, pool, flatten, dense, dropout
    geometry: Geometry | None = None  # conv/pool layers: where each cell looks on the input (cnnscope.model.geometry)
    kernel: tuple[int, int] | None = None  # conv kernel / pool window (h, w)
    stride: tuple[int, int] | None = None
    padding: Padding | None = None  # ((top, bottom), (left, right)) zeros added before the window slides
    norm_params: int = 0  # of `params`, those of the layer's BatchNorm (4 per channel, as Keras counts them)
    non_trainable: int = 0  # of `params`, the BatchNorm's running mean and variance

    @property
    def has_maps(self) -> bool:
        """Whether the output is maps (conv and pool layers)."""
        return has_maps(self.kind)

    @property
    def receptive_field(self) -> tuple[int, int] | None:
        """(h, w) input pixels one output cell sees; None for layers without maps."""
        return None if self.geometry is None else self.geometry.receptive_field

    @property
    def jump(self) -> tuple[int, int] | None:
        """(h, w) input pixels between neighbouring output cells; None for layers without maps."""
        return None if self.geometry is None else self.geometry.jump

    @property
    def start(self) -> tuple[float, float] | None:
        """(y, x) input coordinate of the centre of cell (0, 0)'s field; None for layers without maps."""
        return None if self.geometry is None else self.geometry.start


def _window(geometry: Geometry, name: str, kernel: tuple[int, int], stride: tuple[int, int], padding: Padding,
            what: str) -> Geometry:
    """`geometry` moved through one conv/pool window; SpecError when the (padded) input is smaller than it."""
    (top, bottom), (left, right) = padding
    h, w = geometry.output_hw
    if h + top + bottom < kernel[0] or w + left + right < kernel[1]:
        raise SpecError(f"{name}: input is {h}×{w}, smaller than its {_fmt(kernel)} {what}")
    return geometry.then(kernel, stride, padding)


def _check_names(layers: list[LayerInfo]) -> None:
    seen: set[str] = set()
    for layer in layers:
        if not _NAME_RE.fullmatch(layer.name):
            raise SpecError(f"layer name {layer.name!r} is invalid; use letters, digits, '_' and '-'")
        if layer.name in seen:
            raise SpecError(f"layer name {layer.name!r} is used twice; layer names must be unique")
        seen.add(layer.name)


def _positive_int(value: Any, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError(f"{where} must be a positive integer, received {value!r}")


def describe_model(model: dict[str, Any]) -> str:
    """A short description of a [model] table (as read from a file, so any shape): 'conv 8-16 · dense 32'."""
    conv = [str(c.get("filters", "?")) for c in model.get("conv", []) if isinstance(c, dict)]
    dense = [str(d.get("units", "?")) for d in model.get("dense", []) if isinstance(d, dict)]
    parts = [f"conv {'-'.join(conv)}" if conv else "", f"dense {'-'.join(dense)}" if dense else ""]
    return " · ".join(p for p in parts if p) or "?"


@dataclass(frozen=True, repr=False)
class ModelSpec(RichDisplay):
    """A CNN: conv layers (each optionally followed by a pool), flatten, dense layers, output layer.

    In a notebook it shows its summary table (cnnscope.views.display); repr() is one line.
    """

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

    def __repr__(self) -> str:
        c, h, w = self.input_shape
        return (f"ModelSpec({describe_model(self.to_dict())} → {self.num_classes} classes, input {c}×{h}×{w}, "
                f"{self.total_params:,} params)")

    # --- resolution -------------------------------------------------------------------------
    def layers(self) -> list[LayerInfo]:
        """Resolve names, kinds, output shapes, parameter counts and geometry; raise SpecError on misfit."""
        out = self._map_layers()
        c, h, w = out[-1].output_shape if out else self.input_shape
        features = c * h * w
        out.append(LayerInfo(self.flatten_name or "Flatten_1", "Flatten", (features,), 0, FLATTEN))
        n_dropout = 0

        def dropout() -> None:
            nonlocal n_dropout
            if self.dropout > 0:
                n_dropout += 1
                out.append(LayerInfo(f"Dropout_{n_dropout}", "Dropout", (features,), 0, DROPOUT))

        dropout()
        for i, dense in enumerate(self.dense, start=1):
            norm, fixed = _norm_params(dense.batch_norm, dense.units)
            out.append(LayerInfo(dense.name or f"Dense_{i}", "Dense", (dense.units,),
                                 features * dense.units + dense.units + norm, DENSE, norm_params=norm,
                                 non_trainable=fixed))
            features = dense.units
            dropout()
        name = self.output_name or f"Dense_{len(self.dense) + 1}"
        out.append(LayerInfo(name, "Dense", (self.num_classes,), features * self.num_classes + self.num_classes,
                             DENSE))
        _check_names(out)
        return out

    def _map_layers(self) -> list[LayerInfo]:
        """The conv layers and their pools, each with its window and geometry."""
        out: list[LayerInfo] = []
        c = self.input_shape[0]
        geometry = Geometry.of_input(self.input_shape[1:])
        pool_counts = {"max": 0, "average": 0}
        for i, conv in enumerate(self.conv, start=1):
            name = conv.name or f"Conv2D_{i}"
            padding = window_padding(geometry.output_hw, conv.kernel, conv.stride, conv.padding)
            geometry = _window(geometry, name, conv.kernel, conv.stride, padding, "kernel")
            norm, fixed = _norm_params(conv.batch_norm, conv.filters)
            params = conv.filters * (c * conv.kernel[0] * conv.kernel[1] + 1) + norm
            c = conv.filters
            out.append(LayerInfo(name, "Conv2D", (c, *geometry.output_hw), params, CONV, geometry, conv.kernel,
                                 conv.stride, padding, norm, fixed))
            if conv.pool is not None:
                pool = conv.pool
                pool_counts[pool.kind] += 1
                pname = pool.name or f"{POOL_PREFIXES[pool.kind]}_{pool_counts[pool.kind]}"
                geometry = _window(geometry, pname, pool.size, pool.stride, NO_PADDING, "window")
                out.append(LayerInfo(pname, POOL_TYPES[pool.kind], (c, *geometry.output_hw), 0, POOL, geometry,
                                     pool.size, pool.stride, NO_PADDING))
        return out

    def layer_names(self, *kinds: str) -> list[str]:
        """Names of the layers, in order; only those of the given kinds (cnnscope.model.layers) when any are given."""
        return [layer.name for layer in self.layers() if not kinds or layer.kind in kinds]

    def map_layer_names(self) -> list[str]:
        """Names of the layers whose outputs are maps (conv and pool layers), in order."""
        return [layer.name for layer in self.layers() if layer.has_maps]

    @property
    def output_layer_name(self) -> str:
        """The output layer's name: the last dense layer, whose outputs are the logits (before softmax/sigmoid)."""
        return self.layers()[-1].name

    def layer(self, name: str) -> LayerInfo:
        """The resolved layer called `name`; SpecError listing the valid names otherwise."""
        for layer in self.layers():
            if layer.name == name:
                return layer
        raise choice_error(SpecError, "layer", name, self.layer_names())

    def geometry(self, name: str) -> Geometry:
        """Receptive-field geometry of conv/pool layer `name`; SpecError naming the layers with maps otherwise."""
        info = self.layer(name)
        if info.geometry is None:
            raise SpecError(f"layer {name!r} ({info.type}) has no receptive field; layers with maps: "
                            f"{', '.join(self.map_layer_names())}")
        return info.geometry

    @property
    def total_params(self) -> int:
        """Number of parameters of the whole model as Keras counts them (BatchNorm's running statistics too)."""
        return sum(layer.params for layer in self.layers())

    @property
    def trainable_params(self) -> int:
        """Number of parameters the optimizer updates (total_params less BatchNorm's running statistics)."""
        return sum(layer.params - layer.non_trainable for layer in self.layers())

    # --- (de)serialisation ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A plain dict (TOML/JSON-ready); `None` values are omitted, a default batch norm is `true`."""
        data = _drop_none(dataclasses.asdict(self))
        default = dataclasses.asdict(BatchNormSpec())
        for layer in (*data["conv"], *data["dense"]):
            if layer.get("batch_norm") == default:
                layer["batch_norm"] = True
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "model") -> ModelSpec:
        """Build from a dict, rejecting unknown keys with the list of valid ones."""
        data = dict(_check_keys(data, cls, where))
        if "preset" in data:
            raise SpecError(f"{where}: 'preset' cannot be combined with other model keys")
        try:
            data["conv"] = tuple(_conv_from(d, f"{where}.conv[{i}]") for i, d in enumerate(data.get("conv", [])))
            data["dense"] = tuple(_dense_from(d, f"{where}.dense[{i}]") for i, d in enumerate(data.get("dense", [])))
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
        """Read a full model description from .toml or .json (a [model] table or the bare keys); a file that
        names a preset is read by `cnnscope.model.zoo.load_spec`, which also reads these."""
        data = read_spec_table(path)
        if set(data) == {"preset"}:
            raise SpecError(f"{path} names a preset; read it with cnnscope.model.zoo.load_spec")
        return cls.from_dict(data, where=str(path))


def read_spec_table(path: str | Path) -> dict[str, Any]:
    """The model table of a .toml or .json file, checked to be a table."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"model spec file not found: {path}")
    data = read_json(path, SpecError) if path.suffix == ".json" else read_toml(path, SpecError)
    if not isinstance(data, dict):
        raise SpecError(f"{path}: expected a table of model settings, found {type(data).__name__}")
    data = data.get("model", data)
    if not isinstance(data, dict):
        raise SpecError(f"{path}: 'model' must be a table of settings, found {type(data).__name__}")
    return data


def _norm_params(norm: BatchNormSpec | None, channels: int) -> tuple[int, int]:
    return (0, 0) if norm is None else norm.params(channels)


def _conv_from(data: dict[str, Any], where: str) -> ConvSpec:
    data = dict(_check_keys(data, ConvSpec, where))
    if data.get("pool") is not None:
        data["pool"] = PoolSpec(**_check_keys(data["pool"], PoolSpec, f"{where}.pool"))
    try:
        return ConvSpec(**data)
    except SpecError as exc:
        raise SpecError(f"{where}: {exc}") from None


def _dense_from(data: dict[str, Any], where: str) -> DenseSpec:
    try:
        return DenseSpec(**_check_keys(data, DenseSpec, where))
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


MAX_PARAMS = 100_000_000  # 400 MB of fp32 weights (plus as much again for gradients and optimizer state)
MAX_ACTIVATIONS = 25_000_000  # values produced by all layers for ONE image (100 MB at fp32)


def check_model_size(spec: ModelSpec) -> None:
    """SpecError giving the figures when `spec` is too big to build (checked before any allocation)."""
    infos = spec.layers()
    params = sum(info.params for info in infos)
    if params > MAX_PARAMS:
        raise SpecError(f"the model has {params:,} parameters ({params * 4 / 2**30:.1f} GiB at fp32), more than "
                        f"the limit of {MAX_PARAMS:,}; use fewer filters or units, or pool before the dense layers")
    values = sum(math.prod(info.output_shape) for info in infos)
    if values > MAX_ACTIVATIONS:
        raise SpecError(f"the model produces {values:,} activation values per image ({values * 4 / 2**20:,.0f} "
                        f"MiB at fp32), more than the limit of {MAX_ACTIVATIONS:,}; use a smaller input, fewer "
                        f"filters or larger strides")
