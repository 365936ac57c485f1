"""Commands `patterns` (inputs that maximise a layer's maps) and `explain` (why this class: heat maps).

Imports inside the command functions: `cnnscope --help` and a mistyped flag must not load torch."""

from __future__ import annotations

import argparse

from cnnscope.cli.train import add_data_dir, add_figure_flags, positive_int, print_figures, print_json

# The method registry (inspect.methods) loads torch, which --help must not: its names, kept equal to the registry's
# by tests/test_imports.py.
DEFAULT_METHOD = "integrated-gradients"
METHODS = ("integrated-gradients", "saliency", "input-x-gradient", "smoothgrad", "guided-backprop", "deeplift",
           "occlusion", "gradcam", "guided-gradcam")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("patterns", help="input patterns that maximise each map of a layer",
                       description="Gradient ascent on the input, for each chosen map of a layer, with pixels kept "
                                   "inside the range of the run's preprocessed training data. Prints per map the "
                                   "mean activation reached next to the map's 99th percentile over the test set.")
    p.add_argument("run", metavar="RUN_DIR")
    p.add_argument("--layer", metavar="NAME", required=True, help="e.g. Conv2D_3 (see 'cnnscope summary RUN_DIR')")
    p.add_argument("--maps", metavar="SPEC", help="maps to optimise: START:END (end excluded), N, or N,M,… "
                                                  "(default: all)")
    p.add_argument("--steps", type=positive_int, default=48, help="gradient steps per map (default 48)")
    p.add_argument("--restarts", type=positive_int, default=4,
                   help="random starts per map; the best is kept (default 4)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0): same seed, same patterns")
    p.add_argument("--cols", type=positive_int, default=8, help="patterns per row in the figure (default 8)")
    add_figure_flags(p)
    add_data_dir(p)
    p.set_defaults(handler=cmd_patterns)

    p = sub.add_parser("explain", help="why this class: a heat map over the input, with a deletion test",
                       description="A heat map over the input for the predicted (or a given) class, overlaid on "
                                   "the image, and a deletion test: the class probability while 0-50 % of the "
                                   "pixels are blanked (and inserted into a black image) in the method's order, next "
                                   "to the order of brightness alone (no model) and random orders. The method passes "
                                   "when its deletion AUC is below the brightness order's. "
                                   "--method all shows every method side by side on the image.")
    p.add_argument("run", metavar="RUN_DIR")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--index", type=int, metavar="N", help="image N of the data set (see --set)")
    src.add_argument("--image", metavar="FILE", help="your own picture, converted to the model's "
                     "input (MNIST-style for one-channel models, colours kept for colour models)")
    p.add_argument("--set", dest="split", default="test", metavar="SET", help="test (default) or train")
    p.add_argument("--method", metavar="NAME",
                   help=f"{DEFAULT_METHOD} (default), {', '.join(m for m in METHODS if m != DEFAULT_METHOD)}, "
                        "or all (side by side)")
    p.add_argument("--layer", metavar="NAME", help="Grad-CAM's layer (default: the last conv layer)")
    p.add_argument("--target", metavar="C", help="explain class C (number or name) instead of the predicted one")
    add_figure_flags(p)
    add_data_dir(p)
    p.set_defaults(handler=cmd_explain)


def cmd_patterns(args: argparse.Namespace) -> int:
    from cnnscope.views.patterns import beats_line, patterns

    result = patterns(args.run, args.layer, maps=args.maps, steps=args.steps, restarts=args.restarts,
                      seed=args.seed, cols=args.cols, out=args.out, svg=args.svg, data_dir=args.data_dir)
    data = result.to_json()
    if args.json:
        print_json(data)
        return 0
    print(f"{data['layer']}: {len(data['maps'])} map(s) in {data['seconds']:.1f} s "
          f"({data['restarts']} restarts × {data['steps']} steps, seed {data['seed']})")
    print(f"{'map':>5}  {'reached':>9}  {'test p99':>9}  {'test max':>9}")
    for row in data["maps"]:
        mark = ("  dead: 0 on every test image" if row["dead"] else
                "" if row["activation"] > row["test_max"] else "  (below test max)")
        print(f"{row['map']:>5}  {row['activation']:>9.4g}  {row['test_p99']:>9.4g}  {row['test_max']:>9.4g}{mark}")
    if data["above_test_max"] is not None:
        print(f"above the test max: {data['above_test_max']:.1%} of {data['live_maps']} live maps; above p99: "
              f"{data['above_test_p99']:.1%} (mean activation of the map, over {data['test_images']:,} test images)")
    print(beats_line(data))
    print_figures(result.paths)
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from cnnscope.views.explain import explain

    result = explain(args.run, index=args.index, split=args.split, image=args.image, method=args.method,
                     layer=args.layer, target=args.target, out=args.out, svg=args.svg, data_dir=args.data_dir)
    if args.json:
        print_json(result.to_json())
        return 0
    for note in result.notes:
        print(f"  - {note}")
    data = result.data
    p, t, first = data["predicted"], data["target"], data["methods"][0]["deletion"]
    truth = f", true class {data['label']}" if data["label"] is not None else ""
    print(f"{data['source']}: predicted {p['class']} ({p['probability']:.1%}){truth}")
    print(f"heat maps for class {t['class']} ({t['probability']:.1%}); deletion test over "
          f"0-{first['fractions'][-1]:.0%} of the pixels, AUC = mean class probability (deletion: lower is better; "
          f"insertion: higher); rankings: the method, brightness (no model) and random (mean of "
          f"{first['random_draws']} draws)")
    print(f"  {first['criterion']}")
    for row in data["methods"]:
        d, where = row["deletion"], f" on {row['layer']}" if row["layer"] else ""
        r = d["rankings"]
        verdict = "PASSES" if d["passes"] else "FAILS" + ("" if d["beats_random"] else " (not even below random)")
        print(f"  {row['method']}{where}: deletion AUC {r['method']['deletion_auc']:.3f} (brightness "
              f"{r['brightness']['deletion_auc']:.3f}, random {r['random']['deletion_auc']:.3f}); insertion AUC "
              f"{r['method']['insertion_auc']:.3f} ({r['brightness']['insertion_auc']:.3f}, "
              f"{r['random']['insertion_auc']:.3f}); {verdict}")
    print_figures(result.paths)
    return 0
