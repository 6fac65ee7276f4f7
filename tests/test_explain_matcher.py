"""The streaming matcher and the signature schema: chunk boundaries, line numbers,
binary junk, invalid UTF-8, the literal prefilter, validation errors."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from gpudoctor.errors import BadInput
from gpudoctor.explain import load_signatures
from gpudoctor.explain.incidents import MAX_EVIDENCE
from gpudoctor.explain.literals import every_necessary_literal, necessary_literals
from gpudoctor.explain.matcher import Matcher
from gpudoctor.explain.report import build_explain_report
from gpudoctor.explain.signatures import CONVERTERS
from gpudoctor.knowledge.loader import load_file

SIGNATURES = load_signatures().signatures
MATCHER = Matcher(SIGNATURES)
# The bytes.find fallback (no ahocorasick_rs wheel) must find exactly the same.
FALLBACK = Matcher(SIGNATURES, use_automaton=False)
BOTH = pytest.mark.parametrize("matcher", [MATCHER, FALLBACK], ids=["automaton", "find"])
NO_KERNEL = b"RuntimeError: CUDA error: no kernel image is available for execution on the device"
XID79 = b"NVRM: Xid (PCI:0000:3b:00): 79, pid=1, GPU has fallen off the bus."


def ids_and_lines(
    data: bytes, chunk: int = 8 * 1024 * 1024, matcher: Matcher = MATCHER
) -> dict[str, list[int]]:
    result = matcher.scan(io.BytesIO(data), chunk_bytes=chunk)
    report = build_explain_report(result, "test")
    return {m["signature_id"]: m["line_numbers"] for m in report["matches"]}


@BOTH
@pytest.mark.parametrize("chunk", [7, 64, 1000, 1 << 20])
def test_line_numbers_survive_any_chunk_size(chunk: int, matcher: Matcher) -> None:
    lines = [b"step %d loss 0.5" % i for i in range(300)]
    lines[41] = NO_KERNEL
    lines[250] = XID79
    data = b"\n".join(lines) + b"\n"
    assert ids_and_lines(data, chunk, matcher) == {"GD-LOG-020": [42], "GD-XID-079": [251]}


def test_last_line_without_newline_and_crlf() -> None:
    data = b"ok\r\nfine\r\n" + NO_KERNEL
    assert ids_and_lines(data) == {"GD-LOG-020": [3]}
    result = MATCHER.scan_bytes(data)
    assert result.lines == 3 and result.bytes_read == len(data)


@BOTH
def test_binary_junk_and_invalid_utf8_never_fail(matcher: Matcher) -> None:
    junk = bytes(range(256)) * 64 + b"\xff\xfe\xc3\x28 \xe2\x82" + b"\x00" * 1000
    data = junk + b"\n" + b"\xff\xfe" + NO_KERNEL + b"\xc3\x28\n" + junk
    found = ids_and_lines(data, 333, matcher)
    assert found == {"GD-LOG-020": [junk.count(b"\n") + 2]}


@BOTH
def test_giant_line_without_newline_is_bounded_and_still_matched(matcher: Matcher) -> None:
    data = b"x" * (3 * 1024 * 1024) + b" " + XID79 + b" " + b"y" * (2 * 1024 * 1024)
    assert "GD-XID-079" in ids_and_lines(data, 256 * 1024, matcher)


def test_upper_and_lower_case_both_match() -> None:
    assert "GD-LOG-044" in ids_and_lines(b"exec /usr/bin/python: EXEC FORMAT ERROR\n")
    assert "GD-LOG-044" in ids_and_lines(b'{"msg":"exec container process: Exec format error"}\n')


def test_repeated_failures_are_counted_but_kept_bounded() -> None:
    data = (XID79 + b"\n") * 5000
    report = build_explain_report(MATCHER.scan_bytes(data), "test")
    (match,) = report["matches"]
    assert match["count"] == 5000
    assert (match["first_line"], match["last_line"]) == (1, 5000)
    assert len(match["line_numbers"]) <= MAX_EVIDENCE
    assert match["line_numbers"] == [1]  # the first occurrence; the rest are counted


def test_required_patterns_must_all_be_present() -> None:
    hang = b"the allreduce hangs forever on both GPUs\n"
    fixed = b"setting NCCL_P2P_DISABLE=1 makes it work\n"
    assert "GD-LOG-061" not in ids_and_lines(hang)
    assert "GD-LOG-061" not in ids_and_lines(fixed)
    assert ids_and_lines(hang + b"other\n" + fixed)["GD-LOG-061"] == [1, 3]


def test_exclusion_keeps_a_line_out_of_the_evidence() -> None:
    # The driver-API form belongs to GD-LOG-021, not to the generic no-kernel-image signature.
    line = b"CUDADriverError: CUDA_ERROR_NO_BINARY_FOR_GPU: no kernel image is available for execution on the device\n"
    assert set(ids_and_lines(line)) == {"GD-LOG-021"}


def test_two_gpus_are_two_incidents_each_with_its_own_converted_value() -> None:
    data = (
        b"NVRM: Xid (PCI:0000:3b:00): 79, pid=1, GPU has fallen off the bus.\n"
        b"NVRM: Xid (PCI:0000:5e:00): 79, pid=2, GPU has fallen off the bus.\n"
        b"NVRM: Xid (PCI:0000:3b:00): 79, pid=3, GPU has fallen off the bus.\n"
    )
    report = build_explain_report(MATCHER.scan_bytes(data), "test")
    first, second = report["matches"]
    assert (first["captured"], first["count"], first["first_line"], first["last_line"]) == (
        {"pci": "0000:3B:00"},
        2,
        1,
        3,
    )
    assert (second["captured"], second["count"], second["line_numbers"]) == ({"pci": "0000:5E:00"}, 1, [2])
    assert "0000:3B:00" in first["cause"] and "0000:5E:00" in second["cause"]


def test_one_failure_told_twice_on_consecutive_lines_is_one_incident() -> None:
    # bandwidthTest prints the 802 twice in other words (fixtures/logs/corpus/09_...): one
    # occurrence. The same words again later, or far apart, are further occurrences.
    told = b"-> system not yet initialized\nCUDA error at bandwidthTest.cu:256 code=802(cudaErrorSystemNotReady)\n"
    report = build_explain_report(MATCHER.scan_bytes(told + b"other\n" * 10 + told), "test")
    (match,) = [m for m in report["matches"] if m["signature_id"] == "GD-LOG-004"]
    assert match["line_numbers"] == [1, 2]
    assert (match["count"], match["last_line"]) == (4, 14)
    far = build_explain_report(MATCHER.scan_bytes(told.replace(b"\nC", b"\n" + b"x\n" * 5 + b"C")), "test")
    assert [m["line_numbers"] for m in far["matches"] if m["signature_id"] == "GD-LOG-004"] == [[1], [7]]


@pytest.mark.parametrize(
    ("pattern", "literals"),
    [
        (r"no kernel image is available", ["no kernel image is available"]),
        (
            r"(?:forward compat\w+|cudaErrorCompatNotSupportedOnDevice)",
            ["cudaerrorcompatnotsupportedondevice", "forward compat"],
        ),
        (r"^\s*NVRM: Xid \((?:PCI:)?(?P<pci>[0-9a-f:.]+)\): 79\b", ["nvrm: xid ("]),
        (r"sm_(?P<sm>\d+) is not compatible", [" is not compatible"]),
        (r"(?:ab|cd)+x", None),
        (r"a.b.c", None),
    ],
)
def test_necessary_literals(pattern: str, literals: list[str] | None) -> None:
    assert necessary_literals(pattern) == literals


def test_overlapping_literals_on_one_line_all_count() -> None:
    # "nvidia driver on your system is too old" overlaps "driver on your system is too old (found
    # version ": the block-wide search reports one; the line is searched again for all of them.
    line = b"RuntimeError: The NVIDIA driver on your system is too old (found version 12040).\n"
    report = build_explain_report(MATCHER.scan_bytes(line), "test")
    (match,) = report["matches"]
    assert match["captured"] == {"driver_cuda": "12.4"}


def test_fallback_and_automaton_agree_on_every_fixture_log() -> None:
    logs = Path(__file__).resolve().parent.parent / "fixtures" / "logs"
    for path in sorted(logs.rglob("*")):
        if path.suffix in (".log", ".txt"):
            data = path.read_bytes()
            fast = build_explain_report(MATCHER.scan_bytes(data), "x")["matches"]
            slow = build_explain_report(FALLBACK.scan_bytes(data), "x")["matches"]
            assert fast == slow, path.name


def test_prefilter_literals_are_in_every_line_the_regex_matches() -> None:
    """The prefilter is sound on every fixture line: a line a pattern matches contains one of its
    literals, and each of the literals said to be in every match."""
    logs = Path(__file__).resolve().parent.parent / "fixtures" / "logs"
    lines = [
        line
        for path in sorted(logs.rglob("*"))
        if path.suffix in (".log", ".txt")
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines()
    ]
    checked = 0
    for signature in SIGNATURES:
        for pattern in signature.patterns:
            assert pattern.literals and all(lit == lit.lower() for lit in pattern.literals)
            for line in lines:
                if pattern.regex.search(line):
                    checked += 1
                    assert any(lit in line.lower() for lit in pattern.literals), (signature.id, line)
                    assert all(lit in line.lower() for lit in pattern.every), (signature.id, line)
    assert checked > 100
    assert sum(bool(p.every) for s in SIGNATURES for p in s.patterns) > 50


@pytest.mark.parametrize(
    ("pattern", "every"),
    [
        # The Xid code after an alternation: each line of another code is ruled out by "13".
        (r"(?:NVRM: Xid \((?:PCI:)?(?P<pci>[0-9a-f:.]+)\): |\bXid[ =:#]{0,3})13\b", ["13"]),
        (r"NVRM: Xid \([^)]*\): 31, pid=(?P<pid>\d+)", ["): 31, pid=", "nvrm: xid ("]),
        (r"(?:ab|cd)x?", []),  # each branch, not both
        (r"out of memory(?:: (?P<what>\w+))?", ["out of memory"]),  # optional parts say nothing
    ],
)
def test_every_necessary_literal(pattern: str, every: list[str]) -> None:
    assert every_necessary_literal(pattern) == every


@pytest.mark.parametrize(
    ("name", "raw", "value"),
    [
        ("cuda_tag", "cu124", "12.4"),
        ("cuda_tag", "12080", "12.8"),
        ("cuda_tag", "13000", "13.0"),
        ("compute_capability", "sm_120", "12.0"),
        ("compute_capability", "89", "8.9"),
        ("compute_capability", "sm_90a", "9.0"),
        ("sm_list", "sm_50 sm_60 sm_90", "5.0, 6.0, 9.0"),
        ("pci", "0000:3b:00", "0000:3B:00"),
    ],
)
def test_converters(name: str, raw: str, value: str) -> None:
    assert CONVERTERS[name](raw) == value


GOOD = """kind: signatures
signatures:
  - id: GD-SITE-001
    title: Site-specific failure
    severity: warn
    patterns: ['our-launcher: GPU (?P<gpu>\\\\d+) refused']
    cause: "GPU {captured.gpu} refused the job."
    fix: Drain it.
    refs: [https://example.com/runbook]
    source: field report
"""


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (("\\\\d+) refused", "\\\\d+ refused"), "patterns[0]"),
        (("{captured.gpu}", "{captured.gpus}"), "cause"),
        (("our-launcher: GPU (?P<gpu>\\\\d+) refused", "(?P<gpu>\\\\d+)"), "patterns[0]"),
        (("severity: warn", "severity: fatal"), "severity"),
        (("refs: [https://example.com/runbook]", "refs: [not-a-url]"), "refs"),
        (("    source: field report\n", "    source: field report\n    colour: red\n"), "colour"),
    ],
)
def test_bad_signature_file_is_one_line_naming_file_id_and_field(
    tmp_path: Path, edit: tuple[str, str], field: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(GOOD.replace(*edit))
    assert path.read_text() != GOOD
    with pytest.raises(BadInput) as caught:
        load_file(path)
    message = str(caught.value)
    assert "\n" not in message
    assert str(path) in message and "GD-SITE-001" in message and f"field {field}" in message


def test_bad_correlation_condition_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        GOOD
        + "    correlate:\n      - when: {driver.branch: {lt_x: 5}}\n        severity: warn\n        message: x\n"
    )
    with pytest.raises(BadInput, match=r"GD-SITE-001: field correlate\[0\]\.when"):
        load_file(path)


def test_site_signature_loads_and_collision_needs_override(tmp_path: Path) -> None:
    (tmp_path / "site.yaml").write_text(GOOD)
    loaded = load_signatures([tmp_path])
    assert "GD-SITE-001" in loaded.by_id
    clash = tmp_path / "clash.yaml"
    clash.write_text(GOOD.replace("GD-SITE-001", "GD-LOG-020"))
    with pytest.raises(BadInput, match="GD-LOG-020: field id: already defined"):
        load_signatures([clash])
    clash.write_text(
        GOOD.replace("GD-SITE-001", "GD-LOG-020").replace("    source:", "    override: true\n    source:")
    )
    assert load_signatures([clash]).by_id["GD-LOG-020"].title == "Site-specific failure"
