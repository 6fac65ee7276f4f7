"""Options and output handling shared by the commands."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

import click

from gpudoctor import exitcodes

# --format NAME -> module gpudoctor.report.<module> exposing render(report: dict) -> str
RENDERERS = {
    "table": "table",
    "json": "json_render",
    "prometheus": "prometheus",
    "nfd": "nfd",
    "oneline": "oneline",
}

RULES_ENV = "GPUDOCTOR_RULES"


def render(report: dict[str, Any], fmt: str) -> str:
    module = importlib.import_module(f"gpudoctor.report.{RENDERERS[fmt]}")
    text: str = module.render(report)
    return text


def emit(report: dict[str, Any], fmt: str, output: str | None) -> int:
    """Render, write to --output atomically or to stdout, return the exit code."""
    text = render(report, fmt)
    if output:
        from gpudoctor.fileio import write_atomic

        write_atomic(output, text)
    else:
        click.echo(text, nl=not text.endswith("\n"))
    return exitcodes.for_verdict(report["verdict"])


def format_option(*choices: str, default: str = "table") -> Any:
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(list(choices)),
        default=default,
        show_default=True,
        help="Output format.",
    )


output_option = click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write here (atomically) instead of stdout.",
)

rules_option = click.option(
    "--rules",
    "rule_dirs",
    multiple=True,
    type=click.Path(file_okay=True, dir_okay=True),
    help=f"Extra site-local rule files or directories (also ${RULES_ENV}, ':'-separated).",
)


def rule_dirs_from(options: tuple[str, ...]) -> list[Path]:
    dirs = [Path(p) for p in options]
    env = os.environ.get(RULES_ENV, "")
    dirs.extend(Path(p) for p in env.split(os.pathsep) if p)
    return dirs
