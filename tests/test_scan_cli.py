"""`gpudoctor scan` end to end, as a real subprocess: exit codes, output, errors."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from gpudoctor.report.schema import load_schema
from tests.support.cli import run_gpudoctor
from tests.support.imports import modules_loaded_by

REPO = Path(__file__).resolve().parent.parent
XML = REPO / "fixtures" / "nvidia-smi"
SYSFS = REPO / "fixtures" / "sysfs"
VALIDATOR = jsonschema.Draft202012Validator(load_schema())


def scan(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return run_gpudoctor("scan", *args, cwd=cwd)


def report_of(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(done.stdout)
    VALIDATOR.validate(report)
    return report


def assert_no_traceback(stderr: str) -> None:
    assert "Traceback" not in stderr
    assert 'File "' not in stderr


def test_live_scan_without_driver_is_unknown_exit_3() -> None:
    done = scan("--format", "json")
    assert done.returncode == 3, done.stderr
    assert_no_traceback(done.stderr)
    report = report_of(done)
    node = report["node"]
    assert report["verdict"] == "unknown"
    assert node["source"] == "live"
    assert node["driver"]["present"] is False
    assert node["driver"]["unknown"]["present"] == "no NVIDIA driver: libnvidia-ml.so.1 not found"
    assert node["host"]["hostname"] and node["host"]["kernel"] and node["host"]["cpu_arch"]
    assert any(f["message"] == "no NVIDIA driver: libnvidia-ml.so.1 not found" for f in report["findings"])


def test_live_table_says_why() -> None:
    done = scan()
    assert done.returncode == 3
    assert "no NVIDIA driver: libnvidia-ml.so.1 not found" in done.stdout
    assert "verdict: ? UNKNOWN" in done.stdout
    assert_no_traceback(done.stderr)


@pytest.mark.parametrize("name", sorted(p.name for p in XML.glob("*.xml")))
def test_every_saved_xml_scans_to_a_valid_report(name: str) -> None:
    done = scan("--from-nvidia-smi", str(XML / name), "--format", "json")
    assert done.returncode in (0, 1, 2, 3), done.stderr
    report = report_of(done)
    assert report["node"]["source"] == "nvidia-smi-xml"
    assert report["node"]["driver"]["version"] == name.rsplit("_", 1)[1].removesuffix(".xml")
    assert done.returncode == {"ok": 0, "info": 0, "warn": 1, "fail": 2, "unknown": 3}[report["verdict"]]


def test_eight_gpu_table() -> None:
    done = scan("--from-nvidia-smi", str(XML / "8x-Tesla-V100S-PCIE-32GB_460.73.01.xml"))
    assert done.returncode in (0, 1, 2)
    assert "GPUs (8)" in done.stdout
    assert done.stdout.count("volta") == 8
    assert "verdict:" in done.stdout


def test_sysfs_root_scan_with_acs() -> None:
    report = report_of(scan("--sysfs-root", str(SYSFS / "acs-on"), "--format", "json"))
    topology = report["node"]["topology"]
    assert topology["acs_enabled_bridges"] == ["0000:02:08.0", "0000:02:10.0"]
    assert report["node"]["host"]["hostname"] == "pcie-node-acs"


def test_output_file_is_written_atomically(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    done = scan(
        "--from-nvidia-smi", str(XML / "Tesla-T4_515.105.01.xml"), "--format", "json", "--output", str(target)
    )
    assert done.stdout == ""
    VALIDATOR.validate(json.loads(target.read_text(encoding="utf-8")))
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temp file left behind


def test_malformed_xml_exits_65_with_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.xml"
    broken.write_bytes((XML / "Tesla-T4_515.105.01.xml").read_bytes()[:2000])
    done = scan("--from-nvidia-smi", str(broken))
    assert done.returncode == 65
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and "malformed XML" in done.stderr
    assert_no_traceback(done.stderr)


def test_missing_inputs_exit_66(tmp_path: Path) -> None:
    done = scan("--from-nvidia-smi", str(tmp_path / "nope.xml"))
    assert done.returncode == 66 and "no such file" in done.stderr
    done = scan("--sysfs-root", str(tmp_path / "nope"))
    assert done.returncode == 66 and "no such directory" in done.stderr
    assert_no_traceback(done.stderr)


def test_usage_error_exits_64() -> None:
    done = scan("--format", "yaml")
    assert done.returncode == 64
    assert_no_traceback(done.stderr)


def test_unwritable_output_exits_73(tmp_path: Path) -> None:
    done = scan(
        "--from-nvidia-smi", str(XML / "Tesla-T4_515.105.01.xml"), "--output", str(tmp_path / "no" / "x.json")
    )
    assert done.returncode == 73
    assert_no_traceback(done.stderr)


@pytest.mark.parametrize("fmt", ["prometheus", "nfd", "oneline"])
def test_other_formats_are_offered(fmt: str) -> None:
    done = scan("--from-nvidia-smi", str(XML / "Tesla-T4_515.105.01.xml"), "--format", fmt)
    assert done.returncode in (0, 1, 2, 3), done.stderr
    assert done.stdout.strip()


def test_version_does_not_import_heavy_modules() -> None:
    code = "from gpudoctor.cli import main\ntry:\n    main(['--version'])\nexcept SystemExit:\n    pass\n"
    assert modules_loaded_by(code, ("rich", "yaml", "pynvml", "docker")) == []


SITE_RULE = """kind: rules
rules:
  - id: GD-SITE-901
    title: V100S nodes are being retired here
    severity: warn
    applies_to: node
    test: {any_gpu: {gpu.name: {eq: "Tesla V100S-PCIE-32GB"}}}
    message: "This node has Tesla V100S GPUs."
    fix: "Drain it."
    source: field report
"""


def test_site_rules_change_the_verdict(tmp_path: Path) -> None:
    (tmp_path / "site.yaml").write_text(SITE_RULE, encoding="utf-8")
    done = scan(
        "--from-nvidia-smi",
        str(XML / "8x-Tesla-V100S-PCIE-32GB_460.73.01.xml"),
        "--format",
        "json",
        "--rules",
        str(tmp_path),
    )
    report = report_of(done)
    assert any(f["rule_id"] == "GD-SITE-901" for f in report["findings"]), done.stderr
    assert report["verdict"] == "warn" and done.returncode == 1


def test_a_broken_site_rule_exits_65(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("kind: rules\nrules:\n  - id: X\n", encoding="utf-8")
    done = scan("--from-nvidia-smi", str(XML / "Tesla-T4_515.105.01.xml"), "--rules", str(tmp_path))
    assert done.returncode == 65
    assert done.stderr.count("\n") == 1 and "bad.yaml" in done.stderr
    assert_no_traceback(done.stderr)


def test_sysfs_root_and_saved_xml_do_not_mix() -> None:
    done = scan(
        "--from-nvidia-smi", str(XML / "Tesla-T4_515.105.01.xml"), "--sysfs-root", str(SYSFS / "acs-on")
    )
    assert done.returncode == 64
    assert "cannot be combined" in done.stderr
