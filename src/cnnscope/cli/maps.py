"""Look-inside commands: activations (one layer's maps, or every conv/pool layer) and filters.

Imports inside the command functions: `cnnscope --help` and a mistyped flag must not load torch."""

from __future__ import annotations

import argparse

from cnnscope.cli.train import add_data_dir, add_figure_flags, positive_int, print_figures

NORMS = ("layer", "map", "fixed")
DEFAULT_CLIP = 99.0  # = inspect.display.DEFAULT_CLIP (a test keeps them equal; inspect loads torch)


def percentile(text: str) -> float:
    """argparse type: a percentile from 50 to 100."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 50 <= value <= 100:
        raise argparse.ArgumentTypeError(f"expected a percentile from 50 to 100, received {text!r}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("activations", help="the maps of a layer for one image, beside the image",
                       description="Draw the output maps of a named layer for one test/train image or for your "
                                   "own digit picture, as a grid next to the input image.")
    p.add_argument("run", metavar="RUN_DIR", help="a run directory written by 'cnnscope train'")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--layer", metavar="NAME", help="layer to show, e.g. Conv2D_1 (see 'cnnscope summary RUN'; "
                                                              "no default: give --layer or --all-layers)")
    which.add_argument("--all-layers", action="store_true",
                       help="one overview of every conv and pool layer (default: off)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--index", type=int, metavar="N",
                     help="image N of the data set, from 0 (see --set; give --index or --image)")
    src.add_argument("--image", metavar="FILE", help="your own picture (PNG/JPEG, any size, colour or grey, "
                                                     "dark-on-light or light-on-dark); converted to the model's "
                                                     "input: a one-channel model gets an MNIST-style centred "
                                                     "field, a colour model keeps the colours (give --index or "
                                                     "--image)")
    p.add_argument("--set", dest="split", default="test", metavar="SET", help="test (default) or train")
    p.add_argument("--cols", type=positive_int, default=8, help="maps per row (default 8)")
    p.add_argument("--scale", action="store_true", help="the series' display: per map (x-mean)/std*64+128 "
                                                        "clipped to 0..255 (implies --norm map; default: off)")
    p.add_argument("--cmap", metavar="NAME", help="matplotlib colour map (default magma; RdBu_r for signed data)")
    p.add_argument("--norm", choices=NORMS, metavar="MODE",
                   help="colour range: layer (default: one range for all maps, so they are comparable), map (each "
                        "map its own range) or fixed (the range given by --range)")
    p.add_argument("--range", dest="value_range", nargs=2, type=float, metavar=("LO", "HI"),
                   help="the colour range of --norm fixed, e.g. --range -2 2 (implies --norm fixed; default: none)")
    p.add_argument("--clip", type=percentile, default=DEFAULT_CLIP, metavar="P",
                   help="--norm layer: the colour range ends at the P-th percentile of the layer's values, brighter "
                        "values get the top colour (an arrow on the colour bar); 100 = the full range "
                        "(default 99; valid 50 to 100)")
    p.add_argument("--pre-activation", action="store_true",
                   help="show a conv/dense layer's output before its activation function (signed values; default: "
                        "after it)")
    add_figure_flags(p, json=False)
    add_data_dir(p)
    p.set_defaults(handler=cmd_activations)

    p = sub.add_parser("filters", help="the kernels and biases of a conv layer",
                       description="Draw the kernels of a conv layer in a diverging colour map centred on zero, "
                                   "with each filter's bias.")
    p.add_argument("run", metavar="RUN_DIR", help="a run directory written by 'cnnscope train'")
    p.add_argument("--layer", metavar="NAME", required=True, help="conv layer, e.g. Conv2D_1 (required)")
    p.add_argument("--channel", type=int, metavar="C",
                   help="deeper layers: show the kernels for input channel C (default: each filter's strongest)")
    p.add_argument("--channels", choices=("strongest", "rgb", "split", "mean"),
                   help="several input channels: strongest (each filter's input channel of largest norm, numbered; "
                        "the default), rgb (a colour model's first layer: each filter as one RGB picture; its "
                        "default), split (every input channel's kernel) or mean (their mean)")
    p.add_argument("--norm", choices=("filter", "layer"), default="filter",
                   help="colours: filter (default: each filter scaled to its own largest |weight|, so every "
                        "filter's structure shows) or layer (one scale for all: compares their strength)")
    p.add_argument("--cols", type=positive_int, default=8, help="filters per row (default 8)")
    p.add_argument("--cmap", metavar="NAME", help="matplotlib colour map (default RdBu_r)")
    add_figure_flags(p, json=False)
    p.set_defaults(handler=cmd_filters)


def parse_norm(norm: str | None, value_range: list[float] | None) -> tuple[str | None, tuple[float, float] | None]:
    """--norm MODE and --range LO HI as (mode, range): --range alone means fixed; fixed needs --range."""
    from cnnscope.base.errors import ConfigError

    if value_range is not None:
        if norm not in (None, "fixed"):
            raise ConfigError(f"--range LO HI goes with --norm fixed, received --norm {norm}; leave one out")
        return "fixed", (float(value_range[0]), float(value_range[1]))
    if norm == "fixed":
        raise ConfigError("--norm fixed needs its range: add --range LO HI, e.g. --range 0 10")
    return norm, None


def cmd_activations(args: argparse.Namespace) -> int:
    from cnnscope.base.errors import ConfigError

    if not args.layer and not args.all_layers:
        raise ConfigError("name a layer with --layer NAME (see 'cnnscope summary RUN_DIR'), or pass --all-layers")
    if args.all_layers and args.pre_activation:
        raise ConfigError("--pre-activation applies to one layer; leave it out with --all-layers")
    norm, fixed = parse_norm(args.norm, args.value_range)
    common = {"index": args.index, "split": args.split, "image": args.image, "scale": args.scale, "cmap": args.cmap,
              "norm": norm, "fixed": fixed, "clip": args.clip, "out": args.out, "svg": args.svg,
              "data_dir": args.data_dir}
    if args.all_layers:
        from cnnscope.views.activations import all_layers

        result = all_layers(args.run, **common)
    else:
        from cnnscope.views.activations import activations

        result = activations(args.run, args.layer, cols=args.cols, pre_activation=args.pre_activation, **common)
    if result.notes:
        print(f"converted {args.image} to a 28×28 model input:")
        for note in result.notes:
            print(f"  - {note}")
    p = result.data["prediction"]
    truth = f", true class {p['true_class']}" if p["true_class"] is not None else ""
    print(f"{result.data['source']}: predicted {p['class']} ({p['probability']:.1%}){truth}")
    if "logits" in result.data:  # the output layer: each class's logit and probability
        width = max(len(str(name)) for name in result.data["class_names"])
        for name, logit, prob in zip(result.data["class_names"], result.data["logits"],
                                     result.data["probabilities"], strict=True):
            print(f"  {name!s:<{width}}  logit {logit:+8.3f}  probability {prob:6.1%}")
    print_figures(result.paths)
    return 0


def cmd_filters(args: argparse.Namespace) -> int:
    from cnnscope.views.activations import filters

    result = filters(args.run, args.layer, channel=args.channel, channels=args.channels, cols=args.cols,
                     cmap=args.cmap, norm=args.norm, out=args.out, svg=args.svg)
    print(f"{args.layer}: {result.data['view']}")
    print_figures(result.paths)
    return 0
