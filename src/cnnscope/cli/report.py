"""Commands to look at a run: `serve` (the local web viewer) and `report` (one self-contained HTML file)."""

from __future__ import annotations

import argparse
import sys

from cnnscope.cli.explain import DEFAULT_METHOD, METHODS
from cnnscope.cli.train import add_data_dir

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="open a run in the local web viewer (draw digits, inspect every map), or a "
                                     "folder of runs or a study in the dashboard (runs table, live curves)")
    p.add_argument("run", metavar="RUN_DIR|DIR", help="a run directory (the viewer) or a folder of runs or a "
                                                      "study (the dashboard)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 exposes it to the network)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    add_data_dir(p)
    p.set_defaults(handler=cmd_serve)

    p = sub.add_parser("report", help="write one self-contained HTML report of a run")
    p.add_argument("run", metavar="RUN_DIR")
    p.add_argument("--out", metavar="FILE.html", help="where to write it (default RUN_DIR/report.html)")
    p.add_argument("--method", metavar="NAME", default=DEFAULT_METHOD,
                   help=f"attribution method of the explanation section: {', '.join(METHODS)} "
                        f"(default {DEFAULT_METHOD})")
    add_data_dir(p)
    p.set_defaults(handler=cmd_report)


def cmd_serve(args: argparse.Namespace) -> int:
    from cnnscope.serve.server import serve

    if args.host not in LOCAL_HOSTS:
        print(f"warning: --host {args.host} makes the viewer reachable from other machines; it has no "
              f"authentication, so only do this on a network you trust", file=sys.stderr, flush=True)

    from cnnscope.serve.server import is_dashboard

    what = "dashboard" if is_dashboard(args.run) else "viewer"

    def ready(url: str) -> None:
        print(f"cnnscope {what} for {args.run}: {url}  (Ctrl-C to stop)", flush=True)

    serve(args.run, host=args.host, port=args.port, data_dir=args.data_dir, on_ready=ready)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from cnnscope.report import build_report

    path = build_report(args.run, out=args.out, data_dir=args.data_dir, method=args.method)
    print(f"report: {path}")
    return 0
