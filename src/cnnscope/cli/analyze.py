"""Analysis commands: class profiles, top images of a map, misclassified images, comparing two runs.

Imports inside the command functions: `cnnscope --help` and a mistyped flag must not load torch."""

from __future__ import annotations

import argparse

from cnnscope.base.errors import ConfigError
from cnnscope.cli.train import add_data_dir, add_figure_flags, positive_int, print_figures, print_json

COMPARE_LIMIT = 2000  # test images compare uses by default: matched correlations are stable by then and a
# --layer all comparison of several runs takes seconds, not minutes (benchmarks/README.md, "Issue 23")


def _common(p: argparse.ArgumentParser, limit_help: str, default: int | None = None) -> None:
    p.add_argument("--limit", type=positive_int, metavar="N", default=default,
                   help=f"{limit_help} (default: {'all' if default is None else f'{default:,}'})")
    add_figure_flags(p)
    add_data_dir(p)


def register(sub: argparse._SubParsersAction) -> None:
    _register_profile(sub)
    _register_top_images(sub)
    _register_errors(sub)
    _register_compare(sub)


def _register_profile(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("profile", help="mean activation of each map per class, as a heat map",
                       description="Mean activation of every map (or unit) of a layer for each class over the "
                                   "test set: which classes drive which maps.")
    p.add_argument("run", metavar="RUN_DIR")
    p.add_argument("--layer", metavar="NAME", required=True, help="layer, e.g. Conv2D_3 (see 'cnnscope summary')")
    p.add_argument("--set", dest="split", default="test", metavar="SET", help="test (default) or train")
    p.add_argument("--norm", default="map", choices=("map", "layer"),
                   help="colours: 'map' (default) each map scaled to its largest class mean; 'layer' raw means")
    p.add_argument("--order", default="index", choices=("index", "class"),
                   help="map order: index (default: by number) or class (grouped by preferred class)")
    p.add_argument("--classify", action="store_true",
                   help="series part VI: the test accuracy of the nearest class-mean pattern (cosine, Euclidean; "
                        "means over training images) and of a linear read-out (softmax regression, Adam, 20 "
                        "epochs, seed 0) for the pixels and every conv and pool layer, beside the whole model and "
                        "chance, with the confusion of the nearest-mean classifier on --layer")
    p.add_argument("--train-limit", type=positive_int, default=10_000, metavar="N",
                   help="--classify: class means and read-out from a seeded random sample of N training images "
                        "(default 10000; memory grows with N: N × 2048 × 4 bytes for one layer at a time)")
    p.add_argument("--all-train", dest="train_limit", action="store_const", const=None,
                   help="--classify: use every training image (slower, more memory; default: the --train-limit "
                        "sample)")
    _common(p, "use only the first N images of the set")
    p.set_defaults(handler=cmd_profile)


def _register_top_images(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("top-images", help="the test images that excite one map most",
                       description="The images of the test set in which one map reaches its highest values, with "
                                   "the patch of the input its strongest node sees highlighted.")
    p.add_argument("run", metavar="RUN_DIR")
    p.add_argument("--layer", metavar="NAME", required=True, help="layer, e.g. Conv2D_3")
    p.add_argument("--map", dest="map_index", type=int, metavar="K", required=True, help="map (or unit) number")
    p.add_argument("--k", type=positive_int, default=16, help="how many images (default 16)")
    p.add_argument("--set", dest="split", default="test", metavar="SET", help="test (default) or train")
    _common(p, "search only the first N images of the set")
    p.set_defaults(handler=cmd_top_images)


def _register_errors(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("errors", help="confusion matrix and the misclassified test images",
                       description="The confusion matrix beside a gallery of misclassified test images (most "
                                   "confident mistakes first) with true and predicted class and confidence.")
    p.add_argument("run", metavar="RUN_DIR")
    p.add_argument("--max", dest="max_images", type=positive_int, default=36,
                   help="images in the gallery (default 36); --json lists every mistake")
    p.add_argument("--set", dest="split", default="test", metavar="SET", help="test (default) or train")
    _common(p, "use only the first N images of the set")
    p.set_defaults(handler=cmd_errors)


def _register_compare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="do runs learn the same maps? (one-to-one matching, two runs or many)",
                       description="Match the maps of a layer in runs one-to-one (Hungarian assignment) on the "
                                   "correlation of their activations over the test images. Two runs and one layer: "
                                   "matched pairs side by side (and, for conv layers, their kernels). Three or more "
                                   "runs, a study directory (its completed trials), several --layer, --layer all "
                                   "or --matrix: the N×N matrix of mean matched correlation and which maps of the "
                                   "first run every other run finds.")
    p.add_argument("runs", metavar="RUN", nargs="+", help="run directories (at least two) or study directories")
    p.add_argument("--layer", metavar="NAME", required=True, action="append",
                   help="layer present with the same shape in every run; repeatable; 'all': every conv layer")
    p.add_argument("--matrix", action="store_true", help="the many-run figures even for two runs (default: pairs)")
    p.add_argument("--threshold", type=float, default=None, metavar="R",
                   help="a map counts as found by a run when its partner's r is above R (default 0.9; implies the "
                        "many-run figures)")
    p.add_argument("--index", type=int, default=0, metavar="N", help="test image shown in the figure (default 0)")
    p.add_argument("--pairs", type=positive_int, default=16, help="two runs: matched pairs drawn (default 16)")
    p.add_argument("--no-kernels", dest="kernels", action="store_false",
                   help="two runs: skip the kernel comparison (default: kernels are compared)")
    _common(p, "use the first N test images", COMPARE_LIMIT)
    p.set_defaults(handler=cmd_compare)


def cmd_profile(args: argparse.Namespace) -> int:
    from cnnscope.views.profile import profile

    if args.classify and args.split != "test":
        raise ConfigError("--classify trains on the training images and tests on the test images: drop --set")
    classified = _classify_result(args) if args.classify else None  # a bad layer fails before any figure
    result = profile(args.run, args.layer, split=args.split, limit=args.limit, norm=args.norm, order=args.order,
                     out=args.out, svg=args.svg, data_dir=args.data_dir).to_json()
    if args.json:
        print_json({**result, "classify": classified} if classified else result)
        return 0
    names = result["class_names"]
    counts = {name: 0 for name in names}
    for preferred in result["preferred_class"]:
        if preferred is not None:
            counts[names[preferred]] += 1
    print(f"{args.layer}: {result['maps']} maps over {result['images']:,} {args.split} images")
    print("maps whose strongest class is: " + ", ".join(f"{name} {count}" for name, count in counts.items()))
    if result["dead_maps"]:
        print(f"{len(result['dead_maps'])} dead map(s), 0 everywhere on every image: "
              f"{', '.join(map(str, result['dead_maps']))}")
    quiet = [m for m in result["silent_maps"] if m not in result["dead_maps"]]
    if quiet:
        print(f"{len(quiet)} map(s) with no positive class mean (but not 0 everywhere): {', '.join(map(str, quiet))}")
    print_figures(result["figures"])
    return _print_classified(classified) if classified else 0


def _classify_result(args: argparse.Namespace) -> dict:
    """The part VI view's JSON; its figure beside --out (NAME-classify.png) or in the run directory."""
    from pathlib import Path

    from cnnscope.views.profile import classify

    out = Path(args.out).with_name(f"{Path(args.out).stem}-classify{Path(args.out).suffix}") if args.out else None
    return classify(args.run, args.layer, limit=args.limit, train_limit=args.train_limit, out=out, svg=args.svg,
                    data_dir=args.data_dir).to_json()


def _print_classified(result: dict) -> int:
    """`profile --classify`: the part VI table and figure."""
    print(f"\nclassification by activation patterns: class means over {result['train_images']:,} training images "
          f"(a seeded sample), accuracy on {result['test_images']:,} test images")
    print(f"{'layer':<12} {'values':>7}  {'nearest cos':>11} {'nearest euc':>11} {'linear':>7}   "
          f"per-map means: {'cos':>6} {'euc':>6} {'linear':>7}")
    for item in result["layers"]:
        a, m = item["accuracy"]["pattern"], item["accuracy"]["profile"]
        pooled = "*" if item["pooled"] else " "
        print(f"{item['layer']:<12} {item['features']:>6}{pooled}  {a['nearest_cosine']:>11.2%} "
              f"{a['nearest_euclidean']:>11.2%} {a['linear']:>7.2%}   {'':>14} {m['nearest_cosine']:>6.2%} "
              f"{m['nearest_euclidean']:>6.2%} {m['linear']:>7.2%}")
    print(f"the whole model: {result['model_accuracy']:.2%}; chance {result['chance']:.0%} (the largest class "
          f"{result['majority']:.2%})")
    if any(item["pooled"] for item in result["layers"]):
        print(f"* average-pooled over space to at most {result['max_features']:,} values")
    print(f"linear read-out: {result['readout']}")
    print_figures(result["figures"])
    return 0


def cmd_top_images(args: argparse.Namespace) -> int:
    from cnnscope.views.profile import top_images

    result = top_images(args.run, args.layer, args.map_index, k=args.k, split=args.split, limit=args.limit,
                        out=args.out, svg=args.svg, data_dir=args.data_dir).to_json()
    if args.json:
        print_json(result)
        return 0
    field = result["receptive_field"]
    seen = f", each node sees {field[0]}×{field[1]} input pixels" if field else ""
    if result["dead"]:
        print(f"{args.layer} map {args.map_index} is dead: 0 everywhere on all {result['searched']:,} {args.split} "
              f"images (the images below are the first ones, not a ranking)")
    else:
        print(f"{args.layer} map {args.map_index}: top {len(result['images'])} of {result['searched']:,} "
              f"{args.split} images{seen}")
    for item in result["images"]:
        t, left, b, r = item["box"]
        print(f"  #{item['index']:<6} class {item['class']:<12} max {item['value']:.4g} at ({item['row']}, "
              f"{item['col']})  input rows {t}-{b - 1}, cols {left}-{r - 1}")
    print_figures(result["figures"])
    return 0


def cmd_errors(args: argparse.Namespace) -> int:
    from cnnscope.views.profile import errors

    result = errors(args.run, max_images=args.max_images, split=args.split, limit=args.limit, out=args.out,
                    svg=args.svg, data_dir=args.data_dir).to_json()
    if args.json:
        print_json(result)
        return 0
    print(f"{result['errors']:,} of {result['images']:,} {args.split} images misclassified "
          f"(accuracy {result['accuracy']:.4f}); most confident mistakes:")
    for item in result["misclassified"][:10]:
        print(f"  #{item['index']:<6} true {item['true']:<12} predicted {item['predicted']:<12} "
              f"{item['confidence']:.1%}")
    print_figures(result["figures"])
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from cnnscope.views.compare import compare, is_study

    many = (args.matrix or len(args.runs) != 2 or len(args.layer) > 1 or args.layer[0] == "all"
            or any(is_study(path) for path in args.runs) or args.threshold is not None)
    if many:
        return _compare_many(args)
    view = compare(args.runs[0], args.runs[1], args.layer[0], limit=args.limit, index=args.index,
                   pairs=args.pairs, kernels=args.kernels, out=args.out, svg=args.svg, data_dir=args.data_dir)
    result = view.to_json()
    if args.json:
        print_json({**result, "notes": view.notes})
        return 0
    for note in view.notes:
        print(f"note: {note}")
    layer, base = args.layer[0], result["baseline"]
    print(_limit_words(args, result["images"]))
    print(f"{layer}: {result['maps']} maps matched one-to-one over {result['images']:,} test images "
          f"× {result['positions']} positions")
    print(f"activations: mean matched correlation {result['mean_correlation']:.3f} (median "
          f"{result['median_correlation']:.3f}), {result['matched_above_0.9']} of {result['pairs']} pairs above 0.9")
    if base:
        print(f"  at initialisation: {base['mean_correlation']:.3f} (median {base['median_correlation']:.3f}), "
              f"{base['matched_above_0.9']} of {base['pairs']} pairs above 0.9: what untrained networks share")
    if result["constant_pairs"] or result["constant_maps_a"] or result["constant_maps_b"]:
        print(f"  maps that never vary: {result['constant_maps_a']} in A, {result['constant_maps_b']} in B "
              f"({result['constant_pairs']} dead-dead pairs left out of the numbers above)")
    kernel = result.get("kernels")
    if kernel:
        print(f"kernels: mean matched correlation {kernel['mean_correlation']:.3f}, {kernel['matched_above_0.9']} "
              f"above 0.9; {kernel['agreement_with_activation_matching']:.0%} of pairs agree with the activation "
              f"matching ({kernel['input_channels']})")
        if kernel["baseline"]:
            print(f"  at initialisation: {kernel['baseline']['mean_correlation']:.3f}, "
                  f"{kernel['baseline']['matched_above_0.9']} above 0.9")
    print_figures(result["figures"])
    return 0


def _limit_words(args: argparse.Namespace, images: int) -> str:
    """The line saying how many test images were compared and how to change it."""
    if args.limit is None or images < args.limit:
        return f"test images: all {images:,}"
    default = " (the default)" if args.limit == COMPARE_LIMIT else ""
    return f"test images: the first {images:,}{default}; --limit N to change"


def _compare_many(args: argparse.Namespace) -> int:
    """`compare` for N runs or a study: the matrix per layer and the first run's maps that every run finds."""
    from cnnscope.views.compare import compare_many_runs

    view = compare_many_runs(args.runs, args.layer, threshold=0.9 if args.threshold is None else args.threshold,
                             limit=args.limit, index=args.index,
                             out=args.out, svg=args.svg, data_dir=args.data_dir)
    result = view.to_json()
    if args.json:
        print_json({**result, "notes": view.notes})
        return 0
    for note in view.notes:
        print(f"note: {note}")
    names, t = result["names"], result["threshold"]
    kind = "seeds" if result["kind"] == "seeds" else "runs"
    print(_limit_words(args, result["images"]))
    print(f"{len(names)} {kind} compared over {result['images']:,} test images: {', '.join(names)}")
    width = max(len(n) for n in names)
    for layer in result["layers"]:
        base = layer["baseline"]
        print(f"{layer['layer']}: mean matched correlation ({layer['maps']} maps)"
              + ("; above the diagonal trained, below at initialisation" if base else ""))
        print(" " * (width + 2) + "  ".join(f"{n[-6:]:>6}" for n in names))
        shown = _below_diagonal(layer["matrix"], base["matrix"] if base else None)
        for name, row in zip(names, shown, strict=True):
            cells = "  ".join("     —" if v != v else f"{v:6.3f}" for v in row)
            print(f"  {name:<{width}}{cells}")
        init = f" ({base['mean_correlation']:.3f} at initialisation)" if base else ""
        print(f"  mean over the pairs {layer['mean_correlation']:.3f}{init}")
        others = len(names) - 1
        init = f" ({base['found_by_all']} at initialisation)" if base else ""
        print(f"  {layer['found_by_all']} of {layer['maps']} maps{init} of {names[0]} found by all {others} other "
              f"runs (matched r > {t:g})")
    print_figures(result["figures"])
    return 0


def _below_diagonal(matrix: list[list[float]], baseline: list[list[float]] | None) -> list[list[float]]:
    """The trained matrix with the baseline's values below the diagonal (as the figure draws it)."""
    if baseline is None:
        return matrix
    return [[baseline[i][j] if j < i else v for j, v in enumerate(row)] for i, row in enumerate(matrix)]
