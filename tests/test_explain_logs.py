"""Every signature against real logs: the expected diagnosis on each failure log
(corpus logs and lines from public threads), nothing at all on healthy logs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from gpudoctor.explain import load_signatures
from gpudoctor.explain.matcher import Matcher
from gpudoctor.explain.report import NO_MATCH, build_explain_report

LOGS = Path(__file__).resolve().parent.parent / "fixtures" / "logs"
EXPECTED: dict[str, dict[str, Any]] = yaml.safe_load((LOGS / "expected.yaml").read_text())
HEALTHY = sorted((LOGS / "healthy").glob("*.log"))
SIGNATURES = load_signatures()
MATCHER = Matcher(SIGNATURES.signatures)


def explain_file(path: Path) -> dict[str, Any]:
    with path.open("rb") as stream:
        return build_explain_report(MATCHER.scan(stream), str(path))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_failure_log_gets_its_diagnosis(name: str) -> None:
    expected = EXPECTED[name]
    report = explain_file(LOGS / name)
    found: dict[str, dict[str, Any]] = {}
    for match in report["matches"]:
        found.setdefault(match["signature_id"], match)  # the first incident of each
    assert set(found) == set(expected["ids"])
    for signature_id, values in expected.get("captured", {}).items():
        captured = found[signature_id]["captured"]
        for key, value in values.items():
            assert captured.get(key) == value, (signature_id, key, captured)
    for signature_id, incidents in expected.get("incidents", {}).items():
        # Separate incidents of one signature, each with its own values, in log order.
        got = [m["captured"] for m in report["matches"] if m["signature_id"] == signature_id]
        assert [{k: c.get(k) for k in want} for c, want in zip(got, incidents, strict=True)] == incidents
    for signature_id, values in expected.get("captured", {}).items():
        # The explanation uses the captured values, not placeholders.
        shown = found[signature_id]["cause"] + found[signature_id]["fix"]
        assert any(str(value) in shown for value in values.values()), (signature_id, shown)
    assert report["verdict"] in ("warn", "fail")
    for match in report["matches"]:
        assert match["line_numbers"] and match["excerpt"]
        assert "{" not in match["cause"] and "{" not in match["fix"]


def test_every_corpus_log_is_covered() -> None:
    corpus = {f"corpus/{p.name}" for p in (LOGS / "corpus").glob("*.txt")}
    assert corpus and corpus <= set(EXPECTED)


def test_every_signature_has_a_positive_case() -> None:
    covered = {signature_id for entry in EXPECTED.values() for signature_id in entry["ids"]}
    shipped = {s.id for s in SIGNATURES.signatures if s.catalog is None}
    assert shipped - covered == set()
    # Every catalog family is recognised in at least one real or constructed log.
    families = {s.catalog.id_prefix for s in SIGNATURES.signatures if s.catalog is not None}
    assert {f for f in families if not any(i.startswith(f + "-") for i in covered)} == set()


def test_at_least_thirty_signatures_each_with_refs_cause_and_fix() -> None:
    assert len(SIGNATURES.signatures) >= 30
    for signature in SIGNATURES.signatures:
        assert signature.refs or signature.source == "field report", signature.id
        if signature.catalog is not None:
            continue
        assert signature.cause.strip() and signature.fix.strip()


def test_thread_fixtures_name_their_source() -> None:
    for path in (LOGS / "threads").glob("*.log"):
        first = path.read_text(encoding="utf-8").splitlines()[0]
        assert first.startswith("# SOURCE: "), path.name
        assert "http" in first, path.name
        assert ("constructed" in first) == path.name.startswith("constructed_"), path.name


@pytest.mark.parametrize("path", HEALTHY, ids=[p.name for p in HEALTHY])
def test_healthy_log_has_no_match(path: Path) -> None:
    report = explain_file(path)
    assert report["matches"] == []
    assert report["verdict"] == "ok"
    assert report["summary"] == NO_MATCH


def test_all_healthy_logs_concatenated_have_no_match(tmp_path: Path) -> None:
    combined = tmp_path / "healthy.log"
    combined.write_bytes(b"".join(p.read_bytes() for p in HEALTHY) * 50)
    assert len(HEALTHY) >= 10
    assert explain_file(combined)["matches"] == []


@pytest.mark.parametrize(
    "line",
    [
        # Benign lines near the failure vocabulary: they must not be diagnosed.
        "NCCL INFO NCCL_P2P_DISABLE set by environment to 1.",
        "NCCL INFO Channel 00/0 : 0[0] -> 1[1] via P2P/CUMEM/read",
        "UserWarning: Found GPU0 Orin which is of compute capability (CC) 8.7.",
        "No published PyTorch CUDA builds for release 2.13.0+cu132 support this GPU.",
        "NVRM: loading NVIDIA UNIX x86_64 Kernel Module  580.65.06  Release Build",
        "NVRM: Xid (PCI:0000:3b:00): 45, pid=123, name=python3, Ch 00000010",
        "INFO 09-03 16:28:17 [gpu_worker.py:298] Available KV cache memory: 16.23 GiB",
        "Memory efficient kernel not used because: (Triggered internally at sdp_utils.cpp:545.)",
        "[rank0]: the error counter stayed at 0; no error was found",
        "FlashAttention 2 is available: using flash_attention_2 on 8x NVIDIA H100 80GB HBM3",
        "I0412 10:01:02.123 main.go:317] Ignoring the following XIDs for health checks: [13 31 43 45 68 109]",
        'DCGM_FI_DEV_XID_ERRORS{gpu="0",UUID="GPU-1b2c",Hostname="node-1"} 0',
        "UserWarning: Flash attention only supports gpu architectures in the range [sm80, sm90]. "
        "Attempting to run on a sm 7.5 gpu.",
        "[W socket.cpp:464] [c10d] The server socket has failed to bind to [::]:29500 (errno: 98 - Address already in use).",
        "WARNING 01-30 03:18:12 custom_all_reduce.py:134] Custom allreduce is disabled because it's not supported "
        "on more than two PCIe-only GPUs.",
    ],
)
def test_benign_lines_near_failure_words_do_not_match(line: str) -> None:
    report = build_explain_report(MATCHER.scan_bytes(line.encode() + b"\n"), "line")
    assert report["matches"] == [], report["matches"]


def test_xid_named_outside_the_kernel_log_format_still_gets_its_meaning() -> None:
    # Thread titles and chat logs name Xids without the NVRM prefix.
    report = build_explain_report(
        MATCHER.scan_bytes(b"[issue title] Xid 79 after a few hours of training\n"), "t"
    )
    (match,) = report["matches"]
    assert match["signature_id"] == "GD-XID-079"
    assert "PCI address not in the log" in match["cause"]
