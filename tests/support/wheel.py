"""The project built as a wheel, for tests of what an installed gpudoctor ships."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent


def build_wheel(directory: Path) -> Path:
    """`pip wheel` of this checkout into `directory`; the one wheel it made."""
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(directory), str(REPO)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = directory.glob("gpudoctor-*.whl")
    return wheel


def install_wheel(wheel: Path, target: Path) -> Path:
    """`pip install --target` of the wheel: an installed gpudoctor with no repository behind it."""
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr
    return target


def run_installed(site: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`python ARGS` with only the installed copy importable (cwd outside the repository)."""
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(site)},
    )
