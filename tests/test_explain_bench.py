"""bench/bench_explain.py stays runnable, and grep accepts every shipped pattern translated to ERE."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

import bench_explain  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("grep") is None, reason="needs grep")


@pytest.mark.parametrize(
    ("pattern", "ere"),
    [
        (r"(?P<pci>[0-9a-fA-F:.]+)\): (?!(?:13|31)\b)(?P<xid>\d+)\b", r"([0-9a-fA-F:.]+)\): ([0-9]+)\b"),
        (r"(?P<path>/[^\s:\\]+): file exists", r"(/[^[:space:]:\]+): file exists"),
        (r"\[\[(?P<c>[^\]]*)\]\]", r"\[\[([^]]*)\]\]"),
        (r"(?:a|b)+?x", r"(a|b)+x"),
    ],
)
def test_translation_to_ere(pattern: str, ere: str) -> None:
    assert bench_explain.to_ere(pattern) == ere


def test_grep_accepts_every_translated_pattern_and_finds_the_fixture_failures(tmp_path: Path) -> None:
    patterns = tmp_path / "patterns.ere"
    patterns.write_text("\n".join(bench_explain.grep_patterns()) + "\n")
    sample = REPO / "fixtures" / "logs" / "threads" / "xid-063_ml-engineering.log"
    done = subprocess.run(
        ["grep", "-E", "-c", "-i", "-f", str(patterns), str(sample)], capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr  # 2 would mean a pattern grep cannot parse
    assert int(done.stdout) == 1


def test_bench_runs_on_a_small_log() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "bench_explain.py"), "--mb", "2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    ratio = re.search(r"ratio explain / fastest grep:\s+([\d.]+)x", done.stdout)
    assert ratio is not None, done.stdout
    assert re.search(
        r"gpudoctor explain:\s+[\d.]+ s  \(\d+ matching lines, [1-9]\d* incidents\)", done.stdout
    )
