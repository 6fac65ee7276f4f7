"""The installed wheel ships the signatures and explains a log without the repository."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pytest

from tests.support.wheel import build_wheel, install_wheel, run_installed

REPO = Path(__file__).resolve().parent.parent
SLOW = os.environ.get("GPUDOCTOR_SLOW") == "1"


@pytest.mark.skipif(not SLOW, reason="builds a wheel (set GPUDOCTOR_SLOW=1)")
def test_installed_wheel_explains_a_log(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    assert "gpudoctor/_rules/signatures/health.yaml" in names
    target = install_wheel(wheel, tmp_path / "site")
    log = REPO / "fixtures" / "logs" / "corpus" / "09_err802-system-not-yet-initialized_bandwidthTest.txt"
    done = run_installed(target, "-m", "gpudoctor", "explain", str(log), "--format", "json", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    # The installed wheel names the cause from its shipped signatures (each incident of it is one
    # entry: torch's error on line 4, bandwidthTest's on lines 24-25; grouping is tested elsewhere).
    matches = json.loads(done.stdout)["matches"]
    assert matches and {m["signature_id"] for m in matches} == {"GD-LOG-004"}
    assert {m["line_numbers"][0] for m in matches} >= {4, 24}
