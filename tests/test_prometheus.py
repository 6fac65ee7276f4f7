"""`--format prometheus`: valid node_exporter textfile exposition with the right values."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from gpudoctor.report import prometheus
from tests.support.cli import run_gpudoctor
from tests.support.fleet import node_report


def parsed(report: dict) -> dict[str, list]:
    return {
        family.name: family.samples for family in text_string_to_metric_families(prometheus.render(report))
    }


def value(samples: list, **labels: str) -> float:
    (match,) = [s.value for s in samples if all(s.labels.get(k) == v for k, v in labels.items())]
    return float(match)


def test_verdict_is_a_state_set_and_exit_code_matches() -> None:
    report = node_report("4x-Tesla-K80_430.26")
    families = parsed(report)
    states = {s.labels["state"]: s.value for s in families["gpudoctor_verdict"]}
    assert states == {"ok": 0, "info": 0, "warn": 0, "unknown": 0, "fail": 0, report["verdict"]: 1}
    assert (
        value(families["gpudoctor_exit_code"])
        == {"ok": 0, "info": 0, "warn": 1, "fail": 2, "unknown": 3}[report["verdict"]]
    )


def test_findings_and_counts_by_severity() -> None:
    report = node_report("4x-Tesla-K80_430.26")
    families = parsed(report)
    fired = {(s.labels["rule_id"], s.labels["severity"]) for s in families["gpudoctor_finding"]}
    assert fired == {(f["rule_id"], f["severity"]) for f in report["findings"]}
    assert fired  # the K80 capture has lifetime ECC errors
    warn_rules = {f["rule_id"] for f in report["findings"] if f["severity"] == "warn"}
    assert value(families["gpudoctor_findings"], severity="warn") == len(warn_rules)
    assert value(families["gpudoctor_findings"], severity="fail") == 0


def test_gpu_info_per_gpu_with_driver_and_capability() -> None:
    report = node_report("8x-Tesla-V100S-PCIE-32GB_460.73.01")
    families = parsed(report)
    info = families["gpudoctor_gpu_info"]
    assert len(info) == 8
    assert value(families["gpudoctor_gpus"]) == 8
    assert {s.labels["index"] for s in info} == {str(i) for i in range(8)}
    assert all(
        s.labels["name"] == "Tesla V100S-PCIE-32GB" and s.labels["driver"] == "460.73.01" for s in info
    )
    expected_cc = report["node"]["gpus"][0]["compute_capability"] or "unknown"
    assert info[0].labels["compute_capability"] == expected_cc
    driver = families["gpudoctor_driver_info"][0].labels
    assert driver["branch"] == "460" and driver["cuda_version"] == "11.2"


def test_labels_with_quotes_backslashes_and_newlines_round_trip() -> None:
    report = node_report("Tesla-T4_515.105.01")
    nasty = 'Tesla "T4"\\ line\nbreak'
    report["node"]["gpus"][0]["name"] = nasty
    report["findings"] = [{"rule_id": 'X"1\\', "severity": "warn", "title": "t"}]
    report["verdict"] = "warn"
    families = parsed(report)
    assert families["gpudoctor_gpu_info"][0].labels["name"] == nasty
    assert families["gpudoctor_finding"][0].labels["rule_id"] == 'X"1\\'


def test_timestamp_from_collected_at_and_absent_when_unknown() -> None:
    report = node_report("Tesla-T4_515.105.01")
    report["node"]["collected_at"] = "2026-11-29T04:00:00Z"
    expected = datetime(2026, 11, 29, 4, 0, tzinfo=timezone.utc).timestamp()
    assert value(parsed(report)["gpudoctor_scan_timestamp_seconds"]) == expected
    report["node"]["collected_at"] = None
    assert "gpudoctor_scan_timestamp_seconds" not in parsed(report)


def test_probe_errors_are_counted() -> None:
    report = node_report("Tesla-T4_515.105.01")
    report["probe_errors"] = [
        {"probe": "nvml", "message": "timed out"},
        {"probe": "sysfs", "message": "denied"},
    ]
    assert value(parsed(report)["gpudoctor_probe_errors"]) == 2


def test_every_family_has_help_and_type() -> None:
    text = prometheus.render(node_report("A100-SXM4-80GB_535.54.03"))
    names = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    helps = {line.split()[2] for line in text.splitlines() if line.startswith("# HELP")}
    assert names == helps
    assert all(name.startswith("gpudoctor_") for name in names)
    assert text.endswith("\n")


def test_scan_writes_the_textfile_atomically(tmp_path: Path) -> None:
    xml = Path(__file__).resolve().parent.parent / "fixtures" / "fleets" / "nvidia-smi" / "H800_580.65.06.xml"
    target = tmp_path / "gpudoctor.prom"
    result = run_gpudoctor(
        "scan", "--from-nvidia-smi", str(xml), "--format", "prometheus", "--output", str(target)
    )
    assert result.returncode in (0, 1, 2, 3), result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["gpudoctor.prom"]
    families = {f.name: f.samples for f in text_string_to_metric_families(target.read_text())}
    assert value(families["gpudoctor_exit_code"]) == result.returncode
    assert families["gpudoctor_gpu_info"][0].labels["name"] == "NVIDIA H800"
    assert families["gpudoctor_driver_info"][0].labels["version"] == "580.65.06"
