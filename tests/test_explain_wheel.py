"""The installed wheel ships the signatures and explains a log without the repository."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SLOW = os.environ.get("GPUDOCTOR_SLOW") == "1"


@pytest.mark.skipif(not SLOW, reason="builds a wheel (set GPUDOCTOR_SLOW=1)")
def test_installed_wheel_explains_a_log(tmp_path: Path) -> None:
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = tmp_path.glob("gpudoctor-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "gpudoctor/_rules/signatures/health.yaml" in names
    target = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr
    log = REPO / "fixtures" / "logs" / "corpus" / "09_err802-system-not-yet-initialized_bandwidthTest.txt"
    done = subprocess.run(
        [sys.executable, "-m", "gpudoctor", "explain", str(log), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(target)},
    )
    assert done.returncode == 2, done.stderr
    assert [m["signature_id"] for m in json.loads(done.stdout)["matches"]] == ["GD-LOG-004"]
