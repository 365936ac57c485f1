"""The sweep command: search hyperparameters with Optuna, trials in local worker processes or on Ray.

Imports inside the command functions: `cnnscope --help` and a mistyped flag must not load torch."""

from __future__ import annotations

import argparse

from cnnscope.cli.train import (
    add_training_flags,
    positive_int,
    preset_names,
    print_figures,
    print_json,
    training_overrides,
)

DIST_HELP = ("KEY=DIST, repeatable. KEY: any model.*, train.* or data.* key of a run config (e.g. train.lr, "
             "model.preset, data.val_size). DIST: choice:a,b,c; range:lo:hi (the integers lo … hi-1: hi exclusive, "
             "like Python's range); int:lo:hi (hi inclusive); uniform:lo:hi; loguniform:lo:hi (lo > 0)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="search hyperparameters: many runs of a recipe, chosen by Optuna",
                       description="Run (or continue) a study: Optuna picks each trial's values, each trial is an "
                                   "ordinary run directory in STUDY/trials/NNNN. Running the same command again "
                                   "resumes interrupted trials and adds trials up to --trials. Settings may also "
                                   "come from a [sweep] table (with [sweep.params]) in the --config TOML; with no "
                                   "--config and no --param, the study saved in --out is continued.")
    p.add_argument("--config", metavar="TOML", help="run config with [model], [train], [data] (the base of every "
                                                     "trial) and optionally [sweep] (default: none)")
    p.add_argument("--out", metavar="STUDY_DIR", required=True, help="the study directory (created or continued)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=DIST",
                   help=DIST_HELP + " (default: the [sweep.params] of --config, or the saved study's)")
    p.add_argument("--trials", type=positive_int, help="trials in the study in all (default 10; a larger number "
                                                       "grows a finished study)")
    p.add_argument("--sampler", choices=("tpe", "random", "grid"), help="Optuna sampler: tpe (default), random or grid")
    p.add_argument("--metric", choices=("val_accuracy", "test_accuracy", "val_loss"),
                   help="what a trial is judged by, at its last epoch (the weights saved and tested): "
                        "val_accuracy (default) or val_loss (the data loss), on the images --val-size holds out of "
                        "the training set; test_accuracy only with --select-on-test")
    p.add_argument("--select-on-test", action="store_true", default=None,
                   help="allow choosing on the test set (--val-size 0, a recipe without a split, or --metric "
                        "test_accuracy); every summary then warns that the best test accuracy is biased "
                        "(default: refused)")
    p.add_argument("--direction", choices=("maximize", "minimize"),
                   help="maximize or minimize (default: maximize for accuracies, minimize for val_loss)")
    p.add_argument("--workers", type=positive_int, help="trials at a time (default 1; local: processes that "
                                                        "share the CPU cores)")
    p.add_argument("--prune", choices=("none", "median", "hyperband"),
                   help="stop unpromising trials after an epoch: none (default), median or hyperband")
    p.add_argument("--engine", choices=("local", "ray"), help="local (default: worker processes) or ray (Ray tasks)")
    p.add_argument("--ray-address", metavar="ADDR", help="a Ray cluster to run on (default: start a local Ray)")
    p.add_argument("--storage", metavar="URL", help="Optuna storage URL, e.g. postgresql://… (default: SQLite "
                                                    "in STUDY_DIR/study.db)")
    p.add_argument("--tensorboard", metavar="DIR", help="TensorBoard scalars of trial N in DIR/NNNN (local engine; "
                                                        "default: off)")
    p.add_argument("--json", action="store_true", help="print results.json's content at the end (default: off)")
    p.add_argument("--preset", help=f"model preset of every trial, overrides the config's [model]: {preset_names()}")
    add_training_flags(p)  # the same run flags as 'cnnscope train': they change the base of every trial
    p.set_defaults(handler=cmd_sweep, out_kind="dir", needs_torch=False)


def cmd_sweep(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cnnscope.sweep import require, resolve_spec, run_sweep

    require("optuna")
    if args.tensorboard:
        from cnnscope.cli.train import check_output
        from cnnscope.training.tensorboard import summary_writer_class

        check_output(args.tensorboard, "dir", "--tensorboard")  # a file or /dev/null: one line now, not N failed trials
        summary_writer_class()  # a missing extra is one line here, not a failure in every trial
        args.tensorboard = str(Path(args.tensorboard).resolve())
    options = {key: getattr(args, key) for key in ("trials", "sampler", "metric", "direction", "workers", "prune",
                                                    "engine", "ray_address", "storage", "tensorboard",
                                                    "select_on_test")}
    train, data = training_overrides(args)
    overrides = {"model": {"preset": args.preset} if args.preset else {}, "train": train, "data": data}
    spec = resolve_spec(args.out, args.config, args.param, options, overrides)
    if args.verbosity >= 0 and not args.json:
        params = ", ".join(f"{p.key}={p.text()}" for p in spec.params)
        print(f"study {args.out}: {spec.trials} trials of {params}; {spec.sampler} sampler, {spec.direction} "
              f"{spec.metric}, pruner {spec.prune}, engine {spec.engine} with {spec.workers} worker(s)", flush=True)
        print(f"chosen on {spec.selection_text()}; the test set is evaluated once per trial"
              + (" and chosen on" if spec.selected_on == "test" else ", for reporting only"), flush=True)
    results = run_sweep(args.out, spec)
    if args.json:
        print_json(results)
        return 0
    _print_summary(args.out, results)
    return 0


def _figure(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def _print_summary(out: str, results: dict) -> None:
    rows = results["trials"]
    counts = {s: sum(r["status"] == s for r in rows) for s in ("completed", "pruned", "failed", "interrupted")}
    counted = ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "no trials"
    if results.get("nothing_to_do"):
        done = sum(counts[s] for s in ("completed", "pruned", "failed"))
        print(f"nothing to do: {done} of {len(rows)} trials {'completed' if done == counts['completed'] else 'ended'}"
              + ("" if done == counts["completed"] else f" ({counted})") + " (--trials N grows the study)")
    else:
        print(counted)
    best = next((r for r in rows if r["number"] == results.get("best")), None)
    if best is not None:
        values = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in best["params"].items())
        on_test = results.get("selected_on") == "test"
        chosen = f"{results['metric']} {best['value']:.4f}"
        print(f"best trial {best['number']} ({values}): chosen by {chosen} on "
              f"{'the TEST set' if on_test else 'validation'}")
        print(f"  validation accuracy {_figure(best.get('val_accuracy'))}, loss {_figure(best.get('val_loss'))}"
              f" ({'the test set' if best.get('val_source') == 'test' else 'held out of the training images'})")
        print(f"  test accuracy       {_figure(best.get('test_accuracy'))}, loss {_figure(best.get('test_loss'))}"
              f" ({'chosen on it: biased' if on_test else 'reported only, not used to choose'})")
        print(f"run directory: {out}/{best['run_dir']}")
    print(f"results: {out}/results.json, {out}/results.csv")
    print_figures(results.get("figures", []))
    for note in results.get("notes", []):
        print(f"note: {note}")
    if results.get("warning"):
        print(f"warning: {results['warning']}")
