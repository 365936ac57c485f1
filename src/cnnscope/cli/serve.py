"""`cnnscope serve`: a run in the local web viewer, or a folder of runs or a study in the dashboard.

Imports inside the command function: `cnnscope --help` must not load starlette or torch."""

from __future__ import annotations

import argparse
import logging
import sys

from cnnscope.cli.train import add_data_dir


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


def cmd_serve(args: argparse.Namespace) -> int:
    from cnnscope.serve.guard import LOCAL_HOSTS
    from cnnscope.serve.server import is_dashboard, serve

    if args.host not in LOCAL_HOSTS:
        print(f"warning: --host {args.host} makes the viewer reachable from other machines; it has no "
              f"authentication, so only do this on a network you trust", file=sys.stderr, flush=True)

    what = "dashboard" if is_dashboard(args.run) else "viewer"

    def ready(url: str) -> None:
        print(f"cnnscope {what} for {args.run}: {url}  (Ctrl-C to stop)", flush=True)
        # from now on the work is the page's requests: their progress is the page's to show, not the console's
        logging.getLogger("cnnscope.progress").setLevel(logging.WARNING)

    serve(args.run, host=args.host, port=args.port, data_dir=args.data_dir, on_ready=ready)
    return 0
