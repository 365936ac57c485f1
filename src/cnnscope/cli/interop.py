"""Interoperability commands: import-keras (a Keras .h5/.keras model -> run directory), export (run -> ONNX).

Imports inside the command functions: `cnnscope --help` and a mistyped flag must not load torch."""

from __future__ import annotations

import argparse

from cnnscope.cli.train import add_data_dir, print_json
from cnnscope.data.sources import DATASETS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import-keras", help="import a Keras .h5/.keras model into a run directory (no TensorFlow)")
    p.add_argument("model", metavar="MODEL", help="a Keras model saved with model.save('….h5' or '….keras')")
    p.add_argument("--out", metavar="RUN_DIR", help="run directory to write (default runs/keras-<name>-<time>)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    p.add_argument("--preprocess", default="standard",
                   help="how the model's inputs were prepared in Keras: standard (per-pixel, as the series), "
                        "unit (/255) or global (default standard)")
    p.add_argument("--dataset", default="mnist",
                   help=f"the data the model was trained on: {', '.join(DATASETS)} or npz:FILE (default mnist)")
    add_data_dir(p)
    p.add_argument("--json", action="store_true", help="print the run's metrics.json as one JSON object")
    p.set_defaults(handler=cmd_import_keras, out_kind="dir")

    p = sub.add_parser("export", help="export a run's model to ONNX (dynamic batch)")
    p.add_argument("run", metavar="RUN_DIR")
    p.add_argument("--onnx", metavar="FILE", required=True, help="the .onnx file to write")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset, 17 to 20 (default 17)")
    p.add_argument("--with-layers", action="store_true",
                   help="add every named layer's output as an extra graph output named after the layer")
    p.add_argument("--json", action="store_true", help="print one JSON object describing the graph")
    p.set_defaults(handler=cmd_export)


def cmd_import_keras(args: argparse.Namespace) -> int:
    from cnnscope.interop.keras.importer import import_keras

    run = import_keras(args.model, out=args.out, preprocess=args.preprocess, dataset=args.dataset,
                       data_dir=args.data_dir, overwrite=args.overwrite)
    m = run.metrics
    if args.json:
        print_json({**m, "run_dir": str(run.path), "total_params": run.spec.total_params})
        return 0
    print(f"imported {m['source']} (Keras {m['keras_version']}, .{m['format']}): {len(run.model.layer_names)} "
          f"layers, {run.spec.total_params:,} parameters")
    print(f"test accuracy {m['test_accuracy']:.4f} on {m['test_images']:,} {m['dataset']} images "
          f"(preprocess {m['preprocess']})")
    if m["test_accuracy"] < 0.5:
        print("  low: was the model trained on this dataset, with inputs prepared as --preprocess says?")
    print(f"run directory: {run.path}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from cnnscope.interop.onnx import export_onnx

    info = export_onnx(args.run, args.onnx, opset=args.opset, with_layers=args.with_layers)
    if args.json:
        print_json(info)
        return 0
    print(f"wrote {info['path']} (ONNX opset {info['opset']}, {info['bytes']:,} bytes)")
    print(f"input: {info['input']} {tuple(info['input_shape'])} (preprocessed images)")
    print(f"outputs: {', '.join(info['outputs'])}")
    return 0
