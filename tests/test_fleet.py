"""gpudoctor fleet: node classes from real node reports, robust loading, outputs."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
from pathlib import Path

import jsonschema
import pytest

from gpudoctor.exitcodes import worst
from gpudoctor.fleet.build import build_fleet
from tests.support.cli import run_gpudoctor
from tests.support.fleet import node_report, with_changes, write_fleet
from tests.support.imports import modules_loaded_by

SCHEMA = json.loads(
    (
        Path(__file__).resolve().parent.parent / "gpudoctor" / "fleet" / "schema" / "fleet.schema.json"
    ).read_text()
)
MIXED = {
    "A100-SXM4-80GB_535.54.03": 4,
    "4x-Tesla-K80_430.26": 3,
    "Tesla-T4_515.105.01": 2,
    "RTX-3080_595.58.03": 1,
}


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return run_gpudoctor(*args, cwd=cwd)


def class_by_model(document: dict, model: str) -> dict:
    (found,) = [c for c in document["classes"] if model in c["gpu_models"]]
    return found


def test_classes_count_nodes_and_keep_the_worst_verdict(tmp_path: Path) -> None:
    write_fleet(tmp_path, MIXED)
    document = build_fleet([str(tmp_path)])
    jsonschema.validate(document, SCHEMA)
    assert document["nodes_total"] == 10
    assert document["invalid_reports"] == []
    assert len(document["classes"]) == 4
    k80 = class_by_model(document, "Tesla K80")
    assert k80["gpu_models"] == "4x Tesla K80"
    assert k80["driver_branch"] == "430"
    assert k80["nodes"] == 3
    expected = node_report("4x-Tesla-K80_430.26")
    assert k80["verdict"] == expected["verdict"]
    rules = {f["rule_id"]: f["nodes"] for f in k80["findings"]}
    assert rules == {f["rule_id"]: 3 for f in expected["findings"]}
    assert class_by_model(document, "A100-SXM4-80GB")["nodes"] == 4
    assert document["verdict"] == worst(c["verdict"] for c in document["classes"])
    # Worst class first.
    ranks = ["ok", "info", "warn", "unknown", "fail"]
    verdicts = [ranks.index(c["verdict"]) for c in document["classes"]]
    assert verdicts == sorted(verdicts, reverse=True)


def test_findings_count_nodes_not_gpus_and_worst_nodes_come_first(tmp_path: Path) -> None:
    base = node_report("A100-SXM4-80GB_535.54.03")
    healthy = with_changes(base, host={**base["node"]["host"], "hostname": "a100-healthy"})
    healthy["findings"], healthy["verdict"] = [], "ok"
    sick = with_changes(base, host={**base["node"]["host"], "hostname": "a100-sick"})
    broken = {
        "rule_id": "GD-TEST-FAIL",
        "severity": "fail",
        "title": "made-up failure",
        "message": "m",
        "fix": "f",
        "refs": [],
    }
    # The same rule for two GPUs of one node is one node with the finding.
    sick["findings"] = [broken, broken]
    sick["verdict"] = "fail"
    (tmp_path / "healthy.json").write_text(json.dumps(healthy))
    (tmp_path / "sick.json").write_text(json.dumps(sick))
    document = build_fleet([str(tmp_path)])
    (a100,) = document["classes"]
    assert a100["verdict"] == "fail"
    assert a100["verdicts"] == {"ok": 1, "fail": 1}
    assert a100["findings"] == [
        {"rule_id": "GD-TEST-FAIL", "severity": "fail", "title": "made-up failure", "nodes": 1}
    ]
    assert [n["hostname"] for n in a100["worst_nodes"]] == ["a100-sick", "a100-healthy"]


CORRUPTIONS = {
    "truncated.json": lambda good: good[: len(good) // 2],
    "cut-in-string.json": lambda good: good[: good.index('"name"') + 4],
    "empty.json": lambda good: "",
    "garbage.json": lambda good: "\x00\x01not json at all",
    "list.json": lambda good: "[1, 2, 3]",
    "future.json": lambda good: good.replace('"schema_version": "1.0"', '"schema_version": "2.0"', 1),
    "noschema.json": lambda good: json.dumps({"hello": "world"}),
    "badverdict.json": lambda good: good.replace('"verdict": "', '"verdict": "great', 1),
    "badnode.json": lambda good: json.dumps({**json.loads(good), "node": {"gpus": "eight"}}),
    "badgpu.json": lambda good: json.dumps(
        {**json.loads(good), "node": {**json.loads(good)["node"], "gpus": [{"name": 5}]}}
    ),
    "badbranch.json": lambda good: good.replace('"branch": 515', '"branch": "five"', 1),
    "deep.json": lambda good: "[" * 100_000,
    "bigint.json": lambda good: good.replace('"schema_version": "1.0"', '"schema_version": ' + "9" * 30, 1),
    "preflight.json": lambda good: json.dumps({**json.loads(good), "image": {"reference": "x"}}),
    "badxml.xml": lambda good: "<?xml version='1.0'?><nvidia_smi_log><gpu>",
}


def test_every_bad_file_is_listed_with_a_reason_and_every_good_one_used(tmp_path: Path) -> None:
    write_fleet(tmp_path, MIXED)
    good = json.dumps(node_report("Tesla-T4_515.105.01"), indent=2)
    for name, corrupt in CORRUPTIONS.items():
        (tmp_path / name).write_text(corrupt(good), encoding="utf-8", errors="surrogateescape")
    (tmp_path / "notes.txt").write_text("not a report name: skipped in directories")
    (tmp_path / ".gpudoctor.json.tmp").write_text("half written")
    document = build_fleet([str(tmp_path)])
    jsonschema.validate(document, SCHEMA)
    assert document["nodes_total"] == 10
    listed = {Path(item["path"]).name: item["error"] for item in document["invalid_reports"]}
    assert set(listed) == set(CORRUPTIONS)
    assert document["invalid_total"] == len(CORRUPTIONS)
    assert all("\n" not in error and error for error in listed.values())
    assert listed["truncated.json"].startswith("truncated JSON")
    assert listed["cut-in-string.json"].startswith("truncated JSON")
    assert listed["empty.json"] == "empty file"
    assert listed["preflight.json"].startswith("a preflight report (node + image)")
    assert listed["deep.json"] == "not a gpudoctor report: JSON nested too deeply"
    assert listed["bigint.json"] == "not a gpudoctor report: no schema_version"
    assert "schema_version '2.0'" in listed["future.json"]
    assert "no schema_version" in listed["noschema.json"]
    assert "top level is a JSON list" in listed["list.json"]
    assert "bad verdict" in listed["badverdict.json"]
    assert listed["badnode.json"] == "bad report: node.gpus is not a list"
    assert listed["badgpu.json"] == "bad report: node.gpus[0].name is int, not str"
    assert listed["badbranch.json"] == "bad report: node.driver.branch is str, not int"


def test_cli_json_output_is_atomic_and_valid(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet"
    write_fleet(fleet, MIXED)
    (fleet / "truncated.json").write_text('{"schema_version": "1.0", "node": {')
    out = tmp_path / "out" / "fleet.json"
    out.parent.mkdir()
    result = run_cli("fleet", str(fleet), "--format", "json", "--output", str(out))
    document = json.loads(out.read_text())
    jsonschema.validate(document, SCHEMA)
    assert result.returncode == {"ok": 0, "info": 0, "warn": 1, "fail": 2, "unknown": 3}[document["verdict"]]
    assert result.stdout == ""
    assert "1 invalid report file(s)" in result.stderr
    assert os.listdir(out.parent) == ["fleet.json"]
    assert document["nodes_total"] == 10


def test_cli_csv_has_a_row_per_class_and_lists_invalid_files(tmp_path: Path) -> None:
    write_fleet(tmp_path, MIXED)
    (tmp_path / "broken.json").write_text("{")
    result = run_cli("fleet", str(tmp_path), "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert sum(int(r["nodes"]) for r in rows if r["key"] != "INVALID") == 10
    assert len([r for r in rows if r["key"] != "INVALID"]) == 4
    (invalid,) = [r for r in rows if r["key"] == "INVALID"]
    assert "broken.json" in invalid["findings"]


def test_cli_table_names_classes_and_invalid_files(tmp_path: Path) -> None:
    write_fleet(tmp_path, MIXED)
    (tmp_path / "broken.json").write_text("[]")
    result = run_cli("fleet", str(tmp_path))
    assert "10 nodes in 4 classes" in result.stdout
    assert "4x Tesla K80" in result.stdout
    assert "broken.json: not a gpudoctor report" in result.stdout


@pytest.mark.parametrize(
    ("setup", "code", "message"),
    [
        ("missing", 66, "no such file or directory"),
        ("empty-dir", 66, "no report files"),
        ("all-invalid", 65, "no valid node report among 1 file(s)"),
    ],
)
def test_cli_errors_are_one_line_with_documented_codes(
    tmp_path: Path, setup: str, code: int, message: str
) -> None:
    target = tmp_path / "in"
    if setup != "missing":
        target.mkdir()
    if setup == "all-invalid":
        (target / "x.json").write_text("{")
    result = run_cli("fleet", str(target))
    assert result.returncode == code
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_cli_output_to_an_unwritable_place_is_exit_73(tmp_path: Path) -> None:
    write_fleet(tmp_path / "fleet", {"Tesla-T4_515.105.01": 1})
    result = run_cli(
        "fleet", str(tmp_path / "fleet"), "--format", "json", "-o", str(tmp_path / "nope" / "x.json")
    )
    assert result.returncode == 73
    assert "cannot write" in result.stderr


def test_json_format_does_not_import_rich(tmp_path: Path) -> None:
    write_fleet(tmp_path, {"Tesla-T4_515.105.01": 2})
    code = (
        "from gpudoctor.cli import main\n"
        f"try:\n    main(['fleet', {str(tmp_path)!r}, '--format', 'json'])\n"
        "except SystemExit:\n    pass\n"
    )
    assert modules_loaded_by(code, ("rich",)) == []


def test_demo_fleet_in_the_readme() -> None:
    demo = Path(__file__).resolve().parent.parent / "fixtures" / "fleets" / "demo"
    document = build_fleet([str(demo)])
    jsonschema.validate(document, SCHEMA)
    assert document["nodes_total"] == 18
    assert document["invalid_reports"] == []
    nodes = {c["gpu_models"]: c["nodes"] for c in document["classes"]}
    assert nodes["1x NVIDIA B200"] == 4
    assert nodes["1x NVIDIA H800"] == 3
    assert nodes["1x NVIDIA A800-SXM4-80GB"] == 6
    assert len(nodes) == 7


def test_nvidia_smi_xml_is_accepted_as_a_node_report(tmp_path: Path) -> None:
    xml_dir = Path(__file__).resolve().parent.parent / "fixtures" / "fleets" / "nvidia-smi"
    document = build_fleet([str(xml_dir / "H800_580.65.06.xml"), str(xml_dir / "Tesla-T4_515.105.01.xml")])
    assert document["nodes_total"] == 2
    (h800,) = [c for c in document["classes"] if c["gpu_models"] == "1x NVIDIA H800"]
    assert (h800["driver_branch"], h800["driver_cuda"]) == ("580", "13.0")
    assert (
        h800["worst_nodes"][0]["hostname"] == "H800_580.65.06"
    )  # XML has no hostname: the file name stands in


def test_parallel_parsing_gives_the_same_document(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gpudoctor.fleet.build as fleet_build

    write_fleet(tmp_path, MIXED)
    (tmp_path / "zz-broken.json").write_text("{")
    sequential = build_fleet([str(tmp_path)])
    monkeypatch.setattr(fleet_build, "PARALLEL_FROM", 1)
    assert fleet_build._workers(11) > 1 or len(os.sched_getaffinity(0)) == 1
    assert build_fleet([str(tmp_path)]) == sequential


def test_identical_xml_captures_are_each_counted(tmp_path: Path) -> None:
    xml = (
        Path(__file__).resolve().parent.parent
        / "fixtures"
        / "fleets"
        / "nvidia-smi"
        / "Tesla-T4_515.105.01.xml"
    ).read_bytes()
    for name in ("t4-a", "t4-b", "t4-c"):
        (tmp_path / f"{name}.xml").write_bytes(xml)
    for name in ("cut-1", "cut-2"):
        (tmp_path / f"{name}.xml").write_bytes(xml[: len(xml) // 3])
    document = build_fleet([str(tmp_path)])
    (t4,) = document["classes"]
    assert t4["nodes"] == 3
    assert sorted(n["hostname"] for n in t4["worst_nodes"]) == ["t4-a", "t4-b", "t4-c"]
    errors = [item["error"] for item in document["invalid_reports"]]
    assert len(errors) == 2 and errors[0] == errors[1] and errors[0]


def test_symlink_loops_and_unreadable_directories(tmp_path: Path) -> None:
    write_fleet(tmp_path / "fleet", {"Tesla-T4_515.105.01": 2})
    (tmp_path / "fleet" / "loop").symlink_to(tmp_path / "fleet")
    locked = tmp_path / "fleet" / "locked"
    locked.mkdir()
    locked.chmod(0)
    try:
        document = build_fleet([str(tmp_path / "fleet")])
    finally:
        locked.chmod(0o755)
    assert document["nodes_total"] == 2  # the loop did not count the nodes twice
    if os.geteuid() != 0:  # root reads any directory
        assert document["invalid_reports"] == [
            {"path": str(locked), "error": "cannot list directory: Permission denied"}
        ]


def test_site_rules_apply_to_nvidia_smi_xml_inputs(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "site.yaml").write_text(
        "kind: rules\n"
        "rules:\n"
        "  - id: GD-SITE-902\n"
        "    title: Site minimum driver branch\n"
        "    severity: fail\n"
        "    applies_to: node\n"
        "    test: {driver.branch: {lt: 600}}\n"
        '    message: "driver {driver.version} is below the site minimum"\n'
        "    fix: Upgrade the driver to R600 or newer.\n"
        "    source: field report\n"
    )
    xml = Path(__file__).resolve().parent.parent / "fixtures" / "fleets" / "nvidia-smi" / "B200_580.65.06.xml"
    result = run_cli("fleet", str(xml), "--rules", str(rules), "--format", "json")
    document = json.loads(result.stdout)
    (b200,) = document["classes"]
    assert b200["verdict"] == "fail"
    assert {
        "rule_id": "GD-SITE-902",
        "severity": "fail",
        "title": "Site minimum driver branch",
        "nodes": 1,
    } in b200["findings"]
    assert result.returncode == 2
