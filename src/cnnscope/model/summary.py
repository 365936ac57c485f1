"""Keras-like model summaries of a ModelSpec, as data and as text (BatchNorm rows, trainable and non-trainable
parameters as Keras counts them)."""

from __future__ import annotations

import dataclasses
from typing import Any

from cnnscope.model.spec import LayerInfo, ModelSpec

__all__ = ["SummaryText", "summary_dict", "summary_rows", "summary_table", "summary_totals"]


def _fmt(pair: tuple[int, int]) -> str:
    return f"{pair[0]}×{pair[1]}"


def summary_dict(spec: ModelSpec) -> dict[str, Any]:
    """Keras-like summary as data: per layer its kind, shape, params and, for conv/pool layers, "receptive_field"
    [h, w], "jump" [h, w] and "start" [y, x] (input coordinate of cell 0's centre; null for other layers); a layer
    with batch norm has "batch_norm" true and its BatchNorm's share of "params" in "batch_norm_params"."""
    layers = spec.layers()
    total = sum(layer.params for layer in layers)
    fixed = sum(layer.non_trainable for layer in layers)
    return {
        "input_shape": list(spec.input_shape),
        "layers": [_layer_dict(layer) for layer in layers],
        "total_params": total,
        "trainable_params": total - fixed,
        "non_trainable_params": fixed,
        "regularizer": dataclasses.asdict(spec.regularizer),
    }


def _layer_dict(layer: LayerInfo) -> dict[str, Any]:
    geometry = layer.geometry.to_dict() if layer.geometry is not None else {}
    return {"name": layer.name, "type": layer.type, "kind": layer.kind, "output_shape": list(layer.output_shape),
            "params": layer.params, "batch_norm": layer.norm_params > 0, "batch_norm_params": layer.norm_params,
            "non_trainable_params": layer.non_trainable, "receptive_field": geometry.get("receptive_field"),
            "jump": geometry.get("jump"), "start": geometry.get("start")}


def summary_rows(spec: ModelSpec) -> list[tuple[str, str, str, str]]:
    """The table's rows, a header first; a layer with batch norm is followed by an indented BatchNorm row with its
    parameters."""
    rows = [("Layer (type)", "Output shape", "Param #", "Receptive field")]
    for layer in spec.layers():
        rf = _fmt(layer.receptive_field) if layer.receptive_field else ""
        shape = str(layer.output_shape).replace(",)", ")")
        rows.append((f"{layer.name} ({layer.type})", shape, f"{layer.params - layer.norm_params:,}", rf))
        if layer.norm_params:
            rows.append(("  └ BatchNorm, before the activation", shape, f"{layer.norm_params:,}", ""))
    return rows


def summary_totals(spec: ModelSpec) -> list[str]:
    """The lines under the table: total, trainable and non-trainable parameters, the output and the regularizer."""
    total, trainable = spec.total_params, spec.trainable_params
    reg = spec.regularizer
    reg_text = "none" if reg.kind == "none" else f"{reg.kind} {reg.coefficient:g} on dense" + (
        " and conv" if reg.conv else "") + " kernels"
    return [f"Total params: {total:,}", f"Trainable params: {trainable:,}",
            f"Non-trainable params: {total - trainable:,}",
            f"Output: {spec.num_classes} classes, {spec.output_activation}; regularizer: {reg_text}"]


class SummaryText(str):
    """The summary as text; a notebook cell shows it as the table it is (not a string with its \\n escapes)."""

    __slots__ = ()

    def _repr_pretty_(self, printer, cycle: bool) -> None:  # IPython's plain-text display
        printer.text(str(self))


def summary_table(spec: ModelSpec) -> SummaryText:
    """Keras-like summary as text: name (type), output shape (C, H, W), params, receptive field; BatchNorm rows
    under their layers; total, trainable and non-trainable parameters (BatchNorm's running statistics)."""
    rows = summary_rows(spec)
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    line = "─" * (sum(widths) + 6)

    def fmt(row: tuple[str, ...]) -> str:
        return "  ".join(cell.ljust(width) if i in (0, 1) else cell.rjust(width)
                         for i, (cell, width) in enumerate(zip(row, widths, strict=False))).rstrip()

    lines = [f"Input shape (C, H, W): {spec.input_shape}", line, fmt(rows[0]), line,
             *(fmt(r) for r in rows[1:]), line, *summary_totals(spec)]
    return SummaryText("\n".join(lines))
