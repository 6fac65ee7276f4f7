"""Options and output handling shared by the commands.

The options every command spells the same way (`--node FILE`, `--format`,
`-o, --output FILE`, `--rules PATH`) are defined once here, as click decorators.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from typing import TypeVar

import click

from gpudoctor import exitcodes

F = TypeVar("F", bound=Callable[..., object])

# --format NAME -> module gpudoctor.report.<module> exposing render(report: dict) -> str
RENDERERS = {
    "table": "table",
    "json": "json_render",
    "prometheus": "prometheus",
    "nfd": "nfd",
    "oneline": "oneline",
    "html": "html",
}

RULES_ENV = "GPUDOCTOR_RULES"

# A file that may not exist yet (the command says so, with its own exit code), but not a directory.
FILE = click.Path(dir_okay=False)


class Command(click.Command):
    """click.Command whose usage errors all name the command: click raises "Option '--gpu'
    requires an argument" without its context, and the CLI prints that context's usage."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            exc.ctx = exc.ctx or ctx
            raise


class Group(click.Group):
    """click.Group of Commands (above)."""

    command_class = Command


def render(report: dict[str, object], fmt: str) -> str:
    text: str = importlib.import_module(f"gpudoctor.report.{RENDERERS[fmt]}").render(report)
    return text


def write_text(text: str, output: str | None) -> None:
    """To --output atomically, else to stdout (ending in a newline)."""
    from gpudoctor.fileio import stdout_errors, write_atomic

    if output:
        write_atomic(output, text)
    else:
        with stdout_errors():
            sys.stdout.write(text if text.endswith("\n") else text + "\n")


def emit(report: dict[str, object], fmt: str, output: str | None) -> int:
    """Render, write to --output atomically or to stdout, return the exit code."""
    write_text(render(report, fmt), output)
    return exitcodes.for_verdict(str(report["verdict"]))


def format_option(*choices: str, default: str = "table") -> Callable[[F], F]:
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(choices),
        default=default,
        show_default=True,
        help="Output format.",
    )


def output_option(function: F) -> F:
    return click.option(
        "-o", "--output", type=FILE, default=None, help="Write here (atomically) instead of stdout."
    )(function)


def node_option(help_text: str) -> Callable[[F], F]:
    """--node FILE: a saved gpudoctor JSON report or `nvidia-smi -q -x` XML; what it is for is the command's."""
    return click.option("--node", "node_file", type=FILE, default=None, help=help_text)


def rules_option(function: F) -> F:
    return click.option(
        "--rules",
        "rule_dirs",
        multiple=True,
        metavar="PATH",
        help=f"Extra site-local rule files or directories (repeatable; also ${RULES_ENV}, ':'-separated).",
    )(function)


def rule_dirs_from(options: tuple[str, ...]) -> list[str]:
    """Site-local rule files and directories: the --rules values, then $GPUDOCTOR_RULES."""
    env = os.environ.get(RULES_ENV, "")
    return [*options, *(p for p in env.split(os.pathsep) if p)]
