"""The fuzz harness: strategies seeded from fixtures/ and one property for every parser of
an input gpudoctor reads: it returns a result or raises a one-line GpudoctorError (a
documented exit code), never anything else. tests/test_fuzz.py runs each briefly;
tools/fuzz.py runs the same properties for longer."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from gpudoctor.errors import MESSAGE_LIMIT, GpudoctorError

REPO = Path(__file__).resolve().parent.parent.parent
FIXTURES = REPO / "fixtures"

# Pieces a hostile or broken input is made of (each a bug class seen or feared).
HOSTILE = [
    b"",
    b"\x00",
    b"\xff\xfe",
    b"\xef\xbb\xbf",
    b"9" * 5000,
    b"-60",
    "٣²".encode(),
    b"\xe2\x80\xae",
    b"[" * 2000,
    b"{" * 2000,
    b"<gpu/>" * 50,
    b'<!DOCTYPE x [<!ENTITY a "999.99.99">]>',
    b"&a;",
    b"N/A",
    b"\r\n",
    b'"',
    b"null",
    b"true",
    b"[]",
    b"{}",
    b"&x: [*x]",
    b"*x",
    b"\t- ",
    b": ",
    b"1e400",
    b"NaN",
    b"sha256:",
    b"../../",
]


def seeds(*patterns: str) -> list[bytes]:
    found: list[bytes] = []
    for pattern in patterns:
        found.extend(path.read_bytes() for path in sorted(REPO.glob(pattern)) if path.is_file())
    return found


@st.composite
def mutated(draw: st.DrawFn, corpus: list[bytes]) -> bytes:
    """A seed with a few edits: cuts, hostile pieces inserted or replacing a slice, slices repeated."""
    data = bytearray(draw(st.sampled_from(corpus)))
    for _ in range(draw(st.integers(0, 4))):
        start = draw(st.integers(0, len(data)))
        end = draw(st.integers(start, min(len(data), start + 64)))
        edit = draw(st.sampled_from(("cut", "insert", "replace", "repeat", "flip")))
        if edit == "cut":
            del data[start:]
        elif edit == "insert":
            data[start:start] = draw(st.sampled_from(HOSTILE) | st.binary(max_size=16))
        elif edit == "replace":
            data[start:end] = draw(st.sampled_from(HOSTILE) | st.binary(max_size=16))
        elif edit == "repeat":
            data[start:start] = bytes(data[start:end]) * draw(st.integers(2, 50))
        elif edit == "flip" and start < len(data):
            data[start] ^= 1 << draw(st.integers(0, 7))
    return bytes(data)


def bytes_from(corpus: list[bytes]) -> st.SearchStrategy[bytes]:
    return mutated(corpus) | st.binary(max_size=256)


def one_line_error(error: GpudoctorError) -> None:
    """What every error the CLI prints must be: one line, capped (errors.one_line prints it)."""
    from gpudoctor.errors import one_line

    text = one_line(str(error))
    assert "\n" not in text and len(text) <= MESSAGE_LIMIT
    assert error.exit_code in (64, 65, 66, 69, 73), error.exit_code


def clean(work: Any, *args: Any) -> Any:
    """work(*args): its result, or None after a GpudoctorError; any other exception fails."""
    try:
        return work(*args)
    except GpudoctorError as error:
        one_line_error(error)
        return None


def in_temp_file(data: bytes, suffix: str, work: Any) -> Any:
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, f"input{suffix}")
        with open(path, "wb") as handle:
            handle.write(data)
        return work(path)


# --- the properties ------------------------------------------------------------------


def as_output(report: Any) -> bytes:
    """The report as `--format json` writes it: UTF-8 text (a lone surrogate cannot be)."""
    return json.dumps(report, ensure_ascii=False).encode("utf-8")


def nvidia_smi_xml(data: bytes) -> None:
    from gpudoctor.pipeline import diagnose
    from gpudoctor.probes.nvsmi_xml import parse_nvidia_smi_xml

    node = clean(parse_nvidia_smi_xml, data, "fuzz.xml")
    if node is not None:
        as_output(diagnose(node))


def node_json(data: bytes) -> None:
    from gpudoctor.nodeinput import node_from_report
    from gpudoctor.pipeline import diagnose

    node = clean(node_from_report, data, "fuzz.json")
    if node is not None:
        as_output(diagnose(node))


def fleet_file(data: bytes) -> None:
    from gpudoctor.fleet.load import InvalidReport, NodeRecord, read_record

    record = in_temp_file(data, ".json", lambda path: read_record(path, {}))
    assert isinstance(record, (NodeRecord, InvalidReport))
    if isinstance(record, InvalidReport):
        assert "\n" not in record.error and len(record.error) <= MESSAGE_LIMIT


def rule_file(data: bytes) -> None:
    from gpudoctor.knowledge.loader import KINDS, load_kind

    for kind in list(KINDS):
        in_temp_file(data, ".yaml", lambda path, kind=kind: clean(load_kind, kind, [Path(path)]))


def log(data: bytes) -> None:
    from gpudoctor.derive import build_context
    from gpudoctor.explain import load_signatures
    from gpudoctor.explain.matcher import Matcher
    from gpudoctor.explain.report import build_explain_report
    from gpudoctor.nodeinput import load_node

    node = load_node(FIXTURES / "nvidia-smi" / "Tesla-T4_515.105.01.xml")
    scan = Matcher(load_signatures().signatures).scan_bytes(data)
    as_output(build_explain_report(scan, "fuzz.log", node, build_context(node)))


def image_document(data: bytes) -> None:
    from gpudoctor.images import manifest as mf
    from gpudoctor.images.config import facts_from_config

    doc = clean(mf.load_json, data, "fuzz")
    if doc is None:
        return
    media_type = clean(mf.media_type_of, doc, None, "fuzz")
    if media_type is not None:
        clean(mf.parse, doc, media_type, "fuzz")
    clean(facts_from_config, doc, "fuzz/ref:1", "fixture")


def require(text: str) -> None:
    from gpudoctor.images.config import facts_from_config
    from gpudoctor.nodeinput import load_node
    from gpudoctor.pipeline import diagnose
    from gpudoctor.requirements import collect_requirements, evaluate_requirements

    node = load_node(FIXTURES / "nvidia-smi" / "Tesla-T4_515.105.01.xml")
    result = evaluate_requirements([text], node)
    assert result.satisfied in (True, False, None)
    collect_requirements({"NVIDIA_REQUIRE_CUDA": text, "CUDA_VERSION": text})
    # The whole image judgement too: forward compatibility reads the brand/driver terms.
    env = [f"NVIDIA_REQUIRE_CUDA={text}", "CUDA_VERSION=12.1.1"]
    image = facts_from_config(
        {"architecture": "amd64", "os": "linux", "config": {"Env": env}}, "fuzz/ref:1", "fixture"
    )
    as_output(diagnose(node, image))


def version(text: str, spec: str) -> None:
    from gpudoctor.versions import major_minor, parse_version, spec_contains, valid_specifier

    parse_version(text)
    major_minor(text)
    valid_specifier(spec)
    assert spec_contains(spec, text) in (True, False, None)


REQUIRE_PIECES = st.sampled_from(
    ["cuda>=12.0", "cuda", ">=", "<", "=", " ", ",", "brand=tesla", "driver>=470", "driver<471", "arch=sm_90",
     "arch", "cuda>=" + "9" * 5000, "cuda>=12.0.0.0.0", "brand=", "٣", "\x00", "driver>=", "-1"]
)  # fmt: skip
REQUIRE_TEXT = st.lists(REQUIRE_PIECES, max_size=8).map("".join) | st.text(max_size=40)
VERSION_TEXT = st.sampled_from(
    ["12.4", "580.65.06", "1.2.3rc1", "9" * 5000, "", "v1", "1..2", "٣"]
) | st.text(max_size=20)
SPEC_TEXT = st.sampled_from([">=570,<580", "==12.*", ">=", "~=1", "!=", ">=" + "9" * 5000]) | st.text(
    max_size=20
)


def corpus(name: str) -> list[bytes]:
    patterns = {
        "xml": ("fixtures/nvidia-smi/*.xml",),
        "node": ("fixtures/facts/nodes/*.json",),
        "fleet": ("fixtures/fleets/demo/*.json", "fixtures/fleets/nvidia-smi/*.xml"),
        "rules": ("rules/*/*.yaml",),
        "log": ("fixtures/logs/corpus/*",),
        "image": ("fixtures/images/*.json",),
    }[name]
    found = seeds(*patterns)
    # Long seeds make slow examples; the start of each carries the structure.
    return [seed[:20_000] for seed in found] or [b""]
