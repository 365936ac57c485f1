"""The `cnnscope` command: parse, call one library function, print. Errors become one line and exit 2."""

from __future__ import annotations

import argparse
import logging
import sys
import traceback

from ..errors import CnnscopeError


def _command_modules() -> list:
    """core first, then every other module of this package that defines register(subparsers)."""
    import importlib
    import pkgutil

    names = ["core"] + sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name != "core")
    modules = [importlib.import_module(f"{__name__}.{name}") for name in names]
    return [m for m in modules if hasattr(m, "register")]


class _HumanFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        return msg if record.levelno < logging.WARNING else f"{record.levelname.lower()}: {msg}"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a record is emitted (tests and notebooks swap it)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it; the property always wins
        pass


def _configure_logging(verbosity: int) -> None:
    logger = logging.getLogger("cnnscope")
    for handler in list(logger.handlers):
        if getattr(handler, "_cnnscope_cli", False):
            logger.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(_HumanFormatter())
    handler._cnnscope_cli = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if verbosity < 0 else logging.INFO if verbosity == 0 else logging.DEBUG)
    logger.propagate = False


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(prog="cnnscope", description="Build, train and look inside small CNNs.")
    parser.add_argument("--version", action="version", version=f"cnnscope {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    parser.add_argument("-q", "--quiet", action="store_const", const=-1, default=0, dest="verbosity",
                        help="only warnings and errors on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _command_modules():
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 2 bad input, 130 interrupted)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help/--version (0) or a usage error (2)
        return int(exc.code or 0)
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return 2
    _configure_logging(args.verbosity)
    try:
        return int(args.handler(args) or 0)
    except CnnscopeError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
