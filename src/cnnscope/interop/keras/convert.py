"""Keras layers -> cnnscope slots, as a table of converters: one small function per Keras layer class.

`layer_chain` gives the model's layers in order (Sequential, or a Functional model that is a simple chain);
keras_import.translate calls each layer's converter from CONVERTERS on a shared `State`; the converters check
the layer's config, collect Conv2D/pool/Dense slots, fold standalone activations into the layer before them and
note what is dropped. The config is untrusted: every value is type-checked; anything malformed gives one
KerasImportError line naming the layer.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cnnscope.base.errors import KerasImportError, brief
from cnnscope.interop.keras.files import config_layers, layer_name
from cnnscope.model.spec import ACTIVATIONS, BatchNormSpec, PoolSpec

__all__ = ["ACTIVATION_LAYERS", "CONVERTERS", "DROPOUT_LAYERS", "KerasLayer", "State", "as_int", "as_pair",
           "converter", "layer_chain"]

log = logging.getLogger("cnnscope")

MAX_LAYERS = 1000
ACTIVATION_LAYERS = ("Activation", "ReLU", "ELU", "Softmax")
DROPOUT_LAYERS = ("Dropout", "SpatialDropout2D")
_POOLS = {"MaxPooling2D": "max", "MaxPool2D": "max", "AveragePooling2D": "average", "AvgPool2D": "average"}
# Activations that commute with max pooling (non-decreasing), so they may be folded across a MaxPooling2D.
_MONOTONIC = ("relu", "sigmoid", "elu", "selu", "tanh", "linear")


# --- the layer chain --------------------------------------------------------------------------------
def _history(obj: Any, depth: int = 0) -> list[str]:
    """Names of the layers feeding one inbound node (Keras 2 lists or Keras 3 `__keras_tensor__` dicts)."""
    if depth > 32:
        return []
    if isinstance(obj, dict):
        if obj.get("class_name") == "__keras_tensor__":
            history = obj.get("config", {}).get("keras_history") if isinstance(obj.get("config"), dict) else None
            return [brief(history[0], 60).strip("'")] if isinstance(history, list) and history else []
        return [name for value in obj.values() for name in _history(value, depth + 1)]
    if isinstance(obj, list):
        if len(obj) >= 3 and isinstance(obj[0], str) and isinstance(obj[1], int):  # Keras 2: [name, node, i, {}]
            return [obj[0]]
        return [name for value in obj for name in _history(value, depth + 1)]
    return []


def _endpoints(value: Any) -> list[str]:
    if not isinstance(value, list):
        return []
    if value and isinstance(value[0], str):
        return [value[0]]  # Keras 3 writes a single input as [name, 0, 0]
    return [v[0] if isinstance(v[0], str) else brief(v[0], 60) for v in value if isinstance(v, list) and v]


def _consumers(layers: list[dict[str, Any]], where: str) -> dict[str, list[str]]:
    """Layer name -> the layers it feeds; KerasImportError for shared layers and merges."""
    consumers: dict[str, list[str]] = {layer_name(layer): [] for layer in layers}
    for layer in layers:
        name, nodes = layer_name(layer), layer.get("inbound_nodes") or []
        nodes = nodes if isinstance(nodes, list) else [nodes]
        cls = brief(layer.get("class_name"), 60).strip("'")
        if len(nodes) > 1:
            raise KerasImportError(f"{where}: layer {name!r} ({cls}) is called {len(nodes)} times "
                                   f"(a shared layer); only a simple chain of layers is supported")
        sources = _history(nodes[0]) if nodes else []
        if len(sources) > 1:
            raise KerasImportError(f"{where}: layer {name!r} ({cls}) merges {len(sources)} inputs "
                                   f"({', '.join(sources)}): branching graphs are not supported")
        for source in sources:
            consumers.setdefault(source, []).append(name)
    return consumers


def layer_chain(config: dict[str, Any], where: str = "model") -> list[dict[str, Any]]:
    """The model's layers in order; KerasImportError unless it is a Sequential or a linear Functional model."""
    if not isinstance(config, dict) or "class_name" not in config:
        raise KerasImportError(f"{where}: model config has no 'class_name'; not a Keras model")
    kind, layers = config["class_name"], config_layers(config)
    if len(layers) > MAX_LAYERS:
        raise KerasImportError(f"{where}: the model has {len(layers):,} layers, more than {MAX_LAYERS:,}")
    if kind == "Sequential":
        return layers
    if kind not in ("Functional", "Model"):
        raise KerasImportError(f"{where}: unsupported model class {brief(kind, 60)}; only Sequential and "
                               f"Functional models (no subclassed models) can be imported")
    inner = config["config"] if isinstance(config.get("config"), dict) else {}
    inputs, outputs = _endpoints(inner.get("input_layers")), _endpoints(inner.get("output_layers"))
    if len(inputs) != 1 or len(outputs) != 1:
        raise KerasImportError(f"{where}: the model has {len(inputs)} inputs and {len(outputs)} outputs; only "
                               f"single-input, single-output chains are supported")
    by_name = {layer_name(layer): layer for layer in layers}
    consumers = _consumers(layers, where)
    chain, current = [], inputs[0]
    while len(chain) <= len(layers):
        if current not in by_name:
            raise KerasImportError(f"{where}: the graph refers to an unknown layer {brief(current, 60)}")
        chain.append(by_name[current])
        if current == outputs[0]:
            break
        nxt = consumers.get(current, [])
        if len(nxt) != 1:
            raise KerasImportError(f"{where}: layer {current!r} feeds {len(nxt)} layers ({', '.join(nxt) or 'none'})"
                                   f": branching graphs are not supported")
        current = nxt[0]
    if len(chain) != len(layers):
        extra = [name for name in by_name if name not in {layer_name(layer) for layer in chain}] or ["(a cycle)"]
        raise KerasImportError(f"{where}: layers {', '.join(extra)} are not on the input-output path: branching "
                               f"graphs are not supported")
    return chain


# --- config values ----------------------------------------------------------------------------------
def _activation(value: Any) -> str:
    """'relu' from 'relu', {'class_name': 'function', 'config': 'relu'} or {'class_name': 'ReLU'}."""
    if value is None:
        return "linear"
    if isinstance(value, dict):
        inner = value.get("config")
        value = inner if isinstance(inner, str) else value.get("class_name", "?")
    return value.lower() if isinstance(value, str) else brief(value, 60)


def _regularizer(value: Any) -> tuple[str, float] | str | None:
    """('l2', 0.001), None (no penalty) or a text describing a penalty our spec cannot hold."""
    if value is None:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("config") or {}, dict):
        return brief(value, 80)
    kind, cfg = str(value.get("class_name", "")).lower(), value.get("config") or {}
    described = f"{brief(value.get('class_name'), 40)}({brief(cfg, 80)})"
    if kind not in ("l1", "l2", "l1l2", "l1_l2"):
        return described
    terms = {k: cfg.get(k) for k in ("l1", "l2") if cfg.get(k)}
    if len(terms) > 1 or not all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in terms.values()):
        return described
    # Keras 2 stores float32 values (0.0010000000474974513): keep the float32's shortest decimal, 0.001.
    return next((k, float(str(np.float32(v)))) for k, v in terms.items()) if terms else None


def as_int(value: Any) -> int | None:
    """`value` as an int when it is one (or an integral float), within int32; None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer() and abs(value) < 2 ** 31:
        return int(value)
    return value if isinstance(value, int) and abs(value) < 2 ** 31 else None


def as_pair(value: Any, what: str, fail: Callable[[str], KerasImportError]) -> tuple[int, int]:
    """(a, b) from an int or a two-int list; `fail(message)` is raised otherwise."""
    if as_int(value) is not None:
        return (as_int(value), as_int(value))
    if isinstance(value, (list, tuple)) and len(value) == 2 and None not in (as_int(value[0]), as_int(value[1])):
        return (as_int(value[0]), as_int(value[1]))
    raise fail(f"{what} must be an integer or a pair of integers, found {brief(value, 60)}")


# --- converters: one small function per Keras layer class -----------------------------------------------
@dataclass
class KerasLayer:
    """One Keras layer of the chain: position, class, name and config."""

    index: int
    cls: str
    name: str
    cfg: dict[str, Any]


@dataclass
class _Slot:
    """A Conv2D or Dense layer being mapped, with what has been folded into it."""

    kind: str  # "conv" or "dense"
    name: str
    cfg: dict[str, Any]
    activation: str
    pool: PoolSpec | None = None
    between: list[str] = field(default_factory=list)  # layer classes seen since this layer
    batch_norm: BatchNormSpec | None = None  # a BatchNormalization folded in (between it and the activation)
    norm_layer: str | None = None  # that BatchNormalization's Keras name (its weights are read under it)


@dataclass
class State:
    """What the converters build while walking the chain."""

    where: str
    chain: list[KerasLayer]
    notes: list[str] = field(default_factory=list)
    input_shape: Any = None
    slots: list[_Slot] = field(default_factory=list)
    flatten_name: str | None = None
    dropouts: list[tuple[str, str, float]] = field(default_factory=list)  # (layer name, position, rate)
    bias_free: list[str] = field(default_factory=list)
    regs: dict[str, Any] = field(default_factory=dict)

    def fail(self, layer: KerasLayer, what: str) -> KerasImportError:
        """A KerasImportError naming the file, the layer and what is wrong with it."""
        return KerasImportError(f"{self.where}: layer {layer.name!r} ({layer.cls}): {what}")

    def of(self, kind: str) -> list[_Slot]:
        """The slots of one kind, in chain order."""
        return [slot for slot in self.slots if slot.kind == kind]


Converter = Callable[[State, KerasLayer], None]
CONVERTERS: dict[str, Converter] = {}


def converter(*classes: str) -> Callable[[Converter], Converter]:
    """Register a function as the converter of the given Keras layer classes."""
    def register(fn: Converter) -> Converter:
        CONVERTERS.update(dict.fromkeys(classes, fn))
        return fn
    return register


@converter("InputLayer")
def _input_layer(s: State, layer: KerasLayer) -> None:
    if layer.index != 0:
        raise s.fail(layer, "an InputLayer inside the model is not supported")
    s.input_shape = layer.cfg.get("batch_input_shape") or layer.cfg.get("batch_shape") or s.input_shape


def _weighted(s: State, layer: KerasLayer, kind: str) -> _Slot:
    """Checks and bookkeeping shared by Conv2D and Dense: data format, quantization, bias, regularizers."""
    cfg = layer.cfg
    if cfg.get("data_format", "channels_last") not in (None, "channels_last"):
        raise s.fail(layer, f"data_format={brief(cfg['data_format'], 40).strip(chr(39))} is not supported (only "
                            f"channels_last)")
    dtype = cfg.get("dtype")
    policy = dtype.get("config", {}) if isinstance(dtype, dict) else dtype
    policy = policy.get("name", "") if isinstance(policy, dict) else policy
    if isinstance(policy, str) and re.search(r"int8|int4|float8", policy):
        raise s.fail(layer, f"quantized layers ({policy}) are not supported")
    if cfg.get("lora_rank"):
        raise s.fail(layer, "LoRA-enabled layers are not supported")
    if cfg.get("use_bias") is False:
        s.bias_free.append(layer.name)
    s.regs[layer.name] = _regularizer(cfg.get("kernel_regularizer"))
    s.notes.extend(f"{layer.name}: {key} ignored (it only affects training)"
                   for key in ("bias_regularizer", "activity_regularizer") if cfg.get(key))
    slot = _Slot(kind, layer.name, cfg, _activation(cfg.get("activation")))
    s.slots.append(slot)
    return slot


def _size(s: State, layer: KerasLayer, key: str) -> int:
    value = as_int(layer.cfg.get(key))
    if value is None or value < 1:
        raise s.fail(layer, f"{key} must be a positive integer, found {brief(layer.cfg.get(key), 60)}")
    return value


@converter("Conv2D")
def _conv2d(s: State, layer: KerasLayer) -> None:
    cfg, fail = layer.cfg, lambda what: s.fail(layer, what)
    if s.flatten_name is not None:
        raise fail("a Conv2D after Flatten is not supported")
    if as_pair(cfg.get("dilation_rate", 1), "dilation_rate", fail) != (1, 1):
        raise fail(f"dilation_rate={cfg['dilation_rate']} is not supported (only 1)")
    if as_int(cfg.get("groups", 1) or 1) != 1:
        raise fail(f"groups={brief(cfg['groups'], 40)} is not supported (only 1)")
    if cfg.get("padding", "valid") not in ("valid", "same"):
        raise fail(f"padding={brief(cfg.get('padding'), 40)} is not supported (valid or same)")
    _size(s, layer, "filters")
    as_pair(cfg.get("kernel_size"), "kernel_size", fail)
    as_pair(cfg.get("strides", 1), "strides", fail)
    slot = _weighted(s, layer, "conv")
    if slot.activation not in ACTIVATIONS:
        raise fail(f"activation {slot.activation!r} is not supported; valid: {', '.join(ACTIVATIONS)}")


@converter(*_POOLS)
def _pool(s: State, layer: KerasLayer) -> None:
    fail = lambda what: s.fail(layer, what)  # noqa: E731
    convs = s.of("conv")
    if not convs or convs[-1].pool is not None or s.slots[-1] is not convs[-1] or "Flatten" in convs[-1].between:
        raise fail("a pooling layer must directly follow a Conv2D (one pool per Conv2D)")
    if layer.cfg.get("padding", "valid") != "valid":
        raise fail(f"padding={brief(layer.cfg.get('padding'), 40)} is not supported for pooling (only valid)")
    size = as_pair(layer.cfg.get("pool_size", 2), "pool_size", fail)
    stride = as_pair(layer.cfg.get("strides") or size, "strides", fail)
    convs[-1].pool = PoolSpec(_POOLS[layer.cls], size, stride, name=layer.name)
    convs[-1].between.append(layer.cls)


@converter("Flatten")
def _flatten(s: State, layer: KerasLayer) -> None:
    if s.flatten_name is not None:
        raise s.fail(layer, "a second Flatten is not supported")
    s.flatten_name = layer.name
    if s.slots:
        s.slots[-1].between.append(layer.cls)


@converter("Dense")
def _dense(s: State, layer: KerasLayer) -> None:
    if s.flatten_name is None:
        raise s.fail(layer, "a Dense layer before Flatten (on image-shaped input) is not supported")
    _size(s, layer, "units")
    _weighted(s, layer, "dense")


@converter(*DROPOUT_LAYERS)
def _dropout(s: State, layer: KerasLayer) -> None:
    rate = layer.cfg.get("rate", 0.0)
    if not isinstance(rate, (int, float)) or isinstance(rate, bool) or not 0 <= rate < 1:
        raise s.fail(layer, f"rate must be a number in [0, 1), found {brief(rate, 40)}")
    previous = s.chain[layer.index - 1].cls if layer.index else None
    after_dense = previous == "Dense" or (previous in (*ACTIVATION_LAYERS, "BatchNormalization") and bool(s.slots)
                                          and s.slots[-1].kind == "dense")
    position = "flatten" if previous == "Flatten" else f"dense:{len(s.of('dense')) - 1}" if after_dense \
        else "elsewhere"
    s.dropouts.append((layer.name, position if layer.cls == "Dropout" else "elsewhere", float(rate)))
    if s.slots:
        s.slots[-1].between.append(layer.cls)


@converter("BatchNormalization")
def _batch_norm(s: State, layer: KerasLayer) -> None:
    """Fold a BatchNormalization that directly follows a Conv2D/Dense without activation into that layer."""
    cfg, slot = layer.cfg, s.slots[-1] if s.slots else None
    supported = "cnnscope supports Conv2D/Dense (no activation) -> BatchNormalization -> activation"
    previous = s.chain[layer.index - 1] if layer.index else None
    if slot is None or slot.between or slot.batch_norm is not None or previous is None or previous.name != slot.name:
        what = f"it follows {previous.cls} {previous.name!r}" if previous is not None else "it is the first layer"
        raise s.fail(layer, f"{what}; {supported}")
    if slot.activation != "linear":
        raise s.fail(layer, f"it comes after the activation of {slot.name!r} ({slot.activation}); {supported} "
                            f"(set activation=None on {slot.name!r} and add the activation after the batch norm)")
    valid_axes = (-1, [-1], 3, [3]) if slot.kind == "conv" else (-1, [-1], 1, [1])
    if cfg.get("axis", -1) not in valid_axes:
        raise s.fail(layer, f"axis={brief(cfg.get('axis'), 40)} is not supported; cnnscope normalises the channels "
                            f"axis only (-1)")
    for key in ("renorm", "virtual_batch_size", "adjustment"):
        if cfg.get(key):
            raise s.fail(layer, f"{key}={brief(cfg.get(key), 40)} is not supported")
    momentum, epsilon = cfg.get("momentum", 0.99), cfg.get("epsilon", 0.001)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
               for v in (momentum, epsilon)) or not 0 <= momentum < 1 or epsilon <= 0:
        raise s.fail(layer, f"momentum must be in [0, 1) and epsilon > 0, found momentum={brief(momentum, 30)}, "
                            f"epsilon={brief(epsilon, 30)}")
    center, scale = cfg.get("center", True), cfg.get("scale", True)
    if not isinstance(center, bool) or not isinstance(scale, bool):
        raise s.fail(layer, f"center and scale must be true or false, found {brief(center, 20)}, {brief(scale, 20)}")
    # Keras' momentum keeps the old statistics (0.99); PyTorch's weighs the new batch (0.01).
    slot.batch_norm = BatchNormSpec(float(epsilon), round(1.0 - float(momentum), 12), center, scale)
    slot.norm_layer = layer.name
    s.notes.append(f"folded BatchNormalization layer {layer.name!r} into {slot.name!r} (before its activation)")


@converter("Activation")
def _activation_layer(s: State, layer: KerasLayer) -> None:
    _fold(s, layer, _activation(layer.cfg.get("activation")))


@converter("ReLU")
def _relu(s: State, layer: KerasLayer) -> None:
    cfg = layer.cfg
    if cfg.get("max_value") is not None or cfg.get("negative_slope") or cfg.get("threshold"):
        raise s.fail(layer, "ReLU with max_value, negative_slope or threshold is not supported")
    _fold(s, layer, "relu")


@converter("ELU")
def _elu(s: State, layer: KerasLayer) -> None:
    if layer.cfg.get("alpha", 1.0) != 1.0:
        raise s.fail(layer, f"ELU alpha={brief(layer.cfg.get('alpha'), 40)} is not supported (only 1.0)")
    _fold(s, layer, "elu")


@converter("Softmax")
def _softmax(s: State, layer: KerasLayer) -> None:
    if layer.cfg.get("axis", -1) not in (-1, [-1], 1, [1]):
        raise s.fail(layer, f"Softmax over axis {brief(layer.cfg.get('axis'), 40)} is not supported")
    _fold(s, layer, "softmax")


def _fold(s: State, layer: KerasLayer, act: str) -> None:
    """Fold a standalone activation into the last Conv2D/Dense when the result is exactly the same."""
    if act not in ACTIVATIONS and act != "softmax":
        raise s.fail(layer, f"activation {act!r} is not supported; valid: {', '.join(ACTIVATIONS)}, softmax "
                            f"(output)")
    if not s.slots:
        raise s.fail(layer, "an activation layer before any Conv2D/Dense cannot be folded into a layer")
    slot = s.slots[-1]
    allowed = {"Dropout", "SpatialDropout2D", "Flatten"} | ({"MaxPooling2D", "MaxPool2D"} if act in _MONOTONIC
                                                             else set())
    blocking = [c for c in slot.between if c not in allowed]
    if slot.activation != "linear" or blocking:
        why = (f"{slot.name!r} already applies {slot.activation!r}" if slot.activation != "linear" else
               f"{blocking[0]} comes between it and {slot.name!r}")
        raise s.fail(layer, f"cannot fold this activation into the layer before it ({why}); cnnscope applies "
                            f"activations inside Conv2D/Dense layers")
    slot.activation = act
    s.notes.append(f"folded {layer.cls} layer {layer.name!r} ({act}) into {slot.name!r}")
