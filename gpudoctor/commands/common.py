"""Options and output handling shared by the commands.

Imported with every command's module, before its options are parsed, so it
imports what parsing needs (argparse, os, sys) and nothing else: the renderers
where they are used, pathlib with gpudoctor.commands.ruledirs.
"""

from __future__ import annotations

import argparse
import os
import sys

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


def render(report: dict[str, object], fmt: str) -> str:
    module_name = f"gpudoctor.report.{RENDERERS[fmt]}"
    __import__(module_name)  # not importlib.import_module: importlib is one more import
    module = sys.modules[module_name]
    text: str = module.render(report)
    return text


def emit(report: dict[str, object], fmt: str, output: str | None) -> int:
    """Render, write to --output atomically or to stdout, return the exit code."""
    text = render(report, fmt)
    if output:
        from gpudoctor.fileio import write_atomic

        write_atomic(output, text)
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return exitcodes.for_verdict(str(report["verdict"]))


def file_path(text: str) -> str:
    """argparse type: a file that may not exist yet, but not a directory."""
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"'{text}' is a directory, not a file")
    return text


def dir_path(text: str) -> str:
    """argparse type: a directory that may not exist (the command says so), but not a file."""
    if os.path.isfile(text):
        raise argparse.ArgumentTypeError(f"'{text}' is a file, not a directory")
    return text


def add_format(parser: argparse.ArgumentParser, *choices: str, default: str = "table") -> None:
    parser.add_argument(
        "--format",
        dest="fmt",
        choices=choices,
        default=default,
        metavar=f"[{'|'.join(choices)}]",
        help=f"Output format.  [default: {default}]",
    )


def add_output(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o",
        "--output",
        type=file_path,
        default=None,
        metavar="FILE",
        help="Write here (atomically) instead of stdout.",
    )


def add_rules(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rules",
        dest="rule_dirs",
        action="append",
        default=[],
        metavar="PATH",
        help=f"Extra site-local rule files or directories (also ${RULES_ENV}, ':'-separated).",
    )
