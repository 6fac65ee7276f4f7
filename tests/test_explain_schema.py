"""Every JSON `gpudoctor explain` prints validates against the shipped explain schema,
and the schema rejects documents that break the contract (issue 7)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gpudoctor.report.schema import schema_path
from tests.support.cli import run_gpudoctor
from tests.support.schema_check import REPO, printed_json, validator, violations

LOGS = REPO / "fixtures" / "logs"
FAILURE_LOGS = sorted((LOGS / "corpus").glob("*.txt")) + sorted((LOGS / "threads").glob("*.log"))
HEALTHY_LOGS = sorted((LOGS / "healthy").glob("*.log"))
NODES = [
    REPO / "fixtures" / "fleets" / "nvidia-smi" / "H800_580.65.06.xml",
    REPO / "fixtures" / "nvidia-smi" / "RTX-4090_535.86.05.xml",
    REPO / "fixtures" / "nvidia-smi" / "A100-SXM4-80GB_535.54.03.xml",
    LOGS / "nodes" / "rtx5090_570.133.07_derived.json",
]
EXIT_FOR = {"ok": 0, "info": 0, "warn": 1, "fail": 2}
NO_MATCH = "no known failure signature found"


def explain_json(*args: str, stdin: str | None = None) -> dict[str, Any]:
    report, code = printed_json("explain", "explain", *args, "--format", "json", stdin=stdin)
    assert code == EXIT_FOR[report["verdict"]], (code, report["verdict"])
    return report


def test_schema_is_valid_and_ships_inside_the_package() -> None:
    validator("explain")  # check_schema raises on an invalid schema
    assert schema_path("explain").is_relative_to(REPO / "gpudoctor" / "explain")


@pytest.mark.parametrize("log", FAILURE_LOGS + HEALTHY_LOGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_fixture_log_without_node(log: Path) -> None:
    report = explain_json(str(log))
    assert "node" not in report and report["findings"] == []
    if log in HEALTHY_LOGS:
        assert report["matches"] == [] and report["summary"] == NO_MATCH


@pytest.mark.parametrize("node", NODES, ids=lambda p: p.name)
@pytest.mark.parametrize("log", sorted((LOGS / "corpus").glob("*.txt")), ids=lambda p: p.name[:2])
def test_corpus_logs_correlated_with_real_node_facts(log: Path, node: Path) -> None:
    report = explain_json(str(log), "--node", str(node))
    assert report["node"]["gpus"], report["node"]


def test_correlated_findings_validate() -> None:
    report = explain_json(
        str(LOGS / "corpus" / "25_sm120-not-compatible_then-no-kernel-image_sd-forge.txt"),
        "--node",
        str(LOGS / "nodes" / "rtx5090_570.133.07_derived.json"),
    )
    assert report["findings"] and report["verdict"] == "fail"


def test_unchecked_correlations_validate() -> None:
    report = explain_json(
        str(LOGS / "corpus" / "09_err802-system-not-yet-initialized_bandwidthTest.txt"),
        "--node",
        str(NODES[0]),
    )
    assert report["unchecked"][0]["missing_facts"]


def test_live_scan_of_this_node() -> None:
    # Whatever this machine has (no driver here, an H200 elsewhere), the live facts fit the schema.
    report = explain_json(str(LOGS / "corpus" / "13_nvml-mismatch_unattended-upgrade.txt"), "--scan")
    assert report["node"]["source"] == "live"


def test_log_from_stdin() -> None:
    log = (LOGS / "corpus" / "13_nvml-mismatch_unattended-upgrade.txt").read_text()
    report = explain_json("-", stdin=log)
    assert report["log"]["source"] == "<stdin>" and report["matches"]


@pytest.mark.parametrize(
    "content",
    [b"", b"epoch 1 loss 0.42\nepoch 2 loss 0.31\n", b"\xff\xfe\x00junk\x80\x81\nno newline at end"],
    ids=["empty", "training-output", "binary-junk"],
)
def test_logs_that_match_nothing(tmp_path: Path, content: bytes) -> None:
    log = tmp_path / "nothing.log"
    log.write_bytes(content)
    for node in ((), ("--node", str(NODES[1]))):
        report = explain_json(str(log), *node)
        assert report["matches"] == [] and report["verdict"] == "ok" and report["summary"] == NO_MATCH


def test_output_file_validates(tmp_path: Path) -> None:
    target = tmp_path / "explain.json"
    done = run_gpudoctor(
        "explain",
        str(LOGS / "corpus" / "05_unsatisfied-cuda12.8_wsl-driver551.78.txt"),
        "--format",
        "json",
        "-o",
        str(target),
        cwd=REPO,
    )
    assert done.returncode == 2 and done.stdout == "", done.stderr
    assert violations("explain", json.loads(target.read_text())) == []


@pytest.fixture(scope="module")
def correlated() -> dict[str, Any]:
    """A real report with matches, node, findings and captured values."""
    report = explain_json(
        str(LOGS / "corpus" / "25_sm120-not-compatible_then-no-kernel-image_sd-forge.txt"),
        "--node",
        str(LOGS / "nodes" / "rtx5090_570.133.07_derived.json"),
    )
    assert report["matches"] and report["findings"] and report["matches"][0]["captured"]
    return report


def _set_match_severity(doc: dict[str, Any]) -> None:
    doc["matches"][0]["severity"] = "critical"


def _invent_a_cause(doc: dict[str, Any]) -> None:
    # No signature matched, yet the summary names a failure: issue 7 forbids it.
    doc["matches"] = []
    doc["findings"] = []
    doc["summary"] = "probably the driver"


def _findings_without_node(doc: dict[str, Any]) -> None:
    del doc["node"]


BROKEN: dict[str, Callable[[dict[str, Any]], None]] = {
    "bad match severity": _set_match_severity,
    "verdict unknown": lambda d: d.update(verdict="unknown"),
    "cause invented for no match": _invent_a_cause,
    "findings without node facts": _findings_without_node,
    "missing line_numbers": lambda d: d["matches"][0].pop("line_numbers"),
    "line number 0": lambda d: d["matches"][0].update(line_numbers=[0]),
    "ref not a URL": lambda d: d["matches"][0].update(refs=["see the wiki"]),
    "finding uses rule_id": lambda d: d["findings"][0].update(rule_id=d["findings"][0].pop("signature_id")),
    "unknown top-level field": lambda d: d.update(extra=True),
    "wrong kind": lambda d: d.update(kind="scan"),
    "captured value not a string": lambda d: d["matches"][0]["captured"].update(sm=12.0),
}


@pytest.mark.parametrize("breakage", sorted(BROKEN))
def test_schema_rejects_broken_documents(correlated: dict[str, Any], breakage: str) -> None:
    assert violations("explain", correlated) == []
    broken = copy.deepcopy(correlated)
    BROKEN[breakage](broken)
    assert violations("explain", broken), breakage
