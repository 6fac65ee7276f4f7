"""The fleet's terminal view: compact at 80 columns, COLUMNS honoured when piped, colour only on
a terminal and never with NO_COLOR, refs never broken, an unfetchable image named once."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import run_gpudoctor, run_on_a_terminal
from tests.support.fleet_registry import Registry, push_fixture_image, running_registry

pytestmark = pytest.mark.services

DEMO = Path(__file__).resolve().parent.parent / "fixtures" / "fleets" / "demo"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(scope="module")
def registry() -> Iterator[Registry]:
    with running_registry() as started:
        yield started


@pytest.fixture(scope="module")
def image_args(registry: Registry) -> list[str]:
    cuda13 = push_fixture_image(
        registry, "table/vllm-openai", "v0.23.0", "vllm-openai_v0.23.0-cuda13.0.2_amd64"
    )
    cuda12 = push_fixture_image(
        registry, "table/cuda", "12.4.1", "nvidia-cuda_12.4.1-runtime-ubuntu2204_amd64"
    )
    return ["--image", cuda13, "--image", cuda12, "--insecure-registry", registry.host]


def fleet_text(*args: str, columns: int | None = 80) -> subprocess.CompletedProcess[str]:
    env = {"COLUMNS": str(columns)} if columns else {}
    result = run_gpudoctor("fleet", str(DEMO), *args, env=env)
    assert result.returncode in (0, 1, 2, 3), result.stderr
    return result


def test_demo_with_two_images_fits_40_lines_at_80_columns(image_args: list[str]) -> None:
    result = fleet_text(*image_args)
    lines = result.stdout.splitlines()
    assert len(lines) <= 40, result.stdout
    assert all(len(line) <= 80 and line == line.rstrip() for line in lines), result.stdout
    assert not ANSI.search(result.stdout)  # piped: no colour codes
    assert lines[-1] == "verdict: ✗ FAIL"
    matrix_rows = [line for line in lines if re.match(r"^\d+x ", line)]
    assert len(matrix_rows) == 7
    # Each class label whole on its row (a wrapped label would cost a line per class).
    assert all(re.search(r" R\d+ +\d+ ", row) for row in matrix_rows), matrix_rows
    a800 = next(line for line in matrix_rows if "A800" in line)
    assert a800.split()[-3:] == ["✓", "!", "!"]  # nodes ok; both images warn (forward / minor compat)
    # Details only for what is not ok: each such rule once, with where it fired.
    assert result.stdout.count("GD-CUDA-003") == 1
    assert "GD-HLT-007" not in result.stdout  # info only: not listed


def test_image_headings_that_do_not_fit_become_keyed_numbers(image_args: list[str]) -> None:
    def heading(lines: list[str]) -> str:
        return next(line for line in lines if line.startswith("node class"))

    wide = fleet_text(*image_args, columns=120).stdout.splitlines()
    assert "vllm-openai:v0.23.0" in heading(wide) and "[1]" not in heading(wide)
    narrow = fleet_text(*image_args, columns=56).stdout.splitlines()
    assert heading(narrow).split()[-2:] == ["[1]", "[2]"]
    assert "[1] vllm-openai:v0.23.0  [2] cuda:12.4.1" in narrow, narrow[:14]


def test_columns_is_honoured_when_piped(image_args: list[str]) -> None:
    wide = fleet_text(*image_args, "--details", columns=160).stdout.splitlines()
    narrow = fleet_text(*image_args, "--details", columns=60).stdout.splitlines()
    assert max(map(len, wide)) > 80 and max(map(len, wide)) <= 160
    long_lines = [line for line in narrow if len(line) > 60]
    # Only refs may pass the width: they are printed whole, on lines of their own.
    assert long_lines and all(re.fullmatch(r"\s+https?://\S+", line) for line in long_lines), long_lines


def test_details_show_fix_and_whole_refs(image_args: list[str]) -> None:
    text = fleet_text(*image_args, "--details").stdout
    assert "fix: " in text and "Cells not ok" in text
    refs = [line.strip() for line in text.splitlines() if line.strip().startswith("https://")]
    assert refs and all(" " not in ref for ref in refs)
    assert "https://docs.nvidia.com/deploy/cuda-compatibility/forward-compatibility.html" in refs


def test_colour_on_a_terminal_and_never_with_no_color(image_args: list[str]) -> None:
    args = ["fleet", str(DEMO), *image_args]
    coloured = run_on_a_terminal(args, {"COLUMNS": "100"})
    assert ANSI.search(coloured) and "\x1b[1;31m✗" in coloured  # fail: bold red, as in every command
    plain = run_on_a_terminal(args, {"COLUMNS": "100", "NO_COLOR": "1"})
    assert not ANSI.search(plain) and "verdict: ✗ FAIL" in plain


def test_an_unfetchable_image_is_named_once(registry: Registry, image_args: list[str]) -> None:
    missing = f"{registry.host}/table/does-not-exist:1"
    result = fleet_text(*image_args, "--image", missing, "--format", "table")
    assert result.stdout.count(missing) == 1 and "not fetched" in result.stdout
    assert result.stderr.count(missing) == 1
    rows = list(
        csv.reader(io.StringIO(fleet_text(*image_args, "--image", missing, "--format", "csv").stdout))
    )
    column = rows[0].index(f"error:{missing}")
    assert all(row[column] and row[rows[0].index(f"image:{missing}")] == "unknown" for row in rows[1:8])


def test_progress_bar_on_a_terminal_only(tmp_path: Path) -> None:
    """Reading many reports draws a bar on stderr when it is a terminal (shown at once here:
    GPUDOCTOR_PROGRESS_AFTER=0), and nothing when stderr is piped."""
    report = json.loads((DEMO / "a800-01.json").read_text())
    for number in range(600):
        report["node"]["host"]["hostname"] = f"n{number:04d}"  # one host per report, as collected
        (tmp_path / f"n{number:04d}.json").write_text(json.dumps(report))
    shown = run_on_a_terminal(
        ["fleet", str(tmp_path)], {"GPUDOCTOR_PROGRESS_AFTER": "0", "COLUMNS": "100"}, stream="stderr"
    )
    assert "reading node reports" in shown
    piped = run_gpudoctor("fleet", str(tmp_path), env={"GPUDOCTOR_PROGRESS_AFTER": "0"})
    assert piped.stderr == ""
