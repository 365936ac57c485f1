"""Import Keras models (Keras 2 `.h5`, Keras 3 `.keras` and legacy `.h5`) into a run directory, without TensorFlow.

Only h5py and the standard library read the file (keras_files). A model imports when it is a chain that
cnnscope's ModelSpec can express: Conv2D (each optionally followed by one MaxPooling2D/AveragePooling2D), Flatten,
Dense layers.
InputLayer is read for the input shape; Dropout is kept when it sits where our spec puts it (after Flatten and
after every hidden Dense, one rate) and dropped otherwise (it does nothing at inference); a standalone activation
layer (Activation, ReLU, ELU, Softmax) is folded into the Conv2D/Dense before it. The output layer's softmax or
sigmoid becomes the spec's output activation; a final Dense without activation outputs logits, which cnnscope
treats as softmax logits (the usual `from_logits=True` setup): `model(x)` equals Keras' output, and
`Run.predict` applies softmax to it.
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import SpecError
from .keras_files import KerasImportError, config_layers, layer_name, read_keras_file
from .spec import ACTIVATIONS, ConvSpec, DenseSpec, ModelSpec, PoolSpec, RegularizerSpec

log = logging.getLogger("cnnscope")

SUPPORTED = ("InputLayer", "Conv2D", "MaxPooling2D", "AveragePooling2D", "Flatten", "Dense", "Dropout",
             "Activation", "ReLU", "ELU", "Softmax")
_ACTIVATION_LAYERS = ("Activation", "ReLU", "ELU", "Softmax")
_DROPOUT_LAYERS = ("Dropout", "SpatialDropout2D")
_POOLS = {"MaxPooling2D": "max", "MaxPool2D": "max", "AveragePooling2D": "average", "AvgPool2D": "average"}
# Activations that commute with max pooling (non-decreasing), so they may be folded across a MaxPooling2D.
_MONOTONIC = ("relu", "sigmoid", "elu", "selu", "tanh", "linear")


# --- the layer chain --------------------------------------------------------------------------------
def _history(obj: Any) -> list[str]:
    """Names of the layers feeding one inbound node (Keras 2 lists or Keras 3 `__keras_tensor__` dicts)."""
    if isinstance(obj, dict):
        if obj.get("class_name") == "__keras_tensor__":
            return [str(obj["config"]["keras_history"][0])]
        return [name for value in obj.values() for name in _history(value)]
    if isinstance(obj, list):
        if len(obj) >= 3 and isinstance(obj[0], str) and isinstance(obj[1], int):  # Keras 2: [name, node, i, {}]
            return [obj[0]]
        return [name for value in obj for name in _history(value)]
    return []


def _endpoints(value: Any) -> list[str]:
    if isinstance(value, list) and value and isinstance(value[0], str):
        return [value[0]]  # Keras 3 writes a single input as [name, 0, 0]
    return [str(v[0]) for v in value or []]


def layer_chain(config: dict[str, Any], where: str = "model") -> list[dict[str, Any]]:
    """The model's layers in order; KerasImportError unless it is a Sequential or a linear Functional model."""
    if not isinstance(config, dict) or "class_name" not in config:
        raise KerasImportError(f"{where}: model config has no 'class_name'; not a Keras model")
    kind = config["class_name"]
    layers = config_layers(config)
    if kind == "Sequential":
        return layers
    if kind not in ("Functional", "Model"):
        raise KerasImportError(f"{where}: unsupported model class {kind!r}; only Sequential and Functional "
                               f"models (no subclassed models) can be imported")
    inner = config["config"]
    inputs, outputs = _endpoints(inner.get("input_layers")), _endpoints(inner.get("output_layers"))
    if len(inputs) != 1 or len(outputs) != 1:
        raise KerasImportError(f"{where}: the model has {len(inputs)} inputs and {len(outputs)} outputs; only "
                               f"single-input, single-output chains are supported")
    by_name = {layer_name(layer): layer for layer in layers}
    consumers: dict[str, list[str]] = {name: [] for name in by_name}
    for layer in layers:
        name, nodes = layer_name(layer), layer.get("inbound_nodes") or []
        if len(nodes) > 1:
            raise KerasImportError(f"{where}: layer {name!r} ({layer['class_name']}) is called {len(nodes)} times "
                                   f"(a shared layer); only a simple chain of layers is supported")
        sources = _history(nodes[0]) if nodes else []
        if len(sources) > 1:
            raise KerasImportError(f"{where}: layer {name!r} ({layer['class_name']}) merges {len(sources)} inputs "
                                   f"({', '.join(sources)}): branching graphs are not supported")
        for source in sources:
            consumers.setdefault(source, []).append(name)
    chain, current = [], inputs[0]
    while True:
        if current not in by_name:
            raise KerasImportError(f"{where}: the graph refers to an unknown layer {current!r}")
        chain.append(by_name[current])
        if current == outputs[0]:
            break
        nxt = consumers.get(current, [])
        if len(nxt) != 1:
            raise KerasImportError(f"{where}: layer {current!r} feeds {len(nxt)} layers ({', '.join(nxt) or 'none'})"
                                   f": branching graphs are not supported")
        current = nxt[0]
    if len(chain) != len(layers):
        extra = [name for name in by_name if name not in {layer_name(layer) for layer in chain}]
        raise KerasImportError(f"{where}: layers {', '.join(extra)} are not on the input-output path: branching "
                               f"graphs are not supported")
    return chain


# --- config -> ModelSpec ----------------------------------------------------------------------------
def _activation(value: Any) -> str:
    """'relu' from 'relu', {'class_name': 'function', 'config': 'relu'} or {'class_name': 'ReLU'}."""
    if value is None:
        return "linear"
    if isinstance(value, dict):
        inner = value.get("config")
        value = inner if isinstance(inner, str) else value.get("class_name", "?")
    return str(value).lower()


def _regularizer(value: Any) -> tuple[str, float] | str | None:
    """('l2', 0.001), None (no penalty) or a text describing a penalty our spec cannot hold."""
    if value is None:
        return None
    if not isinstance(value, dict):
        return repr(value)
    kind, cfg = str(value.get("class_name", "")).lower(), value.get("config") or {}
    if kind not in ("l1", "l2", "l1l2", "l1_l2"):
        return f"{value.get('class_name')}({cfg})"
    # Keras 2 stores float32 values (0.0010000000474974513): keep the float32's shortest decimal, 0.001.
    terms = {k: float(str(np.float32(cfg.get(k) or 0.0))) for k in ("l1", "l2") if cfg.get(k)}
    if len(terms) > 1:
        return f"{value.get('class_name')}({cfg})"
    return next(iter(terms.items())) if terms else None


def _pair(value: Any, where: str) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    try:
        a, b = value
        return (int(a), int(b))
    except (TypeError, ValueError):
        raise KerasImportError(f"{where}: expected an integer pair, found {value!r}") from None


@dataclass
class _Slot:
    """A Conv2D or Dense layer being mapped, with what has been folded into it."""

    kind: str  # "conv" or "dense"
    name: str
    cfg: dict[str, Any]
    activation: str
    between: list[str] = field(default_factory=list)  # layer classes seen since this layer


@dataclass
class Translation:
    """A Keras model mapped onto a ModelSpec, with the notes to log."""

    spec: ModelSpec
    output: str  # "probabilities" or "logits": what the Keras model returns
    notes: list[str]
    bias_free: list[str]  # layers with use_bias=False (imported with zero biases)


def translate(config: dict[str, Any], where: str = "model") -> Translation:
    """Map a Keras model config onto a ModelSpec; KerasImportError naming the first unsupported layer."""
    chain = layer_chain(config, where)
    notes: list[str] = []
    input_shape: Any = None
    convs: list[dict[str, Any]] = []
    dense: list[_Slot] = []
    slots: list[_Slot] = []
    flatten_name: str | None = None
    dropouts: list[tuple[str, str, float]] = []  # (layer name, position, rate)
    bias_free: list[str] = []
    regs: dict[str, Any] = {}

    def fail(layer: dict[str, Any], what: str) -> KerasImportError:
        return KerasImportError(f"{where}: layer {layer_name(layer)!r} ({layer.get('class_name')}): {what}")

    def check_common(layer: dict[str, Any], cfg: dict[str, Any]) -> None:
        if cfg.get("data_format", "channels_last") not in (None, "channels_last"):
            raise fail(layer, f"data_format={cfg['data_format']} is not supported (only channels_last)")
        dtype = cfg.get("dtype")
        policy = dtype.get("config", {}).get("name", "") if isinstance(dtype, dict) else str(dtype or "")
        if re.search(r"int8|int4|float8", policy):
            raise fail(layer, f"quantized layers ({policy}) are not supported")
        if cfg.get("lora_rank"):
            raise fail(layer, "LoRA-enabled layers are not supported")

    for i, layer in enumerate(chain):
        cls, cfg, name = layer.get("class_name", "?"), layer.get("config") or {}, layer_name(layer)
        if i == 0 and "batch_input_shape" in cfg:
            input_shape = cfg["batch_input_shape"]
        if cls == "InputLayer":
            if i != 0:
                raise fail(layer, "an InputLayer inside the model is not supported")
            input_shape = cfg.get("batch_input_shape") or cfg.get("batch_shape") or input_shape
            continue
        check_common(layer, cfg)
        if cls == "Conv2D":
            if flatten_name is not None:
                raise fail(layer, "a Conv2D after Flatten is not supported")
            if _pair(cfg.get("dilation_rate", 1), name) != (1, 1):
                raise fail(layer, f"dilation_rate={cfg['dilation_rate']} is not supported (only 1)")
            if int(cfg.get("groups", 1) or 1) != 1:
                raise fail(layer, f"groups={cfg['groups']} is not supported (only 1)")
            if cfg.get("padding", "valid") not in ("valid", "same"):
                raise fail(layer, f"padding={cfg.get('padding')!r} is not supported (valid or same)")
            slot = _Slot("conv", name, cfg, _activation(cfg.get("activation")))
            if slot.activation not in ACTIVATIONS:
                raise fail(layer, f"activation {slot.activation!r} is not supported; valid: {', '.join(ACTIVATIONS)}")
            convs.append({"slot": slot, "pool": None})
            slots.append(slot)
        elif cls in _POOLS:
            if not convs or convs[-1]["pool"] is not None or "Flatten" in slots[-1].between:
                raise fail(layer, "a pooling layer must directly follow a Conv2D (one pool per Conv2D)")
            if cfg.get("padding", "valid") != "valid":
                raise fail(layer, f"padding={cfg.get('padding')!r} is not supported for pooling (only valid)")
            size = _pair(cfg.get("pool_size", 2), name)
            stride = _pair(cfg.get("strides") or size, name)
            convs[-1]["pool"] = PoolSpec(_POOLS[cls], size, stride, name=name)
            slots[-1].between.append(cls)
        elif cls == "Flatten":
            if flatten_name is not None:
                raise fail(layer, "a second Flatten is not supported")
            flatten_name = name
            if slots:
                slots[-1].between.append(cls)
        elif cls == "Dense":
            if flatten_name is None:
                raise fail(layer, "a Dense layer before Flatten (on image-shaped input) is not supported")
            slot = _Slot("dense", name, cfg, _activation(cfg.get("activation")))
            dense.append(slot)
            slots.append(slot)
        elif cls in _DROPOUT_LAYERS:
            previous = chain[i - 1].get("class_name") if i else None
            after_dense = previous == "Dense" or (previous in _ACTIVATION_LAYERS and slots[-1].kind == "dense")
            position = ("flatten" if previous == "Flatten" else f"dense:{len(dense) - 1}" if after_dense
                        else "elsewhere")
            if cls != "Dropout":
                position = "elsewhere"
            dropouts.append((name, position, float(cfg.get("rate", 0.0))))
            if slots:
                slots[-1].between.append(cls)
        elif cls in _ACTIVATION_LAYERS:
            act = _standalone_activation(layer, fail)
            _fold(layer, act, slots, fail)
            notes.append(f"folded {cls} layer {name!r} ({act}) into {slots[-1].name!r}")
        else:
            raise fail(layer, f"unsupported layer type; cnnscope imports {', '.join(SUPPORTED)}")
        if cls in ("Conv2D", "Dense"):
            if cfg.get("use_bias") is False:
                bias_free.append(name)
            regs[name] = _regularizer(cfg.get("kernel_regularizer"))
            for key in ("bias_regularizer", "activity_regularizer"):
                if cfg.get(key):
                    notes.append(f"{name}: {key} ignored (it only affects training)")
    if not dense:
        raise KerasImportError(f"{where}: the model must end with Flatten and a Dense output layer")
    last = chain[-1]
    if last.get("class_name") not in ("Dense",) + _ACTIVATION_LAYERS + _DROPOUT_LAYERS:
        raise fail(last, "the model must end with its Dense output layer")
    out_slot = dense[-1]
    for slot in slots[:-1]:
        if slot.activation not in ACTIVATIONS:
            kind = "Conv2D" if slot.kind == "conv" else "Dense"
            raise KerasImportError(f"{where}: layer {slot.name!r} ({kind}): activation {slot.activation!r} is only "
                                   f"supported on the output layer; valid here: {', '.join(ACTIVATIONS)}")
    if out_slot.activation in ("softmax", "sigmoid"):
        output_activation, output = out_slot.activation, "probabilities"
    elif out_slot.activation == "linear":
        output_activation, output = "softmax", "logits"
        notes.append(f"output layer {out_slot.name!r} has no activation: its outputs are treated as softmax logits")
    else:
        raise KerasImportError(f"{where}: layer {out_slot.name!r} (Dense): output activation {out_slot.activation!r} "
                               f"is not supported; valid: softmax, sigmoid, linear (logits)")
    if input_shape is None and isinstance(config.get("config"), dict):  # Keras 3 without an InputLayer
        input_shape = config["config"].get("build_input_shape") or (config.get("build_config") or {}).get(
            "input_shape")
    c, h, w = _input_chw(input_shape, where)
    dropout = _dropout_rate(dropouts, len(dense) - 1, notes)
    regularizer = _map_regularizers(regs, [s.name for s in slots if s.kind == "conv"],
                                    [s.name for s in dense], notes)
    spec_kwargs = dict(
        conv=tuple(ConvSpec(int(cv["slot"].cfg["filters"]), _pair(cv["slot"].cfg["kernel_size"], cv["slot"].name),
                            _pair(cv["slot"].cfg.get("strides", 1), cv["slot"].name),
                            cv["slot"].cfg.get("padding", "valid"), cv["slot"].activation, cv["pool"],
                            name=cv["slot"].name) for cv in convs),
        dense=tuple(DenseSpec(int(s.cfg["units"]), s.activation, name=s.name) for s in dense[:-1]),
        input_shape=(c, h, w), num_classes=int(out_slot.cfg["units"]), output_activation=output_activation,
        regularizer=regularizer, output_name=out_slot.name, flatten_name=flatten_name)
    try:
        try:
            spec = ModelSpec(dropout=dropout, **spec_kwargs)
        except SpecError:
            if not dropout:
                raise
            notes.append("dropout dropped: its layer names (Dropout_1, …) clash with the model's")
            spec = ModelSpec(**spec_kwargs)
    except SpecError as exc:  # e.g. a Keras layer name our specs do not allow
        raise KerasImportError(f"{where}: {exc}") from None
    return Translation(spec, output, notes, bias_free)


def _standalone_activation(layer: dict[str, Any], fail) -> str:
    cls, cfg = layer["class_name"], layer.get("config") or {}
    if cls == "Activation":
        return _activation(cfg.get("activation"))
    if cls == "ReLU":
        if cfg.get("max_value") is not None or float(cfg.get("negative_slope") or 0) or float(cfg.get("threshold")
                                                                                              or 0):
            raise fail(layer, "ReLU with max_value, negative_slope or threshold is not supported")
        return "relu"
    if cls == "ELU":
        if float(cfg.get("alpha", 1.0)) != 1.0:
            raise fail(layer, f"ELU alpha={cfg['alpha']} is not supported (only 1.0)")
        return "elu"
    if cfg.get("axis", -1) not in (-1, [-1], 1, [1]):  # Softmax
        raise fail(layer, f"Softmax over axis {cfg.get('axis')} is not supported")
    return "softmax"


def _fold(layer: dict[str, Any], act: str, slots: list[_Slot], fail) -> None:
    """Fold a standalone activation into the last Conv2D/Dense when the result is exactly the same."""
    if act not in ACTIVATIONS and act != "softmax":
        raise fail(layer, f"activation {act!r} is not supported; valid: {', '.join(ACTIVATIONS)}, softmax (output)")
    if not slots:
        raise fail(layer, "an activation layer before any Conv2D/Dense cannot be folded into a layer")
    slot = slots[-1]
    allowed = {"Dropout", "SpatialDropout2D", "Flatten"} | ({"MaxPooling2D", "MaxPool2D"} if act in _MONOTONIC
                                                             else set())
    blocking = [c for c in slot.between if c not in allowed]
    if slot.activation != "linear" or blocking:
        why = (f"{slot.name!r} already applies {slot.activation!r}" if slot.activation != "linear" else
               f"{blocking[0]} comes between it and {slot.name!r}")
        raise fail(layer, f"cannot fold this activation into the layer before it ({why}); cnnscope applies "
                          f"activations inside Conv2D/Dense layers")
    slot.activation = act


def _input_chw(shape: Any, where: str) -> tuple[int, int, int]:
    """Keras (batch, H, W, C) or (batch, H, W) -> our (C, H, W); MNIST-sized, one channel."""
    if shape is None:
        raise KerasImportError(f"{where}: the model has no input shape (it was never built); build or call it "
                               f"once in Keras before saving")
    dims = list(shape)[1:]
    if len(dims) == 2:
        dims.append(1)
    h, w, c = (28 if d is None else int(d) for d in dims) if len(dims) == 3 else (0, 0, 0)
    if (h, w, c) != (28, 28, 1):
        raise KerasImportError(f"{where}: input shape {tuple(shape)[1:]} is not supported; cnnscope's datasets are "
                               f"28×28 grayscale images, input (28, 28, 1)")
    return (c, h, w)


def _dropout_rate(dropouts: list[tuple[str, str, float]], hidden: int, notes: list[str]) -> float:
    """The spec's dropout when Keras' dropout layers sit exactly where our spec puts them; else 0 (noted)."""
    if not dropouts:
        return 0.0
    positions = [p for _, p, _ in dropouts]
    rates = {r for _, _, r in dropouts}
    wanted = {"flatten"} | {f"dense:{k}" for k in range(hidden)}
    if set(positions) == wanted and len(positions) == len(wanted) and len(rates) == 1 and 0 < min(rates) < 1:
        rate = next(iter(rates))
        names = [n for n, _, _ in dropouts]
        expected = [f"Dropout_{i}" for i in range(1, len(names) + 1)]
        if names != expected:
            notes.append(f"dropout layers {', '.join(names)} are named {', '.join(expected)} in cnnscope")
        return rate
    notes.append(f"dropout ignored ({', '.join(n for n, _, _ in dropouts)}): it does nothing at inference, and "
                 f"cnnscope's spec only holds one rate after Flatten and after every hidden Dense")
    return 0.0


def _map_regularizers(regs: dict[str, Any], convs: list[str], dense: list[str], notes: list[str]) -> RegularizerSpec:
    """One penalty on all Dense kernels (and optionally all Conv2D kernels), as our spec holds it."""
    dense_regs = {repr(regs.get(n)) for n in dense}
    conv_regs = {repr(regs.get(n)) for n in convs}
    first = regs.get(dense[0])
    if all(regs.get(n) is None for n in dense + convs):
        return RegularizerSpec()
    if len(dense_regs) == 1 and isinstance(first, tuple) and (conv_regs <= {repr(None)} or conv_regs == dense_regs):
        return RegularizerSpec(first[0], first[1], conv=bool(convs) and conv_regs == dense_regs)
    described = ", ".join(f"{n}: {regs[n]}" for n in dense + convs if regs.get(n) is not None)
    log.warning("kernel regularizers not imported (%s): cnnscope's spec holds one penalty on all Dense kernels "
                "(optionally all Conv2D kernels); they only matter for further training", described)
    notes.append(f"kernel regularizers not imported ({described})")
    return RegularizerSpec()


# --- weights --------------------------------------------------------------------------------------
def load_keras_weights(model: torch.nn.Module, spec: ModelSpec, weights: dict[str, list[np.ndarray]],
                       bias_free: list[str], where: str = "model") -> None:
    """Copy Keras weights into `model`: HWIO -> OIHW, (in, out) -> (out, in), flatten order HWC -> CHW."""
    infos = spec.layers()
    before_flatten = infos[[i.type for i in infos].index("Flatten") - 1].output_shape if spec.conv \
        else spec.input_shape  # (C, H, W) reaching the Flatten
    first_dense = True
    for info in infos:
        if info.type not in ("Conv2D", "Dense"):
            continue
        arrays = weights.get(info.name)
        expected = 1 if info.name in bias_free else 2
        if arrays is None or len(arrays) != expected:
            found = "none" if arrays is None else f"{len(arrays)} arrays"
            raise KerasImportError(f"{where}: weights for layer {info.name!r} are missing or incomplete "
                                   f"({found}, expected kernel{' and bias' if expected == 2 else ''})")
        kernel = np.asarray(arrays[0], dtype=np.float32)
        module = model.layer(info.name)
        if info.type == "Conv2D":
            target = module.conv
            kernel = kernel.transpose(3, 2, 0, 1)  # (kh, kw, in, out) -> (out, in, kh, kw)
        else:
            target = getattr(module, "linear", module)
            if first_dense and kernel.ndim == 2:
                c, h, w = before_flatten
                if kernel.shape[0] == c * h * w:  # rows in Keras' (H, W, C) flatten order -> our (C, H, W)
                    kernel = kernel.reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(c * h * w, -1)
            first_dense = False
            kernel = kernel.T  # (in, out) -> (out, in)
        bias = np.asarray(arrays[1], np.float32) if expected == 2 else np.zeros(target.bias.shape, np.float32)
        for what, value, param in (("kernel", kernel, target.weight), ("bias", bias, target.bias)):
            if tuple(value.shape) != tuple(param.shape):
                raise KerasImportError(f"{where}: layer {info.name!r} {what} has shape {tuple(value.shape)} after "
                                       f"conversion, expected {tuple(param.shape)}")
            with torch.no_grad():
                param.copy_(torch.from_numpy(np.ascontiguousarray(value)))


def _model_name(config: dict[str, Any]) -> str:
    inner = config.get("config")
    return str(inner.get("name", "")) if isinstance(inner, dict) else ""


# --- the run --------------------------------------------------------------------------------------
def import_keras(path: str | os.PathLike, out: str | os.PathLike | None = None, preprocess: str = "standard",
                 dataset: str = "mnist", data_dir: str | os.PathLike | None = None, *, overwrite: bool = False):
    """Import a Keras `.h5`/`.keras` model into a new run directory and return the loaded Run.

    Args:
        preprocess, dataset, data_dir: how the model's inputs were prepared in Keras; the statistics
            (preprocess.json) are fitted on that dataset's training images.
    """
    from . import runs
    from .config import RunConfig, TrainConfig
    from .data import DataConfig, load_dataset
    from .fileio import write_json
    from .model import build_model
    from .train import evaluate_arrays

    data_config = DataConfig(dataset, preprocess, data_dir=None if data_dir is None else
                             str(Path(data_dir).expanduser().resolve()))
    source = read_keras_file(path)
    where = source.path.name
    if source.keras_version.startswith("1."):
        raise KerasImportError(f"{where}: Keras {source.keras_version} models are not supported (Keras 2 or 3)")
    result = translate(source.config, where)
    spec = result.spec
    model = build_model(spec, seed=0)
    load_keras_weights(model, spec, source.weights, result.bias_free, where)
    model.eval()
    for note in result.notes:
        log.info("%s: %s", where, note)
    if result.bias_free:
        log.info("%s: %s use no bias in Keras; imported with zero biases", where, ", ".join(result.bias_free))
    data = load_dataset(config=data_config)
    scores = evaluate_arrays(model, data.test_x, data.test_y)
    out = Path(out) if out is not None else Path("runs") / time.strftime(f"keras-{source.path.stem}-%Y%m%d-%H%M%S")
    run_dir = runs.init_run_dir(out, overwrite=overwrite)
    metrics = {"status": "imported", "source": str(source.path.resolve()), "format": source.format,
               "keras_version": source.keras_version, "keras_backend": source.backend,
               "keras_model": _model_name(source.config), "keras_output": result.output,
               "notes": result.notes + [f"{n}: no bias in Keras (zero bias)" for n in result.bias_free],
               "dataset": dataset, "preprocess": preprocess, "test_accuracy": scores["accuracy"],
               "test_loss": scores["loss"], "test_images": int(len(data.test_y)),
               "imported_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    with runs.deferred_interrupt():  # config.toml last: a directory without it can be imported into again
        runs.save_weights(run_dir / runs.WEIGHTS, model)
        runs.save_weights(run_dir / runs.INITIAL, model)
        write_json(run_dir / runs.METRICS, metrics)
        runs.write_run_files(run_dir, RunConfig(spec, TrainConfig(), data_config), data.preprocessor)
    log.debug("imported %s (Keras %s, %s) into %s: test accuracy %.4f on %d %s images", source.path,
             source.keras_version, source.format, run_dir, scores["accuracy"], len(data.test_y), dataset)
    return runs.load_run(run_dir)
