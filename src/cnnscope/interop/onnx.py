"""Export a run's model to ONNX (dynamic batch), optionally with every named layer's output as a graph output.

The graph takes preprocessed images `input` (N, C, H, W) float32 (apply the run's preprocess.json first; its
statistics are also stored in the model's metadata) and returns `probabilities` (N, classes) and `logits`
(N, classes), then, with `with_layers`, one output per named layer in model order, named after the layer.
We use PyTorch's TorchScript-based exporter (`dynamo=False`): it ships with torch, works offline and needs no
onnxscript; torch is pinned below 2.14, where it is still available.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnscope.base.errors import ConfigError, RunError
from cnnscope.base.fileio import atomic_write
from cnnscope.base.version import __version__
from cnnscope.data.sources import class_names_of
from cnnscope.runs.load import Run, load_run

MIN_OPSET = 17
MAX_OPSET = 20  # the highest opset torch's TorchScript exporter writes
RESERVED = ("input", "probabilities", "logits")


class _Graph(nn.Module):
    """The model's layers in order, returning (probabilities, logits, *named layer outputs)."""

    def __init__(self, model: nn.Module, with_layers: bool) -> None:
        super().__init__()
        self.model = model
        self.with_layers = with_layers

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:  # (N, C, H, W)
        outputs = []
        for module in self.model.layers.values():
            x = module(x)
            if self.with_layers:
                # A copy per output: eval-mode Dropout and the output layer return tensors that other outputs
                # share, and an ONNX graph needs a distinct value for each named output.
                outputs.append(torch.clone(x))
        return (self.model.probabilities(x), x, *outputs)


def export_onnx(run_or_path: Any, out_file: str | os.PathLike, opset: int = 17,
                with_layers: bool = False) -> dict[str, Any]:
    """Write the run's model as ONNX to `out_file` (atomically); returns a description of the graph."""
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise ConfigError(f"opset must be an integer from {MIN_OPSET} to {MAX_OPSET}, received {opset!r}")
    try:
        import onnx
    except ImportError:
        raise ConfigError("ONNX export needs the 'onnx' package: pip install 'cnnscope[onnx]'") from None
    run = run_or_path if isinstance(run_or_path, Run) else load_run(run_or_path)
    out = Path(out_file)
    if out.is_dir():
        raise RunError(f"{out} is a directory; give a file name such as model.onnx")
    names = run.model.layer_names
    clash = [name for name in names if name in RESERVED]
    if with_layers and clash:
        raise RunError(f"layer name {clash[0]!r} clashes with a graph output name ({', '.join(RESERVED)}); "
                       f"export without --with-layers")
    outputs = ["probabilities", "logits"] + (names if with_layers else [])
    model = run.model
    device, was_training = next(model.parameters()).device, model.training
    graph = _Graph(model.to("cpu").eval(), with_layers)
    example = torch.zeros((2, *run.spec.input_shape))  # (N, C, H, W); N is exported as a dynamic axis

    def write(tmp: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter announces its own deprecation
            torch.onnx.export(graph, (example,), str(tmp), input_names=["input"], output_names=outputs,
                              dynamic_axes={name: {0: "batch"} for name in ["input", *outputs]},
                              opset_version=opset, dynamo=False, do_constant_folding=True)
        proto = onnx.load(str(tmp))
        for key, value in _metadata(run).items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        proto.doc_string = "cnnscope model: input = preprocessed images (N, C, H, W); see metadata_props"
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))

    try:
        atomic_write(out, write)
    finally:
        model.to(device).train(was_training)
    return {"path": str(out), "opset": opset, "input": "input", "input_shape": ["batch", *run.spec.input_shape],
            "outputs": outputs, "bytes": out.stat().st_size}


def _metadata(run: Any) -> dict[str, str]:
    """What a consumer needs to feed and read the graph: preprocessing, class names, layer names."""
    dataset = run.data_config.dataset
    return {
        "cnnscope.version": __version__,
        "cnnscope.dataset": dataset,
        "cnnscope.class_names": json.dumps(list(class_names_of(run.data_config))),
        "cnnscope.preprocess": json.dumps(run.preprocessor.to_dict()),
        "cnnscope.layers": json.dumps(run.model.layer_names),
        "cnnscope.output_activation": run.spec.output_activation,
        "cnnscope.spec": json.dumps(run.spec.to_dict()),
    }
