"""Run a helper binary with a timeout; never raise, never hang."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

DEFAULT_TIMEOUT_S = 5.0


@dataclass
class Outcome:
    returncode: int | None  # None: not run (missing, timed out, not executable)
    stdout: str
    reason: str | None  # why there is no usable answer; None on exit 0


def run_outcome(argv: list[str], timeout_s: float = DEFAULT_TIMEOUT_S) -> Outcome:
    if shutil.which(argv[0]) is None:
        return Outcome(None, "", f"{argv[0]} not found")
    try:
        done = subprocess.run(
            argv, capture_output=True, timeout=timeout_s, check=False, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        return Outcome(None, "", f"{argv[0]} timed out after {timeout_s:g}s")
    except OSError as exc:
        return Outcome(None, "", f"{argv[0]}: {exc.strerror or exc}")
    stdout = done.stdout.decode("utf-8", errors="replace")
    if done.returncode == 0:
        return Outcome(0, stdout, None)
    lines = (done.stderr.decode("utf-8", errors="replace") or stdout).strip().splitlines()
    return Outcome(
        done.returncode, stdout, f"{argv[0]} exited {done.returncode}" + (f": {lines[0]}" if lines else "")
    )


def run(argv: list[str], timeout_s: float = DEFAULT_TIMEOUT_S) -> tuple[str | None, str | None]:
    """(stdout, None) on exit 0, else (None, reason)."""
    outcome = run_outcome(argv, timeout_s)
    return (outcome.stdout, None) if outcome.returncode == 0 else (None, outcome.reason)
