"""`cnnscope runs DIR`: every run and study under a folder, one line each (cnnscope.runs.catalog).

Imports inside the command functions: `cnnscope --help` and a mistyped flag must not load torch."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from cnnscope.runs.catalog import LIVE_SECONDS, MAX_DEPTH, SORT_KEYS

MAX_DEPTH_FLAG = 100  # --depth beyond this is a typo (a deeper folder tree of runs is not a thing)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("runs", help="list every run and study under a folder: status, dataset, model, the settings "
                                    "that differ, test accuracy, epochs, time")
    p.add_argument("folder", metavar="DIR", help="a folder holding run directories and/or studies")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table (default: off)")
    p.add_argument("--sort", metavar="KEY", default="name",
                   help=f"sort by a column ({', '.join(SORT_KEYS)}) or a setting that differs, e.g. train.lr "
                        f"(default name)")
    p.add_argument("--reverse", action="store_true", help="sort in descending order")
    p.add_argument("--filter", metavar="TEXT", default="",
                   help="only the lines holding every word of TEXT (name, status, dataset, model, settings; "
                        "default: every line)")
    p.add_argument("--depth", type=int, default=MAX_DEPTH, help=f"folders to go down at most (default {MAX_DEPTH})")
    p.add_argument("--live-seconds", type=float, default=LIVE_SECONDS,
                   help=f"a run without metrics.json whose history changed this recently is 'running' (default "
                        f"{LIVE_SECONDS:g}; at least 3 of its epochs)")
    p.set_defaults(handler=cmd_runs)


def _cell(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) < 1e4 else f"{value:.3g}"
    return str(value)


def _setting(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else "–" if value is None else str(value)


def _seconds(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.1f}s" if value < 600 else f"{value / 60:.1f}m"


def _line(entry: dict[str, Any], differing: list[str]) -> list[str]:
    """The table cells of one entry: validation accuracy only where validation images were held out."""
    if entry["kind"] == "study":
        best = entry.get("best")
        best_text = "no trial finished" if not best else (
            f"best {best['metric']} {best['value']:.4f} ({best['name']}), chosen on {entry.get('selected_on', '?')}")
        warning = f"; WARNING: {entry['warning']}" if entry.get("warning") else ""
        return [entry["name"], f"study:{entry['status']}", entry.get("dataset", "?"), entry.get("model", "?"),
                *["" for _ in differing], _cell(entry.get("val_accuracy")), _cell(entry.get("test_accuracy")),
                f"{entry.get('completed', 0)}/{entry.get('trials', 0)} trials", _seconds(entry.get("seconds")),
                best_text + warning]
    settings = entry.get("settings", {})
    epochs = f"{entry.get('epochs', 0)}/{entry['epochs_planned']}" if entry.get("epochs_planned") else "–"
    return [entry["name"], entry["status"], entry.get("dataset", "?"), entry.get("model", "?"),
            *[_setting(settings.get(k)) for k in differing], _cell(entry.get("val_accuracy")),
            _cell(entry.get("test_accuracy")), epochs,
            _seconds(entry.get("seconds")), entry.get("reason", "")]


def format_table(entries: list[dict[str, Any]], differing: list[str]) -> str:
    """Aligned columns with a header; the last column (notes) is not padded. val_acc: the last epoch's accuracy on
    held-out validation images ("–" for a run that validated on the test set)."""
    header = ["name", "status", "dataset", "model", *differing, "val_acc", "test_acc", "epochs", "time", "note"]
    rows = [header] + [_line(e, differing) for e in entries]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    return "\n".join("  ".join([*(c.ljust(w) for c, w in zip(r, widths, strict=False)), r[-1]]).rstrip()
                     for r in rows)


def cmd_runs(args: argparse.Namespace) -> int:
    from cnnscope.base.errors import UsageError, brief
    from cnnscope.cli import one_line
    from cnnscope.runs.catalog import Catalog, filter_entries, sort_entries

    if args.depth < 0:
        raise UsageError(f"--depth must be 0 or more, received {args.depth}")
    if args.depth > MAX_DEPTH_FLAG:
        raise UsageError(f"--depth must be at most {MAX_DEPTH_FLAG}, received {brief(args.depth, 40)}")
    if not 0 <= args.live_seconds < 1e9:
        raise UsageError(f"--live-seconds must be a number of seconds of 0 or more, received {args.live_seconds}")
    listing = Catalog(args.folder, max_depth=args.depth, live_seconds=args.live_seconds).scan()
    entries = sort_entries(listing.entries, args.sort, listing.differing, reverse=args.reverse)
    entries = filter_entries(entries, args.filter) if args.filter else entries
    if args.json:
        print(json.dumps({"runs": entries, "differing": listing.differing, "notes": listing.notes}, indent=2))
        return 0
    for note in listing.notes:
        print(one_line(f"note: {note}"), file=sys.stderr)
    if not entries:
        what = f" matching {args.filter!r}" if args.filter else ""
        print(f"no runs or studies{what} under {args.folder}", file=sys.stderr)
        return 0
    print("\n".join(one_line(line) for line in format_table(entries, listing.differing).splitlines()))
    return 0
