"""Command-line entry point: wiring only.

Each subcommand lives in gpudoctor/commands/<name>.py as `add_arguments(parser)`
(its usage, description and options) and `run(args) -> exit code`. Only the
invoked command's module is imported and only its parser is built, so
`gpudoctor --version` and `--help` import no command module (and no rich, yaml,
pynvml or docker), and every command pays for argparse only (~3 ms; click took
~17 ms of `preflight`'s ~60 ms budget).
"""

from __future__ import annotations

import argparse
import os
import sys

from gpudoctor import __version__, exitcodes

# name -> (module, one-line help). Help text is kept here so `gpudoctor --help`
# does not import every command module.
COMMANDS: dict[str, tuple[str, str]] = {
    "scan": ("gpudoctor.commands.scan", "Probe this node (or a saved nvidia-smi XML) and diagnose it."),
    "preflight": ("gpudoctor.commands.preflight", "Decide before the pull whether IMAGE will run on a node."),
    "kernels": (
        "gpudoctor.commands.kernels",
        "List CUDA kernels in binaries and say per GPU: native, jit or none.",
    ),
    "rules": ("gpudoctor.commands.rules", "List, show and lint the rules."),
    "fleet": (
        "gpudoctor.commands.fleet",
        "Aggregate node reports into node classes and an image runnability matrix.",
    ),
    "explain": (
        "gpudoctor.commands.explain",
        "Name the cause of a GPU stack failure from its log, with the fix.",
    ),
}

DESCRIPTION = """gpudoctor: will this GPU software stack run on this node, and run fast?

Exit codes: 0 ok, 1 warn, 2 fail, 3 unknown (could not diagnose);
64 usage, 65 bad input data, 66 input missing, 69 service unavailable,
70 internal error, 73 cannot write output.
"""


def _columns() -> int:
    """The terminal's width as shutil.get_terminal_size() gives it, without importing
    shutil (~2.5 ms): argparse builds a formatter for every add_argument."""
    try:
        return int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        pass
    try:
        return os.get_terminal_size().columns
    except (ValueError, OSError):
        return 80


class HelpFormatter(argparse.HelpFormatter):
    """The help layout the texts were written for: "-o, --output FILE", each paragraph
    re-wrapped on its own and indented (a paragraph whose first line is a lone \\b is
    printed as written), sub-commands one row each under "commands:", at most 80
    columns."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=34, width=max(min(_columns(), 80) - 2, 50))

    def _format_action_invocation(self, action: argparse.Action) -> str:
        if not action.option_strings:
            return super()._format_action_invocation(action)
        names = ", ".join(action.option_strings)
        if action.nargs == 0:
            return names
        return f"{names} {self._format_args(action, self._get_default_metavar_for_optional(action))}"

    def _format_action(self, action: argparse.Action) -> str:
        if isinstance(action, argparse._SubParsersAction):  # the sub-commands, without a COMMAND row
            return "".join(self._format_action(command) for command in action._get_subactions())
        return super()._format_action(action)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        indent += "  "
        paragraphs = []
        for paragraph in text.strip("\n").split("\n\n"):
            if paragraph.startswith("\b\n"):
                paragraphs.append("\n".join(indent + line for line in paragraph[2:].splitlines()))
            else:
                paragraphs.append(super()._fill_text(paragraph, width, indent))
        return "\n\n".join(paragraphs)


class Parser(argparse.ArgumentParser):
    """argparse as gpudoctor uses it: HelpFormatter, "-h, --help", no abbreviated
    option names (`--form` for `--format`: click never took them), and `parse`."""

    def __init__(
        self,
        prog: str,
        usage: str | None = None,
        description: str | None = None,
        epilog: str | None = None,
        add_help: bool = True,
    ) -> None:
        super().__init__(
            prog=prog,
            usage=usage,
            description=description,
            epilog=epilog,
            formatter_class=HelpFormatter,
            add_help=False,
            allow_abbrev=False,
        )
        if add_help:
            self.add_argument("-h", "--help", action="help", help="Show this message and exit.")

    def parse(self, args: list[str]) -> argparse.Namespace:
        """Parse args. Options may come between positional values (`kernels a.so --gpu 9.0
        b.so`), as with click, except on a parser with sub-commands (`rules`: argparse cannot
        mix them there). argparse prints a usage error and exits 2, but 2 means "fail" to a
        health checker: usage errors exit 64."""
        try:
            if self._subparsers is None:  # no add_subparsers() on this parser
                return self.parse_intermixed_args(args)
            return self.parse_args(args)
        except SystemExit as exc:
            if exc.code == 2:
                raise SystemExit(exitcodes.USAGE) from None
            raise


class _Version(argparse.Action):
    """Prints exactly what click printed; argparse's version action would pass it through
    the help formatter (re-wrapped, indented, textwrap imported)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        sys.stdout.write(f"gpudoctor, version {__version__}\n")
        parser.exit()


def _top_parser() -> Parser:
    parser = Parser("gpudoctor", usage="%(prog)s [OPTIONS] COMMAND [ARGS]...", description=DESCRIPTION)
    parser.add_argument("-V", "--version", action=_Version, nargs=0, help="Show the version and exit.")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", prog="gpudoctor")
    for name, (_, help_text) in COMMANDS.items():
        commands.add_parser(name, help=help_text, add_help=False)  # for the listing only
    return parser


def run(argv: list[str]) -> int:
    """Parse argv and run the command it names; its exit code. --help, --version and
    usage errors exit from here (SystemExit)."""
    # The first word that is not an option names the command; before it only -h and -V.
    at = next((i for i, arg in enumerate(argv) if not arg.startswith("-")), len(argv))
    name = argv[at] if at < len(argv) else ""
    if at > 0 or name not in COMMANDS:
        top = _top_parser()
        top.parse(argv[: at + 1])  # exits for -h, -V, an unknown option or an unknown command
        if not name:  # no command at all: the overview, as a usage error
            top.print_help(sys.stderr)
            return exitcodes.USAGE
    module_name = COMMANDS[name][0]
    __import__(module_name)  # not importlib.import_module: importlib is one more import
    module = sys.modules[module_name]
    parser = Parser(f"gpudoctor {name}")
    module.add_arguments(parser)
    code: int = module.run(parser.parse(argv[at + 1 :]))
    return code


def main(argv: list[str] | None = None) -> None:
    """The console script: run the command, exit with its code (0-3, or a sysexits code)."""
    from gpudoctor.errors import GpudoctorError

    try:
        code = run(sys.argv[1:] if argv is None else list(argv))
        sys.stdout.flush()  # a reader that went away (`| head`) is seen here, not at interpreter exit
    except GpudoctorError as exc:
        print(f"gpudoctor: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        # Not an error. Point stdout at /dev/null so the flush at exit does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(exitcodes.OK)
    except KeyboardInterrupt:
        print("gpudoctor: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - last line of defence: one line, exit 70
        print(f"gpudoctor: internal error: {type(exc).__name__}: {exc} (please report this)", file=sys.stderr)
        sys.exit(exitcodes.SOFTWARE)
    # Commands return their exit code (0-3) instead of calling sys.exit themselves.
    sys.exit(code)


if __name__ == "__main__":
    main()
