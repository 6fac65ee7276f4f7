"""The real CLI in a fresh interpreter, as users run it."""

from __future__ import annotations

import os
import pty
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


def run_on_a_terminal(args: list[str], env: dict[str, str], stream: str = "stdout") -> str:
    """Run the CLI with `stream` (stdout or stderr) on a pseudo-terminal and the other one
    discarded; returns what it wrote to the terminal."""
    leader, follower = pty.openpty()
    streams = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, stream: follower}
    process = subprocess.Popen(
        [sys.executable, "-m", "gpudoctor", *args], **streams, env={**os.environ, **env}
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    process.wait(timeout=120)
    os.close(leader)
    return b"".join(chunks).decode()
