"""A real browser for the HTML report tests: Debian's Chromium (apt) driven by Playwright.

Never `playwright install`: the system Chromium is launched by path, headless, with the
background services that would phone home switched off, so any request a page makes is
one the page itself asked for (the tests record them all).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class PageLog:
    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)


def require_chromium() -> None:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (see .ci/run)")


@contextmanager
def browser() -> Iterator[Any]:
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield instance
        finally:
            instance.close()


def open_page(instance: Any, path: Path, width: int = 1280, height: int = 800) -> tuple[Any, PageLog]:
    """A page on file://path at a laptop's size, logging requests, console errors and dialogs."""
    page = instance.new_page(viewport={"width": width, "height": height})
    log = PageLog()
    page.on("request", lambda request: log.requests.append(request.url))
    page.on("console", lambda message: message.type == "error" and log.console_errors.append(message.text))
    page.on("pageerror", lambda error: log.console_errors.append(str(error)))

    def on_dialog(dialog: Any) -> None:
        log.dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.goto(path.resolve().as_uri())
    page.wait_for_load_state("load")
    return page, log
