"""`cnnscope report`: one self-contained HTML file of a run.

Imports inside the command function: `cnnscope --help` must not load torch or matplotlib."""

from __future__ import annotations

import argparse

from cnnscope.cli.explain import DEFAULT_METHOD, METHODS
from cnnscope.cli.train import add_data_dir


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write one self-contained HTML report of a run")
    p.add_argument("run", metavar="RUN_DIR")
    p.add_argument("--out", metavar="FILE.html", help="where to write it (default RUN_DIR/report.html)")
    p.add_argument("--method", metavar="NAME", default=DEFAULT_METHOD,
                   help=f"attribution method of the explanation section: {', '.join(METHODS)} "
                        f"(default {DEFAULT_METHOD})")
    add_data_dir(p)
    p.set_defaults(handler=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from cnnscope.report import build_report

    path = build_report(args.run, out=args.out, data_dir=args.data_dir, method=args.method)
    print(f"report: {path}")
    return 0
