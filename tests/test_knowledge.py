"""Loading and validating rule files and matrix tables; the `gpudoctor rules` command."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import zipfile
from pathlib import Path

import pytest

from gpudoctor.errors import BadInput
from gpudoctor.exitcodes import worst
from gpudoctor.knowledge import load_rules, matrix
from gpudoctor.knowledge.loader import load_kind, shipped_root
from gpudoctor.pipeline import diagnose
from tests.support.cli import run_gpudoctor
from tests.support.factsbuild import FACTS, node_facts
from tests.support.wheel import build_wheel, install_wheel, run_installed

REPO = Path(__file__).resolve().parent.parent
SLOW = os.environ.get("GPUDOCTOR_SLOW") == "1"


def _cli(*args: str, env: dict[str, str] | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return run_gpudoctor(*args, timeout=60, cwd=cwd, env=env)


GOOD_RULE = """\
kind: rules
rules:
  - id: GD-SITE-001
    title: Site rule
    severity: warn
    applies_to: node
    test: {derived.gpu_count: {ge: 1}}
    message: "{derived.gpu_count} GPUs at this site"
    fix: "nothing"
    source: field report
"""


def _write(tmp_path: Path, text: str, name: str = "site.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_lint_passes_on_shipped_rules() -> None:
    result = _cli("rules", "lint")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: ")


def test_list_json_contract() -> None:
    result = _cli("rules", "list", "--format", "json")
    assert result.returncode == 0, result.stderr
    rules = json.loads(result.stdout)
    assert len(rules) >= 40
    for rule in rules:
        assert set(rule) == {"id", "title", "severity", "applies_to", "fix", "refs", "source"}
        assert rule["fix"].strip()
        assert rule["refs"] or rule["source"] == "field report"
        assert rule["severity"] in ("fail", "warn", "info", "unknown")
    assert len({r["id"] for r in rules}) == len(rules)


def test_list_table_and_show() -> None:
    table = _cli("rules", "list")
    assert table.returncode == 0 and "GD-DRV-006" in table.stdout
    shown = _cli("rules", "show", "GD-DRV-006")
    assert shown.returncode == 0
    assert "source: field report" in shown.stdout and "driver.yaml" in shown.stdout
    missing = _cli("rules", "show", "GD-NOPE-999")
    assert missing.returncode == 64
    assert missing.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            GOOD_RULE.replace("severity: warn", "severity: bad"),
            "rule GD-SITE-001: field severity: must be one of",
        ),
        (
            GOOD_RULE.replace("{ge: 1}", "{gee: 1}"),
            "rule GD-SITE-001: field test.derived.gpu_count.gee: unknown operator",
        ),
        (
            GOOD_RULE.replace("source: field report", "source: vendor documentation"),
            "rule GD-SITE-001: field refs:",
        ),
        (GOOD_RULE.replace("GD-SITE-001", "site-1"), "field rules[0].id: expected an id like GD-DRV-001"),
        (GOOD_RULE.replace('fix: "nothing"', 'fix: "{unclosed"'), "rule GD-SITE-001: field fix: unbalanced"),
        (
            GOOD_RULE.replace("    fix:", "    colour: red\n    fix:"),
            "rule GD-SITE-001: field colour: unknown field",
        ),
        (GOOD_RULE.replace("kind: rules", "kind: recipes"), "field kind: expected one of"),
        ("kind: rules\nrules: [\n", "invalid YAML"),
        ("- just a list\n", "expected a mapping with a top-level 'kind:'"),
        (
            GOOD_RULE.replace("id: GD-SITE-001", "id: GD-DRV-001"),
            "rule GD-DRV-001: field id: already defined in",
        ),
    ],
)
def test_bad_rule_file_is_one_line_exit_65(tmp_path: Path, text: str, expected: str) -> None:
    path = _write(tmp_path, text)
    result = _cli("rules", "lint", str(path))
    assert result.returncode == 65
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert str(path) in result.stderr
    assert expected in result.stderr


def test_bad_matrix_row_names_the_field(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """\
        kind: matrix
        table: cuda_mvc
        rows:
          - {cuda_major: 12, min_driver: "525.60.13"}
        """,
    )
    result = _cli("rules", "lint", str(path))
    assert result.returncode == 65
    assert "cuda_mvc[0]: field rows[0].refs: every row needs a list of URLs" in result.stderr


def test_site_rules_from_option_and_environment(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD_RULE)
    ruleset = load_rules([path])
    assert "GD-SITE-001" in ruleset.by_id
    report = diagnose(node_facts("A100-SXM4-80GB_535.54.03"), rule_dirs=[tmp_path])
    (finding,) = [f for f in report["findings"] if f["rule_id"] == "GD-SITE-001"]
    assert finding["message"] == "1 GPUs at this site"
    listed = _cli("rules", "list", "--format", "json", env={"GPUDOCTOR_RULES": str(tmp_path)})
    assert "GD-SITE-001" in {r["id"] for r in json.loads(listed.stdout)}


def test_override_replaces_a_shipped_rule(tmp_path: Path) -> None:
    text = GOOD_RULE.replace("GD-SITE-001", "GD-HLT-007").replace("    fix:", "    override: true\n    fix:")
    ruleset = load_rules([_write(tmp_path, text)])
    assert ruleset.by_id["GD-HLT-007"].title == "Site rule"
    assert len([r for r in ruleset if r.id == "GD-HLT-007"]) == 1
    assert len(ruleset) == len(load_rules())


def test_collision_without_override_raises(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="GD-HLT-007: field id: already defined"):
        load_rules([_write(tmp_path, GOOD_RULE.replace("GD-SITE-001", "GD-HLT-007"))])


def test_missing_rules_path_is_exit_66(tmp_path: Path) -> None:
    result = _cli("rules", "lint", str(tmp_path / "nope"))
    assert result.returncode == 66


def test_every_matrix_row_has_refs() -> None:
    tables = [t for _, items in load_kind("matrix", [shipped_root()]) for t in items]
    assert {t.name for t in tables} == set(matrix.TABLES)
    for table in tables:
        for row in table.rows:
            assert row.get("refs") or row.get("source") == "field report", (table.name, row)


@pytest.mark.parametrize(
    ("name", "architecture", "cc", "datacenter"),
    [
        ("NVIDIA A800-SXM4-80GB", "ampere", "8.0", True),
        ("NVIDIA H100 80GB HBM3", "hopper", "9.0", True),
        ("NVIDIA H800", "hopper", "9.0", True),
        ("NVIDIA H200", "hopper", "9.0", True),
        ("NVIDIA B200", "blackwell", "10.0", True),
        ("NVIDIA GeForce RTX 5090", "blackwell", "12.0", False),
        ("Tesla V100S-PCIE-32GB", "volta", "7.0", True),
        ("NVIDIA GeForce RTX 4090", "ada", "8.9", False),
        ("NVIDIA L20", "ada", "8.9", True),
        ("NVIDIA L20 liquid cooled", "ada", "8.9", True),
        ("NVIDIA L40", "ada", "8.9", True),
        ("NVIDIA A10G", "ampere", "8.6", True),
        ("Tesla K80", "kepler", "3.7", True),
    ],
)
def test_gpu_by_name(name: str, architecture: str, cc: str, datacenter: bool) -> None:
    model = matrix.gpu_by_name(name)
    assert model is not None
    assert (model.architecture, model.compute_capability, model.datacenter) == (architecture, cc, datacenter)


def test_lookups() -> None:
    assert matrix.gpu_by_name("Graphics Device") is None
    h100 = matrix.gpu_by_pci_id("233010DE")
    assert h100 is not None and h100.architecture == "hopper"
    assert matrix.gpu_by_pci_id("0x2901").compute_capability == "10.0"  # type: ignore[union-attr]
    assert matrix.gpu_by_pci_id("26BA10DE").names[0] == "*L20"  # type: ignore[union-attr]
    assert matrix.gpu_by_name("NVIDIA L2") is None  # not in the table: unknown, not taken for an L20
    assert matrix.min_driver_for_cuda("12.4.1") == "550.54.15"
    assert matrix.min_driver_for_cuda("12.4") == "550.54.14"
    assert matrix.min_driver_for_cuda("12.3.2") == "545.23.08"  # update releases share the branch
    assert matrix.min_driver_for_cuda("13.0.0") == "580.65.06"
    assert matrix.min_driver_for_cuda("13.5.0") is None  # not in the matrix: unknown, never guessed
    assert matrix.mvc_floor(12) == "525.60.13"
    assert matrix.forward_compat_branches("13.1.0") == (535, 550, 570, 575, 580, 590)
    blackwell = matrix.architecture("blackwell")
    assert (
        blackwell is not None and blackwell.min_driver_branch == 570 and blackwell.open_module == "required"
    )
    volta = matrix.architecture("volta")
    assert volta is not None and volta.last_driver_branch == 580
    cc = matrix.compute_capability("7.0")
    assert cc is not None and cc.last_cuda == "12.9"
    branch = matrix.driver_branch(580)
    assert branch is not None and branch.designation == "ltsb"


# The one unknown a real node may get: no end-of-life date for its (older) driver branch.
LIFECYCLE_UNKNOWN = "GD-DRV-010"


@pytest.mark.parametrize("name", sorted(p.stem for p in (FACTS / "nodes").glob("*.json")))
def test_real_nodes_get_no_fail_and_no_unknown(name: str) -> None:
    report = diagnose(node_facts(name))
    others = [f for f in report["findings"] if f["rule_id"] != LIFECYCLE_UNKNOWN]
    assert worst(f["severity"] for f in others) in ("ok", "info", "warn")
    assert report["verdict"] in ("ok", "info", "warn") or any(
        f["rule_id"] == LIFECYCLE_UNKNOWN for f in report["findings"]
    )


def test_no_driver_node_is_unknown_with_reason() -> None:
    node = node_facts(
        "A100-SXM4-80GB_535.54.03",
        {
            "driver": {
                "present": False,
                "unknown": {"present": "no NVIDIA driver: libnvidia-ml.so.1 not found"},
            },
            "gpus": [],
        },
    )
    report = diagnose(node)
    assert report["verdict"] == "unknown"
    assert report["findings"][0]["message"] == "no NVIDIA driver: libnvidia-ml.so.1 not found"


@pytest.mark.skipif(not SLOW, reason="builds a wheel (set GPUDOCTOR_SLOW=1)")
def test_wheel_ships_the_rules(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    for rel in ("node/driver.yaml", "image/cuda.yaml", "matrix/gpus.yaml", "matrix/gpu_devices.tsv"):
        assert f"gpudoctor/_rules/{rel}" in names
    target = install_wheel(wheel, tmp_path / "site")
    probe = run_installed(
        target,
        "-c",
        "from gpudoctor.knowledge import load_rules, shipped_root; print(shipped_root()); print(len(load_rules()));"
        " from gpudoctor.knowledge.gpu_identity import identify; print(identify('1D01', None).compute_capability)",
        cwd=tmp_path,
    )
    assert probe.returncode == 0, probe.stderr
    root, count, gt_1030 = probe.stdout.split()
    assert root == str(target / "gpudoctor" / "_rules")
    assert int(count) >= 40
    assert gt_1030 == "6.1"  # the generated device table ships in the wheel
