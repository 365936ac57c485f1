"""Import Keras models (Keras 2 `.h5`, Keras 3 `.keras` and legacy `.h5`) into a run directory, without TensorFlow.

Only h5py and the standard library read the file (keras_files, which treats it as hostile). A model imports when
it is a chain that cnnscope's ModelSpec can express: Conv2D (each optionally followed by one
MaxPooling2D/AveragePooling2D), Flatten, Dense layers, on any input shape the spec holds. A BatchNormalization
directly after a Conv2D/Dense without activation (Conv2D -> BatchNormalization -> Activation, the usual order)
becomes that layer's `batch_norm` (epsilon, center, scale kept; Keras' momentum m becomes PyTorch's 1 - m); its
gamma, beta, moving mean and variance are read into the layer's BatchNorm.
Each Keras layer class has one small converter (keras_convert.CONVERTERS). InputLayer gives the input shape; Dropout is
kept when it sits where our spec puts it (after Flatten and after every hidden Dense, one rate) and dropped
otherwise (it does nothing at inference); a standalone activation layer (Activation, ReLU, ELU, Softmax) is
folded into the Conv2D/Dense before it. The output layer's softmax or sigmoid becomes the spec's output
activation; a final Dense without activation outputs logits, which cnnscope treats as softmax logits (the usual
`from_logits=True` setup): `model(x)` equals Keras' output, and `Run.predict` applies softmax to it.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnscope.base.errors import KerasImportError, SpecError, brief
from cnnscope.base.fileio import write_json
from cnnscope.data.dataset import DataConfig, load_dataset
from cnnscope.interop.keras.convert import (
    ACTIVATION_LAYERS,
    CONVERTERS,
    DROPOUT_LAYERS,
    KerasLayer,
    State,
    as_int,
    as_pair,
    layer_chain,
)
from cnnscope.interop.keras.files import layer_name, read_keras_file, read_weights
from cnnscope.model.network import build_model
from cnnscope.model.spec import ACTIVATIONS, ConvSpec, DenseSpec, ModelSpec, RegularizerSpec
from cnnscope.runs.checkpoint import check_run_dir, deferred_interrupt, init_run_dir, save_weights, write_run_files
from cnnscope.runs.layout import INITIAL, METRICS, WEIGHTS
from cnnscope.runs.load import load_run
from cnnscope.trainer.config import RunConfig, TrainConfig
from cnnscope.trainer.loop import evaluate_arrays

__all__ = ["CONVERTERS", "KerasImportError", "Translation", "import_keras", "keras_shapes", "layer_chain",
           "load_keras_weights", "read_keras_file", "translate"]

log = logging.getLogger("cnnscope")

MAX_IMPORT_PARAMS = 10_000_000  # 40 MB at fp32: far above any MNIST-sized CNN, well below a memory blow-up
_EVAL_VALUES = 2 ** 24  # activation values per evaluation batch (64 MB at fp32)


# --- config -> ModelSpec ----------------------------------------------------------------------------
@dataclass
class Translation:
    """A Keras model mapped onto a ModelSpec, with the notes to log."""

    spec: ModelSpec
    output: str  # "probabilities" or "logits": what the Keras model returns
    notes: list[str]
    bias_free: list[str]  # layers with use_bias=False (imported with zero biases)
    norms: dict[str, str] = field(default_factory=dict)  # our layer name -> its folded BatchNormalization's name


def _layer(raw: dict[str, Any], index: int) -> KerasLayer:
    cls, cfg = raw.get("class_name"), raw.get("config")
    return KerasLayer(index, cls if isinstance(cls, str) else brief(cls, 60), layer_name(raw),
                  cfg if isinstance(cfg, dict) else {})


def translate(config: dict[str, Any], where: str = "model") -> Translation:
    """Map a Keras model config onto a ModelSpec; KerasImportError naming the first unsupported layer."""
    try:
        s = State(where, [_layer(raw, i) for i, raw in enumerate(layer_chain(config, where))])
        for layer in s.chain:
            if layer.index == 0 and "batch_input_shape" in layer.cfg:
                s.input_shape = layer.cfg["batch_input_shape"]
            convert = CONVERTERS.get(layer.cls)
            if convert is None:
                raise s.fail(layer, f"unsupported layer type; cnnscope imports {', '.join(CONVERTERS)}")
            convert(s, layer)
        return _finish(s, config)
    except (TypeError, ValueError, KeyError, AttributeError, IndexError, OverflowError, RecursionError) as exc:
        raise KerasImportError(f"{where}: malformed model config ({type(exc).__name__}: {brief(str(exc), 80)})") \
            from None


def _output(s: State) -> tuple[str, str]:
    """(the spec's output activation, what Keras returns), after checking where activations sit."""
    dense = s.of("dense")
    if not dense:
        raise KerasImportError(f"{s.where}: the model must end with Flatten and a Dense output layer")
    last = s.chain[-1]
    if last.cls not in ("Dense",) + ACTIVATION_LAYERS + DROPOUT_LAYERS:
        raise s.fail(last, "the model must end with its Dense output layer")
    for slot in s.slots[:-1]:
        if slot.activation not in ACTIVATIONS:
            kind = "Conv2D" if slot.kind == "conv" else "Dense"
            raise KerasImportError(f"{s.where}: layer {slot.name!r} ({kind}): activation {slot.activation!r} is "
                                   f"only supported on the output layer; valid here: {', '.join(ACTIVATIONS)}")
    out = dense[-1]
    if out.batch_norm is not None:
        raise KerasImportError(f"{s.where}: layer {out.norm_layer!r} (BatchNormalization): batch norm on the output "
                               f"layer {out.name!r} is not supported (only on Conv2D and hidden Dense layers)")
    if out.activation in ("softmax", "sigmoid"):
        return out.activation, "probabilities"
    if out.activation == "linear":
        s.notes.append(f"output layer {out.name!r} has no activation: its outputs are treated as softmax logits")
        return "softmax", "logits"
    raise KerasImportError(f"{s.where}: layer {out.name!r} (Dense): output activation {out.activation!r} "
                           f"is not supported; valid: softmax, sigmoid, linear (logits)")


def _input_chw(shape: Any, where: str) -> tuple[int, int, int]:
    """Keras (batch, H, W, C) or (batch, H, W) -> our (C, H, W), any fixed size."""
    if shape is None:
        raise KerasImportError(f"{where}: the model has no input shape (it was never built); build or call it "
                               f"once in Keras before saving")
    dims = [as_int(d) for d in shape[1:]] if isinstance(shape, (list, tuple)) and len(shape) in (3, 4) else []
    if len(dims) == 2:
        dims.append(1)
    if len(dims) != 3 or any(d is None or d < 1 for d in dims):
        raise KerasImportError(f"{where}: input shape {brief(shape, 60)} is not supported; cnnscope needs a fixed "
                               f"(batch, height, width[, channels]) image input")
    h, w, c = dims
    return (c, h, w)


def _model_input(s: State, config: dict[str, Any]) -> tuple[int, int, int]:
    shape = s.input_shape
    inner = config.get("config")
    if shape is None and isinstance(inner, dict):  # Keras 3 without an InputLayer
        build = config.get("build_config")
        shape = inner.get("build_input_shape") or (build.get("input_shape") if isinstance(build, dict) else None)
    return _input_chw(shape, s.where)


def _finish(s: State, config: dict[str, Any]) -> Translation:
    """The ModelSpec from what the converters collected."""
    output_activation, output = _output(s)
    convs, dense = s.of("conv"), s.of("dense")
    dropout = _dropout_rate(s.dropouts, len(dense) - 1, s.notes)
    regularizer = _map_regularizers(s.regs, [c.name for c in convs], [d.name for d in dense], s.notes)
    fail = lambda what: KerasImportError(f"{s.where}: {what}")  # noqa: E731 (checked by the converters)
    kwargs = dict(
        conv=tuple(ConvSpec(as_int(c.cfg["filters"]), as_pair(c.cfg["kernel_size"], "kernel_size", fail),
                            as_pair(c.cfg.get("strides", 1), "strides", fail), c.cfg.get("padding", "valid"),
                            c.activation, c.pool, name=c.name, batch_norm=c.batch_norm) for c in convs),
        dense=tuple(DenseSpec(as_int(d.cfg["units"]), d.activation, name=d.name, batch_norm=d.batch_norm)
                    for d in dense[:-1]),
        input_shape=_model_input(s, config), num_classes=as_int(dense[-1].cfg["units"]),
        output_activation=output_activation, regularizer=regularizer, output_name=dense[-1].name,
        flatten_name=s.flatten_name)
    try:
        try:
            spec = ModelSpec(dropout=dropout, **kwargs)
        except SpecError:
            if not dropout:
                raise
            s.notes.append("dropout dropped: its layer names (Dropout_1, …) clash with the model's")
            spec = ModelSpec(**kwargs)
    except SpecError as exc:  # e.g. a Keras layer name our specs do not allow
        raise KerasImportError(f"{s.where}: {exc}") from None
    return Translation(spec, output, s.notes, s.bias_free, {x.name: x.norm_layer for x in s.slots if x.norm_layer})


def _dropout_rate(dropouts: list[tuple[str, str, float]], hidden: int, notes: list[str]) -> float:
    """The spec's dropout when Keras' dropout layers sit exactly where our spec puts them; else 0 (noted)."""
    if not dropouts:
        return 0.0
    positions = [p for _, p, _ in dropouts]
    rates = {r for _, _, r in dropouts}
    wanted = {"flatten"} | {f"dense:{k}" for k in range(hidden)}
    if set(positions) == wanted and len(positions) == len(wanted) and len(rates) == 1 and 0 < min(rates) < 1:
        names = [n for n, _, _ in dropouts]
        expected = [f"Dropout_{i}" for i in range(1, len(names) + 1)]
        if names != expected:
            notes.append(f"dropout layers {', '.join(names)} are named {', '.join(expected)} in cnnscope")
        return next(iter(rates))
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
_NORM_ARRAYS = (("gamma", "weight"), ("beta", "bias"), ("moving_mean", "running_mean"),
                ("moving_variance", "running_var"))  # Keras' order -> our BatchNorm's tensor


def _norm_arrays(module: torch.nn.Module) -> list[tuple[str, str]]:
    """(Keras name, our tensor) of the arrays a folded BatchNormalization holds: gamma/beta only when learnt."""
    return [(keras, ours) for keras, ours in _NORM_ARRAYS if getattr(module.bn, ours, None) is not None]


def keras_shapes(model: torch.nn.Module, spec: ModelSpec, bias_free: list[str],
                 norms: dict[str, str] | None = None) -> dict[str, list]:
    """Per Conv2D/Dense layer (and folded BatchNormalization, under its Keras name), the (name, shape) of the
    arrays its Keras file must hold, in Keras' layout."""
    wanted: dict[str, list] = {}
    for info in spec.layers():
        if info.name in (norms or {}):
            module = model.layer(info.name)
            wanted[norms[info.name]] = [(keras, (info.output_shape[0],)) for keras, _ in _norm_arrays(module)]
        if info.type in ("Conv2D", "Dense"):
            module = model.layer(info.name)
            target = module.conv if info.type == "Conv2D" else getattr(module, "linear", module)
            out, inp, *window = target.weight.shape
            kernel = (*window, inp, out) if info.type == "Conv2D" else (inp, out)
            wanted[info.name] = [("kernel", tuple(kernel))] + ([] if info.name in bias_free else [("bias", (out,))])
    return wanted


def load_keras_weights(model: torch.nn.Module, spec: ModelSpec, weights: dict[str, list[np.ndarray]],
                       bias_free: list[str], where: str = "model", norms: dict[str, str] | None = None) -> None:
    """Copy Keras weights into `model`: HWIO -> OIHW, (in, out) -> (out, in), flatten order HWC -> CHW; folded
    BatchNormalization arrays into the layers' BatchNorm."""
    _load_norms(model, weights, norms or {}, where)
    infos = spec.layers()
    before_flatten = infos[[i.type for i in infos].index("Flatten") - 1].output_shape if spec.conv \
        else spec.input_shape  # (C, H, W) reaching the Flatten
    first_dense = True
    for info in (i for i in infos if i.type in ("Conv2D", "Dense")):
        arrays = weights.get(info.name)
        expected = 1 if info.name in bias_free else 2
        if arrays is None or len(arrays) != expected:
            found = "none" if arrays is None else f"{len(arrays)} arrays"
            raise KerasImportError(f"{where}: weights for layer {info.name!r} are missing or incomplete "
                                   f"({found}, expected kernel{' and bias' if expected == 2 else ''})")
        kernel, module = np.asarray(arrays[0], dtype=np.float32), model.layer(info.name)
        if info.type == "Conv2D":
            target, kernel = module.conv, kernel.transpose(3, 2, 0, 1)  # (kh, kw, in, out) -> (out, in, kh, kw)
        else:
            target = getattr(module, "linear", module)
            c, h, w = before_flatten
            if first_dense and kernel.ndim == 2 and kernel.shape[0] == c * h * w:  # Keras' HWC flatten -> CHW
                kernel = kernel.reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(c * h * w, -1)
            first_dense, kernel = False, kernel.T  # (in, out) -> (out, in)
        bias = np.asarray(arrays[1], np.float32) if expected == 2 else np.zeros(target.bias.shape, np.float32)
        for what, value, param in (("kernel", kernel, target.weight), ("bias", bias, target.bias)):
            if tuple(value.shape) != tuple(param.shape):
                raise KerasImportError(f"{where}: layer {info.name!r} {what} has shape {tuple(value.shape)} after "
                                       f"conversion, expected {tuple(param.shape)}")
            with torch.no_grad():
                param.copy_(torch.from_numpy(np.ascontiguousarray(value)))


def _load_norms(model: torch.nn.Module, weights: dict[str, list[np.ndarray]], norms: dict[str, str],
                where: str) -> None:
    """gamma, beta, moving mean and variance of each folded BatchNormalization into its layer's BatchNorm."""
    for name, keras_name in norms.items():
        module, arrays = model.layer(name), weights.get(keras_name)
        wanted = _norm_arrays(module)
        if arrays is None or len(arrays) != len(wanted):
            raise KerasImportError(f"{where}: weights for layer {keras_name!r} are missing or incomplete (expected "
                                   f"{', '.join(k for k, _ in wanted)})")
        for (keras, ours), value in zip(wanted, arrays, strict=True):
            value = np.asarray(value, np.float32)
            if keras == "moving_variance" and not bool((value >= 0).all()):
                raise KerasImportError(f"{where}: layer {keras_name!r} moving_variance holds negative values; a "
                                       f"variance cannot be negative")
            with torch.no_grad():
                getattr(module.bn, ours).copy_(torch.from_numpy(np.ascontiguousarray(value)))


# --- the run --------------------------------------------------------------------------------------
def _check_size(spec: ModelSpec, where: str) -> None:
    """The model is small enough to import (checked before any weight is allocated or read)."""
    params = spec.total_params
    if params > MAX_IMPORT_PARAMS:
        raise KerasImportError(f"{where}: the model has {params:,} parameters, more than the {MAX_IMPORT_PARAMS:,} "
                               f"cnnscope imports")


def _check_input(spec: ModelSpec, data: Any, dataset: str, where: str) -> None:
    """The model takes the dataset's images as they are."""
    images = tuple(data.test_x.shape[1:])
    if tuple(spec.input_shape) != images:
        (c, h, w), (ic, ih, iw) = spec.input_shape, images
        raise KerasImportError(f"{where}: input shape {(h, w, c)} is not supported by the {dataset} dataset, "
                               f"whose images are {(ih, iw, ic)} (height, width, channels)")


def import_keras(path: str | os.PathLike, out: str | os.PathLike | None = None, preprocess: str = "standard",
                 dataset: str = "mnist", data_dir: str | os.PathLike | None = None, *, overwrite: bool = False):
    """Import a Keras `.h5`/`.keras` model into a new run directory and return the loaded Run.

    Args:
        preprocess, dataset, data_dir: how the model's inputs were prepared in Keras; the statistics
            (preprocess.json) are fitted on that dataset's training images.
    """
    data_config = DataConfig(dataset, preprocess, data_dir=None if data_dir is None else
                             str(Path(data_dir).expanduser().resolve()))
    if out is not None:
        check_run_dir(out, overwrite)
    source = read_keras_file(path)
    where = source.path.name
    if source.keras_version.startswith("1."):
        raise KerasImportError(f"{where}: Keras {source.keras_version} models are not supported (Keras 2 or 3)")
    result = translate(source.config, where)
    _check_size(result.spec, where)
    data = load_dataset(config=data_config)
    _check_input(result.spec, data, dataset, where)
    model = build_model(result.spec, seed=0)
    weights = read_weights(source, keras_shapes(model, result.spec, result.bias_free, result.norms), where)
    load_keras_weights(model, result.spec, weights, result.bias_free, where, result.norms)
    del weights
    model.eval()
    for note in result.notes:
        log.info("%s: %s", where, note)
    if result.bias_free:
        log.info("%s: %s use no bias in Keras; imported with zero biases", where, ", ".join(result.bias_free))
    per_image = sum(math.prod(info.output_shape) for info in result.spec.layers())
    scores = evaluate_arrays(model, data.test_x, data.test_y, batch_size=max(1, min(1000, _EVAL_VALUES // per_image)))
    out = Path(out) if out is not None else Path("runs") / time.strftime(f"keras-{source.path.stem}-%Y%m%d-%H%M%S")
    return _write_run(out, overwrite, source, result, model, data, data_config, scores)


def _write_run(out: Path, overwrite: bool, source: Any, result: Translation, model: torch.nn.Module, data: Any,
               data_config: Any, scores: dict[str, Any]):
    """Write the run directory (config.toml last, so a half-written directory can be imported into again)."""
    inner = source.config.get("config")
    model_name = inner.get("name", "") if isinstance(inner, dict) else ""
    metrics = {"status": "imported", "source": str(source.path.resolve()), "format": source.format,
               "keras_version": source.keras_version, "keras_backend": source.backend,
               "keras_model": model_name if isinstance(model_name, str) else brief(model_name, 60),
               "keras_output": result.output,
               "notes": result.notes + [f"{n}: no bias in Keras (zero bias)" for n in result.bias_free],
               "dataset": data_config.dataset, "preprocess": data_config.preprocess,
               "test_accuracy": scores["accuracy"], "test_loss": scores["data_loss"], "test_objective": scores["loss"],
               "test_images": int(len(data.test_y)),
               "imported_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    run_dir = init_run_dir(out, overwrite=overwrite)
    with deferred_interrupt():
        save_weights(run_dir / WEIGHTS, model)
        save_weights(run_dir / INITIAL, model)
        write_json(run_dir / METRICS, metrics)
        write_run_files(run_dir, RunConfig(result.spec, TrainConfig(), data_config), data.preprocessor)
    log.debug("imported %s (Keras %s, %s) into %s: test accuracy %.4f on %d %s images", source.path,
              source.keras_version, source.format, run_dir, scores["accuracy"], len(data.test_y),
              data_config.dataset)
    return load_run(run_dir)
