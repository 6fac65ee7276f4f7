"""Hostile and broken input files (issue 18): every one ends at once with a one-line error
and its exit code (65 bad data, 66 unreadable), or, in `fleet`, as one invalid_reports
entry while the other files are still counted. bench/bench_hostile_inputs.py measures the
same cases' time and memory."""

from __future__ import annotations

import gzip
import json
import os
import tarfile
from pathlib import Path

import pytest

from gpudoctor.errors import BadInput, one_line
from gpudoctor.images.archive import MAX_ARCHIVE_MEMBERS
from gpudoctor.inputs import NODE_REPORT_MAX_BYTES
from tests.support.cli import run_gpudoctor
from tests.support.fleet import node_report

REPO = Path(__file__).resolve().parent.parent
T4 = REPO / "fixtures" / "nvidia-smi" / "Tesla-T4_515.105.01.xml"
ALIAS_BOMB = (
    (REPO / "bench" / "bench_hostile_inputs.py").read_text().split('ALIAS_BOMB = """')[1].split('"""')[0]
)


LIST_CONVERTER = """kind: signatures
signatures:
  - id: GD-LOG-990
    title: t
    severity: fail
    patterns: ['PCI (?P<pci>[0-9a-f:.]+) failed']
    cause: c
    fix: f
    refs: [https://docs.nvidia.com/deploy/xid-errors/index.html]
    source: vendor documentation
    convert: {pci: [pci]}
"""


def _one_line_error(done: object, code: int, *needles: str) -> None:
    assert done.returncode == code, (done.returncode, done.stderr)
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("gpudoctor: "), done.stderr
    assert "internal error" not in done.stderr
    for needle in needles:
        assert needle in done.stderr


def _fleet(tmp_path: Path, *extra: str) -> dict:
    done = run_gpudoctor("fleet", str(tmp_path), "--format", "json", *extra, timeout=60)
    assert done.returncode in (0, 1, 2, 3), done.stderr
    return json.loads(done.stdout)


def _special(path: Path, kind: str) -> bool:
    """Make `path` a FIFO ("fifo") or a symlink to /dev/zero ("dev-zero"); False for other kinds."""
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev-zero":
        path.symlink_to("/dev/zero")
    return kind in ("fifo", "dev-zero")


def _good_report(tmp_path: Path, name: str = "good.json", hostname: str = "good-host") -> None:
    (tmp_path / name).write_text(json.dumps(node_report("Tesla-T4_515.105.01", hostname)))


@pytest.mark.parametrize(
    "kind",
    ["fifo", "dev-zero", "loop", "outside", "list-verdict", "deep", "big-int", "oversize", "surrogate"],
)
def test_a_bad_file_in_a_fleet_is_one_invalid_entry(tmp_path: Path, kind: str) -> None:
    _good_report(tmp_path)
    bad = tmp_path / "bad.json"
    if _special(bad, kind):
        pass
    elif kind == "loop":
        bad.symlink_to(tmp_path / "other.json")
        (tmp_path / "other.json").symlink_to(bad)
    elif kind == "outside":
        outside = tmp_path.parent / f"{tmp_path.name}-elsewhere.json"
        outside.write_text(json.dumps(node_report("Tesla-T4_515.105.01", "elsewhere")))
        bad.symlink_to(outside)
    elif kind == "list-verdict":
        report = node_report("Tesla-T4_515.105.01", "listy")
        report["verdict"] = ["ok"]
        report["findings"] = [{"rule_id": "GD-X-001", "severity": ["fail"]}]
        bad.write_text(json.dumps(report))
    elif kind == "deep":
        bad.write_text("[" * 100_000 + "]" * 100_000)
    elif kind == "big-int":
        bad.write_text('{"schema_version": "1.0", "x": ' + "9" * 5000 + "}")
    elif kind == "oversize":
        with open(bad, "wb") as handle:
            handle.truncate(NODE_REPORT_MAX_BYTES + 1)
    elif kind == "surrogate":  # json.dumps escapes it as \ud800; no UTF-8 output can carry it
        bad.write_text(json.dumps(node_report("Tesla-T4_515.105.01", "\ud800")))
    fleet = _fleet(tmp_path)
    assert fleet["nodes_total"] == 1
    invalid = {Path(item["path"]).name: item["error"] for item in fleet["invalid_reports"]}
    assert "bad.json" in invalid and "\n" not in invalid["bad.json"], invalid
    assert "internal error" not in invalid["bad.json"]


@pytest.mark.parametrize("option", ["--what-if", "--image"])
def test_a_report_malformed_beyond_the_class_facts_is_one_invalid_entry(tmp_path: Path, option: str) -> None:
    """Loading checks only the facts classes read; --what-if and --image read the class's
    representative whole, where a malformed other fact ended the run in exit 70 (found by
    the red-team run). It is one invalid entry, and the next node of the class stands in."""
    from tests.support.services import docker_save_tar

    value = "driver=580.65.06"
    if option == "--image":
        env = json.loads((REPO / "fixtures/images/nvidia-cuda_12.1.1-base-ubuntu2204_amd64.json").read_text())
        value = str(docker_save_tar(tmp_path / "image.tar", env["env"], "example.test/cuda:12.1"))
    reports = tmp_path / "reports"
    reports.mkdir()
    report = node_report("Tesla-T4_515.105.01", "bad-host")
    report["node"]["source"] = ["nvidia-smi-xml"]
    (reports / "a-bad.json").write_text(json.dumps(report))  # first in walk order: the representative
    _good_report(reports, "b-good.json")
    fleet = _fleet(reports, option, value)
    assert fleet["nodes_total"] == 1
    assert [Path(item["path"]).name for item in fleet["invalid_reports"]] == ["a-bad.json"]
    assert "NodeFacts.source: expected a string" in fleet["invalid_reports"][0]["error"]


def test_a_driver_version_of_thousands_of_digits_in_a_recorded_tree(tmp_path: Path) -> None:
    """/proc/driver/nvidia/version naming a 5,000-digit driver: int() of it was exit 70
    (found by the red-team run); the branch is unknown instead."""
    import shutil

    from gpudoctor.pipeline import diagnose
    from gpudoctor.probes.collect import collect_node

    root = tmp_path / "tree"
    shutil.copytree(REPO / "fixtures" / "sysfs" / "acs-on", root, symlinks=True)
    version = root / "proc" / "driver" / "nvidia" / "version"
    version.write_text(version.read_text().replace("580.65.06", "9" * 5000 + ".65.06"))
    node = collect_node(sysfs_root=str(root))
    assert node.driver.branch is None
    assert diagnose(node)["verdict"] in ("warn", "unknown", "fail")


def test_a_host_reported_twice_is_counted_once(tmp_path: Path) -> None:
    _good_report(tmp_path, "a.json", "same-host")
    _good_report(tmp_path, "b.json", "same-host")
    fleet = _fleet(tmp_path)
    assert fleet["nodes_total"] == 1
    assert [(Path(i["path"]).name, i["error"]) for i in fleet["invalid_reports"]] == [
        ("b.json", f"hostname 'same-host' already reported by {tmp_path / 'a.json'}")
    ]


@pytest.mark.parametrize(
    ("command", "content", "code", "needle"),
    [
        ("node", "fifo", 66, "is a FIFO"),
        ("node", "dev-zero", 66, "is a device"),
        ("node", "oversize", 65, "larger than 64 MiB"),
        ("node", "deep-json", 65, "nested too deeply"),
        ("node", "big-int-json", 65, "malformed JSON"),
        ("node", "empty-gpus", 65, "more than the 256"),
        ("node", "big-int-xml", 0, ""),
        ("node", "utf16-entity", 65, "entity declarations"),
        ("explain", "fifo", 66, "is a FIFO"),
        ("lint", "alias-bomb", 65, "expand it to more than"),
        ("lint", "big-int-yaml", 65, "invalid YAML"),
        ("lint", "fifo", 66, "is a FIFO"),
        ("lint", "list-table", 65, "field table"),
        ("lint", "list-converter", 65, "field convert.pci"),
    ],
)
def test_bad_input_files_are_one_line_errors(
    tmp_path: Path, command: str, content: str, code: int, needle: str
) -> None:
    path = tmp_path / ("input.yaml" if command == "lint" else "input.xml")
    if _special(path, content):
        pass
    elif content == "oversize":
        with open(path, "wb") as handle:
            handle.truncate(NODE_REPORT_MAX_BYTES + 1)
    elif content == "deep-json":
        path.write_text("[" * 100_000 + "]" * 100_000)
    elif content == "big-int-json":
        path.write_text('{"node": {"driver": {"branch": ' + "9" * 5000 + "}}}")
    elif content == "empty-gpus":
        path.write_bytes(b"<nvidia_smi_log>" + b"<gpu/>" * 170_000 + b"</nvidia_smi_log>")
    elif content == "big-int-xml":
        text = T4.read_text()
        path.write_text(text.replace("<attached_gpus>1<", "<attached_gpus>" + "9" * 5000 + "<"))
    elif content == "utf16-entity":
        xml = (
            '<?xml version="1.0" encoding="UTF-16"?>\n<!DOCTYPE nvidia_smi_log [<!ENTITY v "999.99.99">]>\n'
            "<nvidia_smi_log><driver_version>&v;</driver_version></nvidia_smi_log>\n"
        )
        path.write_bytes(xml.encode("utf-16-le"))
    elif content == "alias-bomb":
        path.write_text(ALIAS_BOMB)
    elif content == "list-table":
        path.write_text("kind: matrix\ntable: [gpus]\nrows: []\n")
    elif content == "list-converter":
        path.write_text(LIST_CONVERTER)
    elif content == "big-int-yaml":
        path.write_text("kind: rules\nrules: [" + "9" * 5000 + "]\n")
    argv = {
        "node": ["scan", "--from-nvidia-smi", str(path)],
        "explain": ["explain", str(path)],
        "lint": ["rules", "lint", str(path)],
    }[command]
    done = run_gpudoctor(*argv, timeout=30)
    if code == 0:  # an absurd attached-GPU count is no number: the XML is still read
        assert done.returncode in (0, 1, 2, 3) and "internal error" not in done.stderr, done.stderr
        return
    _one_line_error(done, code, str(path), needle)


def test_an_archive_of_too_many_members_is_refused(tmp_path: Path) -> None:
    from gpudoctor.images.archive import _open

    path = tmp_path / "headers.tgz"  # one empty member's header, repeated: the reported bomb's shape
    header = tarfile.TarInfo("empty").tobuf()
    path.write_bytes(gzip.compress(header * (MAX_ARCHIVE_MEMBERS + 1) + b"\0" * 1024, 1))
    with pytest.raises(BadInput, match="more than 50000 members"), _open(path):
        pass


def test_error_messages_are_one_capped_line() -> None:
    text = one_line("a\nb" + "x" * 10_000_000)
    assert "\n" not in text and len(text) <= 1000 and text.startswith("a\\nb")


@pytest.mark.parametrize("fmt", ["json", "table"])
def test_an_image_config_with_a_lone_surrogate_is_shown_escaped(tmp_path: Path, fmt: str) -> None:
    """JSON may escape half a UTF-16 pair ("\\udfff"), as Go's encoder never would; the image
    is still judged and its text shown escaped, where writing it ended in exit 70 (found by
    the red-team run)."""
    from tests.support.services import docker_save_tar

    env = json.loads((REPO / "fixtures/images/nvidia-cuda_12.1.1-base-ubuntu2204_amd64.json").read_text())[
        "env"
    ]
    env["NVIDIA_REQUIRE_CUDA"] += " \udfff"
    tar = docker_save_tar(tmp_path / "image.tar", env, "example.test/cuda:12.1")
    done = run_gpudoctor("preflight", str(tar), "--node", str(T4), "--format", fmt, timeout=60)
    assert done.returncode in (0, 1, 2, 3), done.stderr
    assert "\\udfff" in done.stdout


@pytest.mark.parametrize(("content", "code"), [("fifo", 66), ("dev-zero", 66), ("deep", 65), ("big-int", 65)])
def test_a_hostile_docker_config_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str, code: int
) -> None:
    """$DOCKER_CONFIG/config.json is read when a registry asks for credentials: a FIFO there
    blocked preflight forever, deep JSON was exit 70 (found by the red-team run)."""
    from gpudoctor.errors import GpudoctorError
    from gpudoctor.images.auth import credentials_for

    config = tmp_path / "config.json"
    if not _special(config, content):
        auths = {"deep": "[" * 100_000 + "]" * 100_000, "big-int": "9" * 5000}[content]
        config.write_text('{"auths": ' + auths + "}")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    with pytest.raises(GpudoctorError) as error:
        credentials_for("registry.example.test")
    assert error.value.exit_code == code
    assert str(config) in str(error.value) and "\n" not in str(error.value)


def test_an_oci_layout_whose_blobs_lead_out_of_it_is_refused(tmp_path: Path) -> None:
    """os.walk enters a symlink given as its top: `kernels` on a layout whose blobs -> /
    walked the whole host and ended in exit 70 on a vanished /proc file (found by the
    red-team run)."""
    layout = tmp_path / "layout"
    layout.mkdir()
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (layout / "index.json").write_text('{"schemaVersion": 2, "manifests": []}')
    (layout / "blobs").symlink_to("/")
    done = run_gpudoctor("kernels", str(layout), "--gpu", "8.0", timeout=60)
    _one_line_error(done, 65, "blobs is a symlink")


def test_a_site_signature_of_a_huge_literal_is_prefiltered_at_once(tmp_path: Path) -> None:
    """The prefilter automaton's construction grew with the square of a literal's length: a
    signature of one 100,000-character literal kept `explain` busy for hours before the first
    line (found by the red-team run). Literals are cut; the regex still decides."""
    signature = LIST_CONVERTER.replace("'PCI (?P<pci>[0-9a-f:.]+) failed'", "x" * 100_000)
    signature = signature.replace("    convert: {pci: [pci]}\n", "")
    (tmp_path / "site.yaml").write_text(signature)
    log = tmp_path / "job.log"
    log.write_text("x" * 99_999 + "\nRuntimeError: CUDA error: out of memory\n")
    done = run_gpudoctor(
        "explain", str(log), "--rules", str(tmp_path / "site.yaml"), "--format", "json", timeout=30
    )
    assert done.returncode == 2, done.stderr
    found = {match["signature_id"] for match in json.loads(done.stdout)["matches"]}
    assert "GD-LOG-080" in found and "GD-LOG-990" not in found
