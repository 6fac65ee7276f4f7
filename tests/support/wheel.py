"""The project built as a wheel, for tests of what an installed gpudoctor ships."""

from __future__ import annotations

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
