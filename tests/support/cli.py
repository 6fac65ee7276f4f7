"""The real CLI in a fresh interpreter, as users run it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_gpudoctor(
    *args: str,
    timeout: float = 120,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """`python -m gpudoctor ARGS`, output captured as text; `env` is added to this process's environment,
    `stdin` (if given) is fed to it."""
    return subprocess.run(
        [sys.executable, "-m", "gpudoctor", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=None if env is None else {**os.environ, **env},
    )
