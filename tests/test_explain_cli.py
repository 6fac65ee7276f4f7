"""`gpudoctor explain` end to end, as a real subprocess: output shapes, exit codes,
stdin, node correlation from real nvidia-smi XMLs, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import run_on_a_terminal
from tests.support.imports import modules_loaded_by

REPO = Path(__file__).resolve().parent.parent
LOGS = REPO / "fixtures" / "logs"
XML = REPO / "fixtures" / "fleets" / "nvidia-smi"
CORPUS = LOGS / "corpus"
MATCH_KEYS = {"signature_id", "line_numbers", "excerpt", "captured", "cause", "fix", "refs", "severity"}


def explain(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "gpudoctor", "explain", *args],
        cwd=REPO,
        input=stdin,
        capture_output=True,
        timeout=120,
    )


def report_of(done: subprocess.CompletedProcess[bytes]) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def one_line_error(done: subprocess.CompletedProcess[bytes]) -> str:
    err = done.stderr.decode()
    assert "Traceback" not in err
    assert err.startswith("gpudoctor: ") and err.count("\n") == 1, err
    return err


def test_failure_log_json_shape_and_exit_fail() -> None:
    done = explain(
        str(CORPUS / "25_sm120-not-compatible_then-no-kernel-image_sd-forge.txt"), "--format", "json"
    )
    assert done.returncode == 2, done.stderr
    report = report_of(done)
    assert report["schema_version"] == "1.0" and report["kind"] == "explain"
    assert report["verdict"] == "fail"
    assert report["log"]["lines"] == 16
    assert "node" not in report and report["findings"] == []
    ids = [m["signature_id"] for m in report["matches"]]
    assert ids == ["GD-LOG-020", "GD-LOG-022"]
    for match in report["matches"]:
        assert set(match) >= MATCH_KEYS
        assert all(ref.startswith("https://") for ref in match["refs"])
    assert report["matches"][1]["captured"]["sm"] == "12.0"


def test_stdin_dash_reads_the_log() -> None:
    data = (CORPUS / "13_nvml-mismatch_unattended-upgrade.txt").read_bytes()
    done = explain("-", "--format", "json", stdin=data)
    assert done.returncode == 2, done.stderr
    report = report_of(done)
    assert report["log"]["source"] == "<stdin>"
    assert [m["signature_id"] for m in report["matches"]] == ["GD-LOG-005"]


def test_healthy_log_says_no_known_signature_and_exits_0() -> None:
    done = explain(str(LOGS / "healthy" / "vllm-serve_vllm-pr-12569.log"))
    assert done.returncode == 0, done.stderr
    out = done.stdout.decode()
    assert "no known failure signature found" in out
    assert "verdict: ✓ OK" in out


def test_warn_only_log_exits_1_and_table_shows_cause_and_fix() -> None:
    done = explain(str(LOGS / "threads" / "xid-063_ml-engineering.log"))
    assert done.returncode == 1, done.stderr
    out = done.stdout.decode()
    assert "WARN  GD-XID-063" in out and "0000:10:1C" in out
    assert "cause" in out and "fix" in out and "verdict: ! WARN" in out


def test_binary_junk_on_stdin_is_fine() -> None:
    junk = bytes(range(256)) * 4000 + b"\xc3\x28\xff" * 1000
    done = explain("-", "--format", "json", stdin=junk)
    assert done.returncode == 0, done.stderr
    assert report_of(done)["matches"] == []


def test_issue_example_no_kernel_image_on_sm120_with_cu124_torch() -> None:
    done = explain(
        str(LOGS / "threads" / "constructed_no-kernel-image_torch-cu124.log"),
        "--node",
        str(LOGS / "nodes" / "rtx5090_570.133.07_derived.json"),
        "--format",
        "json",
    )
    assert done.returncode == 2, done.stderr
    report = report_of(done)
    assert report["node"]["gpus"][0]["compute_capability"] == "12.0"
    (finding,) = report["findings"]
    assert finding["signature_id"] == "GD-LOG-020" and finding["severity"] == "fail"
    assert "CUDA 12.4" in finding["message"] and "12.0" in finding["message"]
    assert "cu128" in finding["fix"]
    assert finding["evidence"]["gpus[0].derived.compute_capability"] == "12.0"


@pytest.mark.parametrize(
    ("log", "xml", "signature_id", "words"),
    [
        (
            "corpus/21_flashattention-ampere-only_quadro-rtx5000-t4.txt",
            "Tesla-T4_515.105.01.xml",
            "GD-LOG-024",
            ["Tesla T4", "7.5"],
        ),
        (
            "corpus/25_sm120-not-compatible_then-no-kernel-image_sd-forge.txt",
            "B200_580.65.06.xml",
            "GD-LOG-020",
            ["B200", "Blackwell"],
        ),
        (
            "corpus/05_unsatisfied-cuda12.8_wsl-driver551.78.txt",
            "A100-SXM4-80GB_535.54.03.xml",
            "GD-LOG-040",
            ["535.54.03", "12.2", "cuda>=12.8"],
        ),
        (
            "corpus/27_err804-forward-compat-non-supported-hw_rtx3090-driver525-cuda12.1-container.txt",
            "RTX-4090_535.86.05.xml",
            "GD-LOG-002",
            ["RTX 4090", "forward-compatibility"],
        ),
        (
            "corpus/17_ptx-unsupported-toolchain_nvbandwidth-cuda13.2-driver580-8xH100.txt",
            "H800_580.65.06.xml",
            "GD-LOG-003",
            ["580.65.06", "13.0"],
        ),
        (
            "corpus/03_no-kernel-image_geforce820M-cc2.1-too-old.txt",
            "8x-Tesla-V100S-PCIE-32GB_460.73.01.xml",
            "GD-LOG-020",
            ["V100S", "7.0"],
        ),
    ],
)
def test_node_correlation_from_real_nvidia_smi_xml(
    log: str, xml: str, signature_id: str, words: list[str]
) -> None:
    done = explain(str(LOGS / log), "--node", str(XML / xml), "--format", "json")
    assert done.returncode == 2, done.stderr
    report = report_of(done)
    assert report["node"]["source"] == "nvidia-smi-xml"
    messages = [f["message"] for f in report["findings"] if f["signature_id"] == signature_id]
    assert messages, report["findings"]
    for word in words:
        assert word in messages[0], messages[0]


def test_correlation_that_does_not_hold_adds_nothing() -> None:
    # FlashAttention's Ampere check on an A100 node: the log's cause is not this node.
    done = explain(
        str(CORPUS / "21_flashattention-ampere-only_quadro-rtx5000-t4.txt"),
        "--node",
        str(XML / "A100-SXM4-80GB_535.54.03.xml"),
        "--format",
        "json",
    )
    report = report_of(done)
    assert report["findings"] == [] and [m["signature_id"] for m in report["matches"]] == ["GD-LOG-024"]


def test_unknown_node_facts_are_listed_as_unchecked_not_as_fine() -> None:
    # The XML has no fabric manager facts: the 802 correlation cannot be checked.
    done = explain(
        str(CORPUS / "09_err802-system-not-yet-initialized_bandwidthTest.txt"),
        "--node",
        str(XML / "H800_580.65.06.xml"),
        "--format",
        "json",
    )
    report = report_of(done)
    assert report["verdict"] == "fail"
    unchecked = {u["signature_id"]: u["missing_facts"] for u in report.get("unchecked", [])}
    assert any("fabric" in fact for fact in unchecked.get("GD-LOG-004", []))


def test_output_file_is_written(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    done = explain(
        str(CORPUS / "13_nvml-mismatch_unattended-upgrade.txt"), "--format", "json", "-o", str(target)
    )
    assert done.returncode == 2 and done.stdout == b""
    assert json.loads(target.read_text())["matches"][0]["signature_id"] == "GD-LOG-005"


def test_site_signature_directory(tmp_path: Path) -> None:
    (tmp_path / "site.yaml").write_text(
        "kind: signatures\nsignatures:\n  - id: GD-SITE-001\n    title: Launcher refused GPU\n    severity: warn\n"
        "    patterns: ['our-launcher: GPU (?P<gpu>\\d+) refused']\n    cause: 'GPU {captured.gpu} refused.'\n"
        "    fix: Drain it.\n    source: field report\n"
    )
    done = explain("-", "--rules", str(tmp_path), "--format", "json", stdin=b"our-launcher: GPU 3 refused\n")
    assert done.returncode == 1, done.stderr
    (match,) = report_of(done)["matches"]
    assert match["signature_id"] == "GD-SITE-001" and match["cause"] == "GPU 3 refused."


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["/nonexistent/app.log"], 66, "no such file"),
        ([str(LOGS)], 66, "is a directory"),
        (
            [str(CORPUS / "13_nvml-mismatch_unattended-upgrade.txt"), "--node", "/nonexistent.xml"],
            66,
            "no such file",
        ),
        (
            [
                str(CORPUS / "13_nvml-mismatch_unattended-upgrade.txt"),
                "--node",
                str(CORPUS / "13_nvml-mismatch_unattended-upgrade.txt"),
            ],
            65,
            "neither",
        ),
        (
            [
                str(CORPUS / "13_nvml-mismatch_unattended-upgrade.txt"),
                "--node",
                str(XML / "B200_580.65.06.xml"),
                "--scan",
            ],
            64,
            "exclusive",
        ),
    ],
)
def test_errors_are_one_line_with_documented_codes(args: list[str], code: int, words: str) -> None:
    done = explain(*args)
    assert done.returncode == code
    assert words in one_line_error(done)


def test_bad_site_signature_file_exits_65(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(
        "kind: signatures\nsignatures:\n  - id: GD-SITE-002\n    title: x\n    severity: warn\n    patterns: ['a.b']\n    cause: c\n    fix: f\n    source: field report\n"
    )
    done = explain("-", "--rules", str(tmp_path), stdin=b"x\n")
    assert done.returncode == 65
    assert "GD-SITE-002: field patterns[0]" in one_line_error(done)


def test_scan_option_uses_the_live_probe() -> None:
    done = explain(str(CORPUS / "13_nvml-mismatch_unattended-upgrade.txt"), "--scan", "--format", "json")
    assert done.returncode == 2, done.stderr
    assert report_of(done)["node"]["source"] == "live"


def test_version_does_not_import_the_explain_stack() -> None:
    code = "from gpudoctor.cli import main\ntry:\n    main(['--version'])\nexcept SystemExit:\n    pass\n"
    assert modules_loaded_by(code, ("yaml", "gpudoctor.explain", "rich")) == []


def test_correlation_with_fabric_and_nvlink_facts(tmp_path: Path) -> None:
    # A real A100 SXM4 XML, edited into the failing state the logs point at: fabric
    # manager down on an NVSwitch system, one GPU with two NVLinks down.
    from gpudoctor.nodeinput import load_node

    node = load_node(REPO / "fixtures" / "nvidia-smi" / "A100-SXM4-80GB_535.54.03.xml").to_dict()
    node["fabric"].update(nvswitch_count=6, fabric_manager_running=False)
    node["gpus"][0].update(nvlink_links_up=10, nvlink_links_total=12)
    facts = tmp_path / "node.json"
    facts.write_text(json.dumps({"node": node}))
    fabric = report_of(
        explain(
            str(CORPUS / "09_err802-system-not-yet-initialized_bandwidthTest.txt"),
            "--node",
            str(facts),
            "--format",
            "json",
        )
    )
    messages = [f["message"] for f in fabric["findings"] if f["signature_id"] == "GD-LOG-004"]
    assert any("Fabric Manager is not running" in m and "6" in m for m in messages), fabric["findings"]
    nvlink = report_of(
        explain(
            str(LOGS / "threads" / "constructed_nvlink-uncorrectable.log"),
            "--node",
            str(facts),
            "--format",
            "json",
        )
    )
    (finding,) = [f for f in nvlink["findings"] if f["signature_id"] == "GD-LOG-067"]
    assert "10" in finding["message"] and "12" in finding["message"] and finding["subjects"] == ["0"]


def test_node_summary_falls_back_to_the_gpu_table() -> None:
    # This saved report has no compute capability (old nvidia-smi XML); the GPU table knows it.
    node = REPO / "fixtures" / "facts" / "nodes" / "RTX-4090_535.86.05.json"
    assert json.loads(node.read_text())["gpus"][0]["compute_capability"] is None
    report = report_of(
        explain(
            str(CORPUS / "13_nvml-mismatch_unattended-upgrade.txt"), "--node", str(node), "--format", "json"
        )
    )
    assert report["node"]["gpus"][0]["compute_capability"] == "8.9"
    assert report["node"]["gpus"][0]["architecture"] == "ada"


def test_driver_branch_correlation_on_a_blackwell_node_with_an_old_driver(tmp_path: Path) -> None:
    # The derived B200 XML (fixtures/fleets) with its driver set back to R535.
    from gpudoctor.nodeinput import load_node

    node = load_node(XML / "B200_580.65.06.xml").to_dict()
    node["driver"].update(version="535.104.05", branch=535, cuda_version="12.2")
    facts = tmp_path / "node.json"
    facts.write_text(json.dumps({"node": node}))
    log = LOGS / "threads" / "gpu-not-supported-by-driver_pytorch-88352.log"
    report = report_of(explain(str(log), "--node", str(facts), "--format", "json"))
    (finding,) = [f for f in report["findings"] if f["signature_id"] == "GD-LOG-014"]
    assert "B200" in finding["message"] and "570" in finding["message"] and "535.104.05" in finding["message"]
    assert "R570+" in finding["fix"]


def test_dash_on_a_terminal_is_a_usage_error_not_a_hang() -> None:
    import os
    import pty

    leader, follower = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "gpudoctor", "explain", "-"],
            cwd=REPO,
            stdin=follower,
            capture_output=True,
            timeout=60,
        )
    finally:
        os.close(leader)
        os.close(follower)
    assert done.returncode == 64
    assert "stdin is a terminal" in one_line_error(done)


def test_table_shows_unchecked_correlations_too() -> None:
    # Same case as above, table form: what could not be checked is shown, not only in JSON.
    done = explain(
        str(CORPUS / "09_err802-system-not-yet-initialized_bandwidthTest.txt"),
        "--node",
        str(XML / "H800_580.65.06.xml"),
    )
    text = done.stdout.decode()
    assert "not checked on this node (facts unknown):" in text
    section = text.split("not checked on this node (facts unknown):", 1)[1]
    assert "GD-LOG-004" in section and "fabric" in section


def test_table_puts_node_correlated_cause_first() -> None:
    done = explain(
        str(LOGS / "corpus" / "25_sm120-not-compatible_then-no-kernel-image_sd-forge.txt"),
        "--node",
        str(LOGS / "nodes" / "rtx5090_570.133.07_derived.json"),
    )
    text = done.stdout.decode()
    assert text.index("on this node (log correlated with the node facts):") < text.index("GD-LOG-020  ")


def test_severities_coloured_on_a_terminal_as_in_every_command_and_never_with_no_color() -> None:
    log = str(CORPUS / "01_no-kernel-image_rtx4090-sm89_old-torch.txt")
    coloured = run_on_a_terminal(["explain", log], {"COLUMNS": "80"})
    assert "\x1b[1;31mFAIL" in coloured  # fail: bold red, gpudoctor/report/style.py
    assert "\x1b[1;31m✗ FAIL" in coloured  # the verdict line too
    plain = run_on_a_terminal(["explain", log], {"COLUMNS": "80", "NO_COLOR": "1"})
    assert "\x1b[" not in plain and "verdict: ✗ FAIL" in plain
    # Nothing is re-wrapped at 80 columns: each ref stays whole on its line.
    refs = [line for line in plain.splitlines() if line.lstrip().startswith("ref ")]
    assert refs and all(line.split()[-1].startswith("https://") for line in refs)
