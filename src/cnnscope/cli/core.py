"""Core commands: summary, train, evaluate."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from ..errors import ConfigError


def _json_safe(data: Any) -> Any:
    """NaN and ±inf (e.g. the profile of a class absent from --limit images) become null: strict JSON."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {key: _json_safe(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [_json_safe(value) for value in data]
    return data


def print_json(data: Any) -> None:
    """One JSON object on stdout (strict JSON: non-finite numbers are written as null)."""
    print(json.dumps(_json_safe(data), indent=2, allow_nan=False))


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (a usage error otherwise)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, received {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, received {value}")
    return value


def add_figure_flags(parser: argparse.ArgumentParser, json: bool = True) -> None:
    """--out FILE and --svg for commands that draw; --json for those that also compute numbers."""
    parser.add_argument("--out", metavar="FILE", help="figure file: .png (default), .svg or .pdf "
                                                      "(default: inside RUN_DIR)")
    parser.add_argument("--svg", action="store_true", help="also write an SVG beside the PNG")
    if json:
        parser.add_argument("--json", action="store_true", help="print one JSON object (the figure is still written)")


def print_figures(paths) -> None:
    for path in paths:
        print(f"figure: {path}")


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", metavar="DIR",
                        help="local directory holding mnist/ and fashion-mnist/ with the official IDX files "
                             "(default: $CNNSCOPE_DATA_DIR, else download to the cache)")


def _schedule_args(pairs: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        try:
            if not sep:
                raise ValueError
            out[key.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"--schedule-arg expects KEY=NUMBER, received {pair!r}") from None
    return out


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("summary", help="layer table: output shapes, parameters, receptive fields")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--preset", help="a built-in model: seed-ii, seed-iv, tiny")
    src.add_argument("--config", metavar="FILE", help="a TOML model spec or run config")
    p.add_argument("run", nargs="?", metavar="RUN_DIR", help="a run directory (its saved spec)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=cmd_summary)

    p = sub.add_parser("train", help="train a model and write a run directory")
    p.add_argument("--config", metavar="FILE", help="TOML with [model], [train], [data] tables")
    p.add_argument("--preset", help="model preset (overrides the config's [model]): seed-ii, seed-iv, tiny")
    p.add_argument("--out", metavar="DIR", help="run directory to write (default runs/<dataset>-<time>)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue this run up to --epochs in total")
    p.add_argument("--init-from", metavar="RUN_DIR", help="start from that run's initial weights")
    p.add_argument("--no-plot", action="store_true", help="do not rewrite curves.png every epoch")
    p.add_argument("--no-report", action="store_true", help="do not write report.html at the end")
    p.add_argument("--probe", type=int, metavar="INDEX",
                   help="record this test image's activations and the first layer's filters every epoch")
    add_data_dir(p)
    train_flags = p.add_argument_group("training (override [train])")
    for flag, kind in (("epochs", int), ("batch-size", int), ("optimizer", str), ("lr", float),
                       ("momentum", float), ("weight-decay", float), ("schedule", str),
                       ("label-smoothing", float), ("augment-shift", int), ("seed", int), ("device", str),
                       ("threads", int), ("precision", str)):
        train_flags.add_argument(f"--{flag}", type=kind, default=None)
    train_flags.add_argument("--nesterov", action="store_true", default=None)
    train_flags.add_argument("--schedule-arg", action="append", default=[], metavar="KEY=VALUE",
                             help="schedule parameter, e.g. rate=0.001 (repeatable)")
    data_flags = p.add_argument_group("data (override [data])")
    for flag, kind in (("dataset", str), ("preprocess", str), ("split", str), ("val-size", int),
                       ("limit-train", int), ("limit-test", int)):
        data_flags.add_argument(f"--{flag}", type=kind, default=None)
    p.set_defaults(handler=cmd_train)

    p = sub.add_parser("evaluate", help="test loss/accuracy, per-class accuracy, confusion matrix")
    p.add_argument("run", metavar="RUN_DIR")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--out", metavar="FILE", help="confusion matrix image (default RUN_DIR/confusion.png)")
    add_data_dir(p)
    p.set_defaults(handler=cmd_evaluate)


def cmd_summary(args: argparse.Namespace) -> int:
    from ..config import build_run_config
    from ..runs import read_run_config
    from ..spec import get_preset, summary_dict, summary_table

    if args.run and (args.preset or args.config):
        raise ConfigError("give one of --preset, --config or RUN_DIR")
    if args.run:
        spec = read_run_config(args.run).model
    elif args.config:
        spec = build_run_config(args.config).model
    else:
        spec = get_preset(args.preset or "seed-iv")
    if args.json:
        print_json(summary_dict(spec))
    else:
        print(summary_table(spec))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from ..train import train_from_settings

    train_overrides = {key: getattr(args, key) for key in (
        "epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay", "schedule", "label_smoothing",
        "augment_shift", "seed", "device", "threads", "precision", "nesterov") if getattr(args, key) is not None}
    if args.schedule_arg:
        train_overrides["schedule_args"] = _schedule_args(args.schedule_arg)
    data_overrides = {key: getattr(args, key) for key in (
        "dataset", "preprocess", "split", "val_size", "limit_train", "limit_test") if getattr(args, key) is not None}
    if args.data_dir:
        data_overrides["data_dir"] = str(Path(args.data_dir).resolve())
    if "seed" in train_overrides:
        data_overrides.setdefault("seed", train_overrides["seed"])
    from ..probe import Probe

    callbacks = [Probe(args.probe)] if args.probe is not None else []
    run = train_from_settings(config_file=args.config, preset=args.preset, train=train_overrides,
                              data=data_overrides, out=args.out, overwrite=args.overwrite, resume=args.resume,
                              init_from=args.init_from, plot=not args.no_plot, callbacks=callbacks)
    m = run.metrics
    state = "interrupted after" if m["status"] == "interrupted" else "trained"
    print(f"{state} {m['epochs_completed']} epoch(s) in {m['train_seconds']:.1f} s "
          f"({m['images_per_second']:.0f} images/s on {m['device']})")
    print(f"test accuracy {m['test_accuracy']:.4f}, test loss {m['test_loss']:.4f} on {m['test_images']:,} images")
    print(f"run directory: {run.path}")
    if not args.no_report and m["status"] == "completed":
        from ..errors import CnnscopeError
        from ..report import build_report

        try:  # the run is saved whatever happens here; a failed report is a warning, not a failed training
            print(f"report: {build_report(run.path, data_dir=args.data_dir)}")
        except CnnscopeError as exc:
            print(f"warning: report not written ({exc}); retry with 'cnnscope report {run.path}'", file=sys.stderr)
    return 130 if m["status"] == "interrupted" else 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..train import evaluate_run

    result = evaluate_run(args.run, data_dir=args.data_dir, figure=args.out)
    if args.json:
        print_json(result)
        return 0
    print(f"test accuracy {result['test_accuracy']:.4f}  loss {result['test_loss']:.4f}  "
          f"({result['test_images']:,} images)")
    for name, acc in zip(result["class_names"], result["per_class_accuracy"], strict=False):
        print(f"  {name:>12}: {acc:.4f}")
    print(f"confusion matrix: {result['confusion_png']}", file=sys.stdout)
    return 0
