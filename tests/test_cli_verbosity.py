"""-q/--quiet and -v/--verbose on every command: the verdict line only (same exit code, --output
still gets the whole report), or evidence and stage timings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cli import run_gpudoctor

REPO = Path(__file__).resolve().parent.parent
XML = REPO / "fixtures" / "fleets" / "nvidia-smi" / "H800_580.65.06.xml"
COMMANDS = {
    "scan": ["scan", "--from-nvidia-smi", str(XML)],
    "kernels": ["kernels", str(REPO / "fixtures" / "fatbins" / "bin"), "--gpu", "8.0"],
    "explain": [
        "explain",
        str(REPO / "fixtures" / "logs" / "corpus" / "01_no-kernel-image_rtx4090-sm89_old-torch.txt"),
    ],
    "fleet": ["fleet", str(REPO / "fixtures" / "fleets" / "demo")],
}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_quiet_is_the_verdict_line_with_the_same_exit_code(name: str) -> None:
    full = run_gpudoctor(*COMMANDS[name], "--format", "json")
    assert full.returncode in (0, 1, 2, 3), full.stderr
    verdict = json.loads(full.stdout)["verdict"]
    quiet = run_gpudoctor(*COMMANDS[name], "--quiet")
    assert quiet.returncode == full.returncode
    assert quiet.stdout.splitlines() == [quiet.stdout.strip()] and quiet.stdout.startswith("verdict: ")
    assert quiet.stdout.rstrip().endswith(verdict.upper())


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_verbose_times_the_stages_on_stderr(name: str) -> None:
    result = run_gpudoctor(*COMMANDS[name], "-v")
    assert result.returncode in (0, 1, 2, 3), result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith(f"gpudoctor: {name}: ")]
    assert "total" in line and " ms" in line


def test_scan_verbose_shows_evidence_and_stages() -> None:
    result = run_gpudoctor(*COMMANDS["scan"], "--verbose")
    assert "evidence: gpus[0].persistence_mode='disabled'" in result.stdout
    assert "load " in result.stderr and "rules " in result.stderr


def test_quiet_with_output_writes_the_whole_report(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    result = run_gpudoctor(*COMMANDS["scan"], "-q", "--format", "json", "-o", str(out))
    report = json.loads(out.read_text())
    assert result.stdout == f"verdict: ✓ {report['verdict'].upper()}\n" or result.stdout.startswith(
        "verdict: "
    )
    assert report["findings"]


def test_quiet_and_verbose_exclude_each_other() -> None:
    result = run_gpudoctor(*COMMANDS["scan"], "-q", "-v")
    assert result.returncode == 64 and "exclude each other" in result.stderr
