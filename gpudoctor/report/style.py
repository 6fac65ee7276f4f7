"""One look for every human renderer: severity colours and symbols, and the console.

Severity -> style and symbol are the same in scan, preflight, kernels, explain and fleet.
The console follows the terminal's width, or COLUMNS (also when the output is piped; 80
columns when neither says), and colours only a terminal, never with NO_COLOR set
(https://no-color.org).
"""

from __future__ import annotations

import os
import sys
from typing import Any, TextIO

from gpudoctor.versions import count_from

SEVERITY_STYLE = {
    "ok": "bold green",
    "info": "green",
    "warn": "bold yellow",
    "unknown": "bold magenta",
    "fail": "bold red",
}
# Shapes differ as well as colours: a verdict must read without colour (NO_COLOR, print-outs).
SEVERITY_SYMBOL = {"ok": "✓", "info": "✓", "warn": "!", "unknown": "?", "fail": "✗"}
PIPED_WIDTH = 80
# COLUMNS=999999999 would have rich pad every line to it.
MAX_WIDTH = 4096


def width() -> int:
    columns = count_from(os.environ.get("COLUMNS"))  # not int(): COLUMNS=² is a digit to isdigit
    if columns:
        return min(columns, MAX_WIDTH)
    if sys.stdout.isatty():
        import shutil

        return shutil.get_terminal_size((PIPED_WIDTH, 24)).columns
    return PIPED_WIDTH


def colour() -> bool:
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def console(file: TextIO) -> Any:
    """A rich Console writing to `file` at the width and colour rules above."""
    from rich.console import Console

    use_colour = colour()
    return Console(
        file=file,
        width=width(),
        force_terminal=use_colour,
        no_color=not use_colour,
        color_system="auto" if use_colour else None,
        highlight=False,
        emoji=False,
    )


def verdict_text(verdict: str) -> str:
    """'✓ OK', '! WARN': the verdict as plain text, readable without colour."""
    return f"{SEVERITY_SYMBOL.get(verdict, '?')} {verdict.upper()}"


def indented(console: Any, markup: str, indent: int, style: str | None = None) -> None:
    """Print markup wrapped at the console width with every line indented."""
    from rich.padding import Padding
    from rich.text import Text

    console.print(Padding(Text.from_markup(markup, style=style or ""), (0, 0, 0, indent), expand=False))


def verdict_markup(verdict: str, upper: bool = True) -> str:
    """'[bold red]✗ FAIL[/]' (rich markup)."""
    text = verdict.upper() if upper else verdict
    return f"[{SEVERITY_STYLE.get(verdict, '')}]{SEVERITY_SYMBOL.get(verdict, '')} {text}[/]"
