"""The `cnnscope` command: parse, call one library function, print. Every mistake is one line and exit 2.

Imports inside the command functions: `cnnscope --help` and a mistyped flag must not load torch."""

from __future__ import annotations

import argparse
import difflib
import logging
import re
import signal
import sys
import threading
import traceback

from cnnscope.base.errors import CnnscopeError, UsageError
from cnnscope.cli import analyze, data, explain, interop, maps, report, runs, serve, site, sweep, train

GLOBAL_HELP = {"--debug": "show the full traceback of an error (default: one line)",
               "--quiet": "only warnings and errors on stderr (default: progress and results too)"}


# Values that start with '-' but are numbers (argparse alone only knows -3 and -0.5): -1e-05, -inf, -nan.
NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^-(inf|infinity|nan)$", re.I)


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block) that say where to look and suggest near names."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = NEGATIVE_NUMBER

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(f"{_suggest(message)}; see '{self.prog} --help'")


def _suggest(message: str) -> str:
    """'invalid choice' messages get a 'did you mean' from the choices argparse lists."""
    found = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
    if not found:
        return message
    choices = re.findall(r"'([^']*)'", found.group(2))
    close = difflib.get_close_matches(found.group(1), choices, n=1, cutoff=0.6)
    return f"{message}; did you mean '{close[0]}'?" if close else message


def _command_modules() -> list:
    """The modules that register commands, in the order of `cnnscope --help` (each has register(subparsers))."""
    return [train, data, maps, explain, analyze, report, serve, site, runs, interop, sweep]


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


class _OnTerminal(logging.Filter):
    """Progress records (cnnscope.progress) reach stderr only when it is a terminal: a pipe or a log file gets
    the results and warnings alone."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("cnnscope.progress"):
            return True
        isatty = getattr(sys.stderr, "isatty", None)
        return bool(isatty and isatty())


def _configure_logging(verbosity: int) -> None:
    logger = logging.getLogger("cnnscope")
    for handler in list(logger.handlers):
        if getattr(handler, "_cnnscope_cli", False):
            logger.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(_HumanFormatter())
    handler.addFilter(_OnTerminal())
    handler._cnnscope_cli = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if verbosity < 0 else logging.INFO if verbosity == 0 else logging.DEBUG)
    logger.propagate = False


def _add_global_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """--debug and -q/--quiet; on subcommands with SUPPRESS defaults so they only override when given."""
    default = {"default": argparse.SUPPRESS} if suppress else {}
    group = parser.add_argument_group("global options (before or after the command)") if suppress else parser
    group.add_argument("--debug", action="store_true", help=GLOBAL_HELP["--debug"], **default)
    group.add_argument("-q", "--quiet", action="store_const", const=-1, dest="verbosity",
                       help=GLOBAL_HELP["--quiet"], **(default or {"default": 0}))


def build_parser() -> argparse.ArgumentParser:
    """The full `cnnscope` parser: global options, then one subparser per command."""
    from cnnscope.base.version import __version__

    parser = Parser(prog="cnnscope", description="Build, train and look inside small CNNs.")
    parser.add_argument("--version", action="version", version=f"cnnscope {__version__}",
                        help="print the version and exit")
    _add_global_options(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser,
                                help="one of the commands below; 'cnnscope COMMAND --help' for its options")
    for module in _command_modules():
        module.register(sub)
    for subparser in sub.choices.values():
        _complete_help(subparser)
        _add_global_options(subparser, suppress=True)
    return parser


RUN_HELP = {"run": "a run directory written by 'cnnscope train'", "run_a": "the first run directory",
            "run_b": "the second run directory"}


def _complete_help(parser: argparse.ArgumentParser) -> None:
    """The words every command shares: what a RUN_DIR is, and that an on/off flag is off unless given."""
    for action in parser._actions:
        if not action.option_strings and not action.help and action.dest in RUN_HELP:
            action.help = RUN_HELP[action.dest]
        flag = isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction))
        if flag and action.help and "default" not in action.help:
            action.help += " (default: off)"


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _known(option: str, options: list[str]) -> bool:
    """An exact option or an unambiguous prefix of one (argparse's abbreviations)."""
    return option in options or len([o for o in options if o.startswith(option)]) == 1


def check_options(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    """A misspelt --flag: one line naming the command and the nearest valid flag (before argparse's messages)."""
    commands = _subparsers(parser)
    current, name = parser, "cnnscope"
    for token in argv:
        if token == "--":
            return
        if current is parser and token in commands:
            current, name = commands[token], f"cnnscope {token}"
            continue
        if not token.startswith("--") or len(token) == 2:
            continue
        option = token.split("=", 1)[0]
        options = [o for o in current._option_string_actions if o.startswith("--")]
        if _known(option, options):
            continue
        close = difflib.get_close_matches(option, options, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise UsageError(f"unknown option {option} for '{name}'{hint} (see '{name} --help')")


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    check_options(parser, argv)
    args, extra = parser.parse_known_args(argv)
    if extra:
        name = f"cnnscope {args.command}" if getattr(args, "command", None) else "cnnscope"
        raise UsageError(f"unexpected argument{'s' if len(extra) > 1 else ''} {' '.join(extra)} for '{name}'; "
                         f"see '{name} --help'")
    return args


def _run(args: argparse.Namespace) -> int:
    from cnnscope.cli.train import check_outputs

    _configure_logging(args.verbosity)
    check_outputs(args)  # an unwritable or wrongly named --out fails before any data or model is loaded
    return int(args.handler(args) or 0)


def one_line(message: str) -> str:
    """Control characters (a newline in a file name or argument) escaped, so an error stays one line."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in message)


def _fail(message: str, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    print(f"error: {one_line(message)}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 2 bad input, 130 interrupted, also during start-up)."""
    from cnnscope.base.threads import configure

    configure()  # before numpy and torch load: one thread budget (cnnscope.base.threads)
    try:
        return _main(sys.argv[1:] if argv is None else [str(a) for a in argv])
    except KeyboardInterrupt:  # anywhere: while importing torch, parsing, training or printing
        print("interrupted", file=sys.stderr)
        return 130


def _import_torch_holding_interrupts() -> None:
    """Import torch (every command needs it) with Ctrl-C held back until the import is done.

    A KeyboardInterrupt raised while torch's C++ start-up code is calling into Python cannot unwind through it:
    the process aborts ("terminate called after throwing … KeyboardInterrupt"). Held back, it is raised here, in
    Python, and main() turns it into one line and exit 130."""
    if "torch" in sys.modules or threading.current_thread() is not threading.main_thread():
        return
    held: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
    try:
        import torch  # noqa: F401
    finally:
        signal.signal(signal.SIGINT, previous)
    if held:
        raise KeyboardInterrupt


def _main(argv: list[str]) -> int:
    debug = "--debug" in argv[: argv.index("--") if "--" in argv else len(argv)]
    try:
        parser = build_parser()
        try:
            args = _parse(parser, argv)
        except SystemExit as exc:  # --help and --version
            return int(exc.code or 0)
        if not getattr(args, "handler", None):
            commands = ", ".join(_subparsers(parser))
            raise UsageError(f"no command given; one of: {commands} (see 'cnnscope --help')")
        if getattr(args, "needs_torch", True):  # sweep's driver needs none (its workers import it)
            _import_torch_holding_interrupts()
        return _run(args)
    except CnnscopeError as exc:  # UsageError included
        return _fail(str(exc), debug)
    except OSError as exc:  # a file the library did not expect to fail (disk full, permissions, a vanished path)
        where = f"{exc.filename}: " if exc.filename else ""
        return _fail(f"{where}{exc.strerror or exc}", debug)
