"""Core commands: summary, train, evaluate.

Imports inside the command functions: `cnnscope --help` and a mistyped flag must not load torch."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from cnnscope.base.errors import ConfigError, OutputError

FIGURE_FORMATS = (".png", ".svg", ".pdf")  # what plots.save_figure_as writes (a test keeps the two equal)


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
    parser.add_argument("--out", metavar="FILE", help="figure file, by its suffix: .png, .svg or .pdf (no suffix: "
                                                      ".png; default: a .png inside RUN_DIR)")
    parser.add_argument("--svg", action="store_true", help="also write an SVG beside the PNG (default: off)")
    if json:
        parser.add_argument("--json", action="store_true",
                            help="print one JSON object instead of text (the figure is still written; default: off)")
    parser.set_defaults(out_kind="figure")


def _existing_ancestor(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_output(path: str | Path, kind: str = "file", flag: str = "--out") -> None:
    """Refuse an output path that cannot be written, before any work: wrong figure suffix, a directory where a
    file is wanted (or the reverse), a parent that is a file, a directory this process cannot write in."""
    path = Path(path)
    if kind == "figure" and path.suffix and path.suffix.lower() not in FIGURE_FORMATS:
        raise OutputError(f"cannot write a figure as {path.suffix!r} ({flag} {path}); use "
                          f"{', '.join(FIGURE_FORMATS)}")
    if kind != "dir" and path.is_dir():
        raise OutputError(f"{flag} {path} is a directory; give a file name inside it")
    if kind == "dir" and path.exists() and not path.is_dir():
        raise OutputError(f"{flag} {path} is a file; give a directory")
    base = path if kind == "dir" and path.is_dir() else _existing_ancestor(path.parent)
    if not base.is_dir():
        raise OutputError(f"cannot write {path}: {base} is not a directory")
    try:  # a real probe: permissions, read-only file systems and ACLs all show up here
        fd, probe = tempfile.mkstemp(prefix=".cnnscope-probe-", dir=base)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {base} is not writable ({exc.strerror or exc})") from None


def check_outputs(args: argparse.Namespace) -> None:
    """check_output for the command's --out (its kind set by the command: figure, file or dir)."""
    out = getattr(args, "out", None)
    if out:
        check_output(out, getattr(args, "out_kind", "file"))


def print_figures(paths) -> None:
    for path in paths:
        print(f"figure: {path}")


def val_size(text: str) -> int | float:
    """argparse type of --val-size: a number of images (an integer), or a share in [0, 1) as 10% or 0.1."""
    text = text.strip()
    try:
        if text.endswith("%"):
            value: int | float = float(text[:-1]) / 100
        elif text.isdigit():
            value = int(text)
        else:
            value = float(text)
    except ValueError:
        value = -1.0
    if isinstance(value, float) and not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected N images or a share such as 10% or 0.1, received {text!r}")
    return value


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", metavar="DIR",
                        help="local directory holding <dataset>/ folders (mnist/, cifar10/, …) with the official "
                             "files or archives (default: $CNNSCOPE_DATA_DIR, else download to the cache)")


def _schedule_args(pairs: list[str]) -> dict[str, float | bool]:
    out: dict[str, float | bool] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        try:
            if not sep:
                raise ValueError
            flag = value.strip().lower()
            out[key.strip()] = flag == "true" if flag in ("true", "false") else float(value)
        except ValueError:
            raise ConfigError(f"--schedule-arg expects KEY=NUMBER (or KEY=true/false), received {pair!r}") from None
    return out


TRAIN_FLAGS = (  # flag, type, help (each overrides the config file's [train] value)
    ("epochs", int, "epochs to train (default 10, or the config's)"),
    ("batch-size", int, "images per step (default 64)"),
    ("optimizer", str, "rmsprop (default), adam, nadam, adamax, sgd or adamw"),
    ("optimizer-rules", str, "the optimizer's update formulas: keras (default: Keras 3's, as the series trained) "
                             "or torch (torch.optim's; runs saved before this setting use them)"),
    ("lr", float, "learning rate (default 0.001)"),
    ("momentum", float, "momentum of rmsprop and sgd (default 0.5)"),
    ("weight-decay", float, "L2 weight decay, decoupled for adamw (default 0)"),
    ("schedule", str, "learning-rate schedule: none (default), power, exponential, cosine or one-cycle"),
    ("label-smoothing", float, "label smoothing in [0, 1) (default 0)"),
    ("augment-shift", int, "random shift of each training image by up to N pixels (default 0: off)"),
    ("augment-erase", float, "probability of setting a random rectangle (2-40 %% of the area) of each training "
                             "image to 0 after preprocessing, random erasing (default 0: off)"),
    ("seed", int, "random seed for weights, batches and the data split (default 0)"),
    ("device", str, "auto (default: a GPU when there is one), cpu, cuda or mps"),
    ("threads", int, "CPU threads for PyTorch (default 0: PyTorch's choice)"),
    ("precision", str, "fp32 (default) or bf16 (mixed precision)"),
)
DATA_FLAGS = (  # flag, type, help (each overrides the config file's [data] value)
    ("dataset", str, "mnist (default), fashion-mnist, kmnist, emnist-digits, emnist-letters, emnist-balanced, "
                     "cifar10, npz:FILE (x_train, y_train, x_test, y_test, optional class_names) or folder:PATH "
                     "(PATH/train/<class>/*.png and PATH/test/<class>/…, or PATH/<class>/…)"),
    ("preprocess", str, "unit (default: /255), standard (per-pixel mean/std, as the series), standard-floor (std "
                        "floored at the global one), standard-clip (per-pixel training range), global, or channel (one "
                        "mean/std per colour channel)"),
    ("split", str, "official (default: 60,000 train / 10,000 test) or reshuffle"),
    ("val-size", "val_size", "training images held out for validation: N images, or a share of each class such "
                             "as 10%% (stratified) (train: default 0, validate on the test set; sweep: default 10%%)"),
    ("limit-train", int, "use only the first N training images (default: all)"),
    ("limit-test", int, "use only the first N test images (default: all)"),
)


def preset_names() -> str:
    """The presets' names for help texts, from the one registry."""
    from cnnscope.model.zoo import presets

    return ", ".join(f"{name} (default)" if name == "seed-iv" else name for name in presets)


def add_folder_flags(group) -> None:
    """--image-size, --channels, --skip-bad, --test-size: how a folder:PATH dataset is read."""
    group.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"), default=None,
                       help="folder: resize pictures to H×W (default: their own size, the most common one)")
    group.add_argument("--channels", type=int, default=None, choices=(1, 3),
                       help="folder: 1 (grey) or 3 (colour) (default: what the pictures are, the most common)")
    group.add_argument("--skip-bad", action="store_true", default=None,
                       help="folder: go on without unreadable pictures, listing them (default: stop on the first)")
    group.add_argument("--test-size", type=int, default=None, metavar="N",
                       help="folder without train/ and test/: pictures held out for testing (default 0: 20 %% of "
                            "each class)")


def folder_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The [data] values of the folder flags that were given."""
    out = {key: getattr(args, key) for key in ("channels", "skip_bad", "test_size") if getattr(args, key, None)
           is not None}
    if getattr(args, "image_size", None) is not None:
        out["image_size"] = tuple(args.image_size)
    return out


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("summary", help="layer table: output shapes, parameters, receptive fields")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--preset", help=f"a built-in model: {preset_names()}")
    src.add_argument("--config", metavar="FILE",
                     help="a TOML model spec or run config, the same as giving FILE.toml (default: none)")
    p.add_argument("run", nargs="?", metavar="RUN_DIR|FILE.toml",
                   help="a run directory (its saved spec) or a TOML config file (default: --preset seed-iv)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table (default: off)")
    p.set_defaults(handler=cmd_summary)
    _register_train(sub)
    p = sub.add_parser("evaluate", help="test loss/accuracy, per-class accuracy, confusion matrix")
    p.add_argument("run", metavar="RUN_DIR", help="a run directory written by 'cnnscope train'")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text (default: off)")
    p.add_argument("--out", metavar="FILE", help="confusion matrix figure: .png, .svg or .pdf "
                                                 "(default RUN_DIR/confusion.png)")
    add_data_dir(p)
    p.set_defaults(handler=cmd_evaluate, out_kind="figure")


def _register_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model and write a run directory",
                       description="Train a model and write a run directory. With no options: the seed-iv "
                                   "model, the default recipe and runs/<dataset>-<time>; the command says which "
                                   "before it starts.")
    p.add_argument("--config", metavar="FILE", help="TOML with [model], [train], [data] tables (default: none)")
    p.add_argument("--preset", help=f"model preset, overrides the config's [model]: {preset_names()}")
    p.add_argument("--out", metavar="DIR", help="run directory to write (default runs/<dataset>-<time>)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in --out (default: refuse)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue this run up to --epochs in total (default: off)")
    p.add_argument("--init-from", metavar="RUN_DIR", help="start from that run's initial weights (default: random)")
    p.add_argument("--no-plot", action="store_true", help="do not rewrite curves.png every epoch (default: rewrite)")
    p.add_argument("--no-report", action="store_true", help="do not write report.html at the end (default: write)")
    p.add_argument("--probe", type=int, metavar="INDEX", help="record this test image's activations and the first "
                                                              "layer's filters every epoch (default: off)")
    p.add_argument("--tensorboard", metavar="DIR", help="also write TensorBoard event files to DIR: scalars every "
                                                        "epoch, and --probe's maps and filters (default: off)")
    add_training_flags(p)
    p.set_defaults(handler=cmd_train, out_kind="dir")


def add_training_flags(p: argparse.ArgumentParser) -> None:
    """--data-dir and the flags that override a recipe's [train] and [data] values (train and sweep share them)."""
    add_data_dir(p)
    train_flags = p.add_argument_group("training (override [train])")
    for flag, kind, text in TRAIN_FLAGS:
        train_flags.add_argument(f"--{flag}", type=kind, default=None, help=text,
                                 **({"dest": "rules"} if flag == "optimizer-rules" else {}))
    train_flags.add_argument("--nesterov", action="store_true", default=None,
                             help="Nesterov momentum for sgd (default: off)")
    train_flags.add_argument("--augment-flip", action="store_true", default=None,
                             help="mirror a random half of each training batch left to right (for clothes or "
                                  "photos, not digits; default: off)")
    train_flags.add_argument("--schedule-arg", action="append", default=[], metavar="KEY=VALUE",
                             help="schedule parameter, e.g. rate=0.001 (repeatable; default: the schedule's own)")
    data_flags = p.add_argument_group("data (override [data])")
    types = {"val_size": val_size}
    for flag, kind, text in DATA_FLAGS:
        data_flags.add_argument(f"--{flag}", type=types.get(kind, kind), default=None, help=text)
    add_folder_flags(data_flags)


def cmd_summary(args: argparse.Namespace) -> int:
    from cnnscope.model.summary import summary_dict, summary_table
    from cnnscope.model.zoo import get_preset
    from cnnscope.runs.load import read_run_config
    from cnnscope.trainer.config import build_run_config

    if args.run and (args.preset or args.config):
        raise ConfigError("give one of --preset, --config or RUN_DIR|FILE.toml")
    config = args.config
    if args.run and (Path(args.run).is_file() or Path(args.run).suffix.lower() == ".toml"):
        config, args.run = args.run, None
    if args.run:
        spec = read_run_config(args.run).model
    elif config:
        spec = build_run_config(config).model
    else:
        spec = get_preset(args.preset or "seed-iv")
    if args.json:
        print_json(summary_dict(spec))
    else:
        print(summary_table(spec))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from cnnscope.training.api import train_from_settings, write_report
    from cnnscope.training.probe import Probe

    train_overrides, data_overrides = training_overrides(args)
    if args.resume is None and args.verbosity >= 0:
        _announce(args, train_overrides, data_overrides)
    callbacks = [Probe(args.probe)] if args.probe is not None else []
    if args.tensorboard:
        from cnnscope.training.tensorboard import TensorBoardLogger

        check_output(args.tensorboard, "dir", "--tensorboard")
        callbacks.append(TensorBoardLogger(args.tensorboard, probe=args.probe))
    run = train_from_settings(config_file=args.config, preset=args.preset, train_overrides=train_overrides,
                              data_overrides=data_overrides, out=args.out, overwrite=args.overwrite,
                              resume_from=args.resume, init_from=args.init_from, plot=not args.no_plot,
                              callbacks=callbacks, verbose=False)  # the CLI's own logging shows the epochs
    m = run.metrics
    state = "interrupted after" if m["status"] == "interrupted" else "trained"
    print(f"{state} {m['epochs_completed']} epoch(s) in {m['train_seconds']:.1f} s "
          f"({m['images_per_second']:.0f} images/s on {m['device']})")
    print(f"test accuracy {m['test_accuracy']:.4f}, test loss {m['test_loss']:.4f} on {m['test_images']:,} images")
    print(f"run directory: {run.path}", flush=True)
    if not args.no_report and m["status"] == "completed":  # as train(report=True): a failure is a warning
        path = write_report(run, data_dir=args.data_dir)
        if path is not None:
            print(f"report: {path}")
    return 130 if m["status"] == "interrupted" else 0


def training_overrides(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """The [train] and [data] values given as flags (None: not given, the config's value stays); a --val-size
    share is the [data] val_fraction."""
    train_overrides = {key: getattr(args, key) for key in (
        "epochs", "batch_size", "optimizer", "rules", "lr", "momentum", "weight_decay", "schedule", "label_smoothing",
        "augment_shift", "augment_flip", "augment_erase", "seed", "device", "threads", "precision", "nesterov")
        if getattr(args, key) is not None}
    if args.schedule_arg:
        train_overrides["schedule_args"] = _schedule_args(args.schedule_arg)
    data_overrides = {key: getattr(args, key) for key in (
        "dataset", "preprocess", "split", "val_size", "limit_train", "limit_test") if getattr(args, key) is not None}
    if isinstance(data_overrides.get("val_size"), float):  # a share replaces the recipe's count, and the reverse
        data_overrides.update(val_fraction=data_overrides.pop("val_size"), val_size=0)
    elif "val_size" in data_overrides:
        data_overrides["val_fraction"] = None
    data_overrides.update(folder_overrides(args))
    if args.data_dir:
        data_overrides["data_dir"] = str(Path(args.data_dir).resolve())
    if "seed" in train_overrides:
        data_overrides.setdefault("seed", train_overrides["seed"])
    return train_overrides, data_overrides


def _announce(args: argparse.Namespace, train: dict[str, Any], data: dict[str, Any]) -> None:
    """Say which model, recipe and output a training will use, before it starts (a bad value fails here)."""
    from cnnscope.data.sources import DATASETS, parse_source, short_name
    from cnnscope.trainer.config import build_run_config, fit_model_to_data, load_config

    config = build_run_config(args.config, args.preset, train, data)
    kind, name = parse_source(config.data.dataset)
    if kind == "builtin":  # the model takes its input shape and classes from the data
        info = DATASETS[name]
        config = fit_model_to_data(config, info.input_shape, len(info.class_names), args.config, args.preset)
    has_model = bool(args.config) and "model" in load_config(args.config)
    model = (f"preset {args.preset}" if args.preset else f"[model] of {args.config}" if has_model
             else "preset seed-iv (the default; --preset or --config to change)")
    t, d = config.train, config.data
    recipe = f"{args.config}" if args.config else "the defaults"
    recipe += " and flags" if train else ""
    out = args.out or f"runs/{short_name(d.dataset)}-<date>-<time> (--out DIR to change)"
    size = (f"{config.model.total_params:,} parameters" if kind == "builtin"
            else "input shape and classes from the data")
    print(f"model: {model}, {size}")
    epochs = f"{t.epochs} epoch{'s' if t.epochs != 1 else ''}"
    print(f"recipe: {recipe}: {t.optimizer} ({t.rules} rules) lr {t.lr:g}, {epochs}, batch {t.batch_size}, "
          f"schedule {t.schedule}; data: {d.dataset} ({d.preprocess})")
    print(f"output: {out}", flush=True)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from cnnscope.training.api import evaluate_run

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
