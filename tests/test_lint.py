"""The code base stays ruff clean (lint and format), checked as part of the suite."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TARGETS = ["gpudoctor", "tests", "bench", "tools", "fixtures", "deploy"]


def _ruff() -> list[str]:
    exe = Path(sys.executable).with_name("ruff")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("ruff")
    if found is None:
        pytest.fail("ruff is a test dependency (pip install -e '.[test]')")
    return [found]


@pytest.mark.parametrize("mode", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_ruff_clean(mode: list[str]) -> None:
    targets = [t for t in TARGETS if (REPO / t).exists()]
    result = subprocess.run(
        [*_ruff(), *mode, *targets], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
