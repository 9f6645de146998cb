"""The `rep-accel` command line: one subcommand per verb of the flow.

Each subcommand lives in `rep_accel/commands/<name>.py` and defines
`HELP` (one line), `DESCRIPTION` (the --help text, with an example),
`add_arguments(parser)` and `run(args) -> int`. A user error (RepAccelError)
prints one line and exits with status 2; it never shows a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
import warnings

from .errors import RepAccelError

#: Subcommands in the order of the flow.
COMMANDS = ("demo", "fuse", "compile", "simulate", "evaluate", "rtl", "verify", "synth", "export")


def _load_commands():
    modules = {}
    for name in COMMANDS:
        if importlib.util.find_spec(f"rep_accel.commands.{name}") is not None:
            modules[name] = importlib.import_module(f"rep_accel.commands.{name}")
    return modules


class _Parser(argparse.ArgumentParser):
    """argparse, but a mistake on the command line is one line (and exit status 2), as
    every other user error is, not a usage block."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="rep-accel",
        description="Toolchain for a RepVGG accelerator built from 3x3-conv+ReLU units: "
                    "fuse a checkpoint, quantize it to integers, simulate the array bit- and "
                    "cycle-exactly, generate its Verilog, verify and synthesize it.",
        epilog="Run `rep-accel demo` for the whole flow on the bundled model; "
               "`rep-accel <command> --help` for each command.",
    )
    from . import __version__
    parser.add_argument("--version", action="version", version=f"rep-accel {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for name, module in _load_commands().items():
        p = sub.add_parser(name, help=module.HELP, description=getattr(module, "DESCRIPTION", module.HELP),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    # Warnings (numpy's RuntimeWarnings on bad data, say) are held back until the command
    # ends: a user error then prints its one line alone; a success shows them after.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        try:
            status = int(args._run(args) or 0)
        except RepAccelError as e:
            print(f"rep-accel {args.command}: error: {e}", file=sys.stderr)
            return 2
        except OSError as e:
            # A file the user named cannot be read or written (permissions, a full disk,
            # a file where a folder should be): their mistake to fix, not a traceback.
            where = f" {e.filename}" if e.filename else ""
            print(f"rep-accel {args.command}: error:{where}: {e.strerror or e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"rep-accel {args.command}: interrupted", file=sys.stderr)
            return 130
    for w in caught:
        print(warnings.formatwarning(w.message, w.category, w.filename, w.lineno, None).rstrip(), file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
