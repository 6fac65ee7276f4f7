"""A progress bar on stderr for work that turns out to be long, on a terminal only.

Nothing is drawn for the first second (GPUDOCTOR_PROGRESS_AFTER seconds), nor when stderr
is not a terminal, nor with --quiet (every command calls set_quiet), so short runs and
pipes, logs and CI stay clean; stdout (tables, JSON) never gets a byte of it. Drawn by
rich, transient: the bar is erased when the work is done.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

AFTER_S = 1.0
_QUIET = {"on": False}


def set_quiet(quiet: bool) -> None:
    """--quiet of the running command: no bar at all."""
    _QUIET["on"] = quiet


class _Bar:
    def __init__(self, description: str, total: int, unit: str) -> None:
        self.description, self.total, self.unit, self.done = description, total, unit, 0
        self.start = time.monotonic()
        self.after = float(os.environ.get("GPUDOCTOR_PROGRESS_AFTER", AFTER_S))
        self.enabled = sys.stderr.isatty() and not _QUIET["on"]
        self.bar: Any = None

    def advance(self, count: int = 1) -> None:
        self.done += count
        if not self.enabled:
            return
        if self.bar is None and time.monotonic() - self.start >= self.after:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                MofNCompleteColumn,
                Progress,
                TimeRemainingColumn,
            )

            self.bar = Progress(
                "{task.description}",
                BarColumn(),
                DownloadColumn() if self.unit == "bytes" else MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self.bar.start()
            self.task = self.bar.add_task(self.description, total=self.total)
        if self.bar is not None:
            self.bar.update(self.task, completed=self.done)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


@contextmanager
def progress(description: str, total: int, unit: str = "items") -> Iterator[_Bar]:
    """A bar counting `total` items (or bytes, unit="bytes"); call .advance(count) as they are done."""
    bar = _Bar(description, total, unit)
    try:
        yield bar
    finally:
        bar.close()
