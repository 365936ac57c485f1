"""The sweep command: search hyperparameters with Optuna, trials in local worker processes or on Ray."""

from __future__ import annotations

import argparse

from .core import positive_int, print_figures, print_json

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
                   help="what a trial is judged by: val_accuracy (default: its best epoch), "
                        "test_accuracy or val_loss")
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
    p.set_defaults(handler=cmd_sweep, out_kind="dir")


def cmd_sweep(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..sweep import require, resolve_spec, run_sweep

    require("optuna")
    if args.tensorboard:
        from ..tboard import summary_writer_class
        from .core import check_output

        check_output(args.tensorboard, "dir", "--tensorboard")  # a file or /dev/null: one line now, not N failed trials
        summary_writer_class()  # a missing extra is one line here, not a failure in every trial
        args.tensorboard = str(Path(args.tensorboard).resolve())
    options = {key: getattr(args, key) for key in ("trials", "sampler", "metric", "direction", "workers", "prune",
                                                    "engine", "ray_address", "storage", "tensorboard")}
    spec = resolve_spec(args.out, args.config, args.param, options)
    if args.verbosity >= 0 and not args.json:
        params = ", ".join(f"{p.key}={p.text()}" for p in spec.params)
        print(f"study {args.out}: {spec.trials} trials of {params}; {spec.sampler} sampler, {spec.direction} "
              f"{spec.metric}, pruner {spec.prune}, engine {spec.engine} with {spec.workers} worker(s)", flush=True)
    results = run_sweep(args.out, spec)
    if args.json:
        print_json(results)
        return 0
    _print_summary(args.out, results)
    return 0


def _print_summary(out: str, results: dict) -> None:
    rows = results["trials"]
    counts = {s: sum(r["status"] == s for r in rows) for s in ("completed", "pruned", "failed", "interrupted")}
    print(", ".join(f"{n} {s}" for s, n in counts.items() if n) or "no trials")
    best = next((r for r in rows if r["number"] == results.get("best")), None)
    if best is not None:
        values = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in best["params"].items())
        test = f", test accuracy {best['test_accuracy']:.4f}" if best.get("test_accuracy") is not None else ""
        print(f"best trial {best['number']}: {results['metric']} {best['value']:.4f}{test} ({values})")
        print(f"run directory: {out}/{best['run_dir']}")
    print(f"results: {out}/results.json, {out}/results.csv")
    print_figures(results.get("figures", []))
    for note in results.get("notes", []):
        print(f"note: {note}")
