"""A progress bar on stderr for work that turns out to be long, on a terminal only.

Nothing is drawn for the first second (GPUDOCTOR_PROGRESS_AFTER seconds), nor when stderr
is not a terminal, so short runs and pipes, logs and CI stay clean. Drawn by rich, transient:
the bar is erased when the work is done.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

AFTER_S = 1.0


class _Bar:
    def __init__(self, description: str, total: int) -> None:
        self.description, self.total, self.done = description, total, 0
        self.start = time.monotonic()
        self.after = float(os.environ.get("GPUDOCTOR_PROGRESS_AFTER", AFTER_S))
        self.enabled = sys.stderr.isatty()
        self.bar: Any = None

    def advance(self, count: int = 1) -> None:
        self.done += count
        if not self.enabled:
            return
        if self.bar is None and time.monotonic() - self.start >= self.after:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

            self.bar = Progress(
                "{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
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
def progress(description: str, total: int) -> Iterator[_Bar]:
    bar = _Bar(description, total)
    try:
        yield bar
    finally:
        bar.close()
