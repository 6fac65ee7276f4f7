"""`--format oneline`: one line for Slurm / NHC, worst finding first."""

from __future__ import annotations

import re
from pathlib import Path

from gpudoctor.report import oneline
from tests.support.cli import run_gpudoctor
from tests.support.fleet import node_report

LINE = re.compile(r"^(OK|INFO|WARN|FAIL|UNKNOWN): .+ \([A-Z0-9-]+\)( \+\d+ more)?(; \d+ probe error\(s\))?$")


def test_worst_finding_is_named_with_its_rule_id() -> None:
    report = node_report("4x-Tesla-K80_430.26")
    line = oneline.render(report)
    assert line.endswith("\n") and line.count("\n") == 1
    assert LINE.match(line.rstrip("\n")), line
    order = ("unknown", "fail", "warn", "info")
    worst = min(report["findings"], key=lambda f: order.index(f["severity"]))
    assert line.startswith(f"{worst['severity'].upper()}: {worst['title']} ({worst['rule_id']})")
    assert f"+{len(report['findings']) - 1} more" in line


def test_fail_beats_warn_and_newlines_never_leak() -> None:
    report = node_report("4x-Tesla-K80_430.26")
    report["findings"].append({"rule_id": "GD-X-001", "severity": "fail", "title": "multi\nline\ttitle"})
    report["verdict"] = "fail"
    line = oneline.render(report)
    assert line.startswith("FAIL: multi line title (GD-X-001)")
    assert line.count("\n") == 1


def test_clean_node_and_probe_errors() -> None:
    report = node_report("RTX-3080_595.58.03")
    report["findings"], report["verdict"] = [], "ok"
    assert oneline.render(report) == "OK: no findings (1 GPU(s), driver 595.58.03)\n"
    report["probe_errors"] = [{"probe": "nvml", "message": "timeout"}]
    assert oneline.render(report).endswith("; 1 probe error(s)\n")


def test_long_titles_are_cut_to_fit_a_slurm_reason() -> None:
    report = node_report("RTX-3080_595.58.03")
    report["findings"] = [{"rule_id": "GD-X-002", "severity": "warn", "title": "x" * 500}]
    report["verdict"] = "warn"
    line = oneline.render(report).rstrip("\n")
    assert len(line) == oneline.MAX_LENGTH and line.endswith("...")


def test_scan_exit_code_and_line_agree() -> None:
    xml = (
        Path(__file__).resolve().parent.parent
        / "fixtures"
        / "fleets"
        / "nvidia-smi"
        / "A800-SXM4-80GB_535.54.03.xml"
    )
    result = run_gpudoctor("scan", "--from-nvidia-smi", str(xml), "--format", "oneline")
    verdict = result.stdout.split(":", 1)[0]
    assert result.stdout.count("\n") == 1
    assert result.returncode == {"OK": 0, "INFO": 0, "WARN": 1, "FAIL": 2, "UNKNOWN": 3}[verdict]


def test_no_driver_is_named_not_its_consequences() -> None:
    """Preflight on a node without a driver: the CUDA checks are unknown for want of the driver's
    facts; the headline names the established cause (GD-NODE-001), not GD-CUDA-001."""
    from gpudoctor.pipeline import diagnose
    from gpudoctor.probes.collect import collect_node
    from tests.support.fleet import image_facts
    from tests.support.nvml_replay import replay

    sysfs = Path(__file__).resolve().parent.parent / "fixtures" / "sysfs" / "no-driver"
    node = collect_node(sysfs_root=str(sysfs), nvml=replay("no-driver"))
    report = diagnose(node, image_facts("vllm-openai_v0.23.0-cuda13.0.2_amd64"))
    assert any(f["rule_id"] == "GD-CUDA-001" and f["missing_facts"] for f in report["findings"])
    line = oneline.render(report)
    assert line.startswith("UNKNOWN: No NVIDIA driver on this node (GD-NODE-001)"), line
