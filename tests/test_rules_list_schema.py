"""Every JSON `gpudoctor rules list` prints validates against the shipped rules-list
schema, and the schema rejects lists that break the contract (issue 3)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gpudoctor.report.schema import schema_path
from tests.support.schema_check import REPO, printed_json, validator, violations

SITE_RULES = """\
kind: rules
rules:
  - id: GD-SITE-001
    title: Site policy - no jobs on driver branch 535
    severity: warn
    applies_to: node
    test: {derived.driver_branch: {eq: 535}}
    message: "driver {driver.version} is on the retired branch 535 at this site"
    fix: "Drain the node and reinstall it with the site's current driver image."
    refs: []
    source: field report
  - id: GD-DRV-007
    override: true
    title: Driver branch past its end of life (site wording)
    severity: warn
    applies_to: node
    test: {derived.driver_branch_eol_passed: true}
    message: "R{derived.driver_branch} is past end of life"
    fix: "Reinstall with the site's LTSB image."
    refs: [https://docs.nvidia.com/datacenter/tesla/drivers/]
    source: vendor documentation
"""


def rules_json(*args: str, env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    rules, code = printed_json("rules-list", "rules", "list", "--format", "json", *args, env=env)
    assert code == 0
    ids = [rule["id"] for rule in rules]
    assert len(ids) == len(set(ids)), "rule ids are unique (an id collision is an error)"
    return rules


@pytest.fixture(scope="module")
def site_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("site-rules")
    (directory / "site.yaml").write_text(SITE_RULES)
    return directory


def test_schema_is_valid_and_ships_inside_the_package() -> None:
    validator("rules-list")
    assert schema_path("rules-list").is_relative_to(REPO / "gpudoctor" / "report" / "schema")


def test_shipped_rules() -> None:
    rules = rules_json()
    assert len(rules) >= 40
    assert {rule["applies_to"] for rule in rules} >= {"node", "node+image"}


def test_with_site_local_rules(site_dir: Path) -> None:
    rules = {rule["id"]: rule for rule in rules_json("--rules", str(site_dir))}
    assert rules["GD-SITE-001"]["refs"] == [] and rules["GD-SITE-001"]["source"] == "field report"
    assert rules["GD-DRV-007"]["title"].endswith("(site wording)")


def test_with_site_local_rules_from_the_environment(site_dir: Path) -> None:
    rules = {rule["id"]: rule for rule in rules_json(env={"GPUDOCTOR_RULES": str(site_dir)})}
    assert "GD-SITE-001" in rules


@pytest.fixture(scope="module")
def shipped() -> list[dict[str, Any]]:
    rules = rules_json()
    assert any(not rule["refs"] for rule in rules), "a field-report rule without refs is shipped"
    return rules


def _first_with_refs(rules: list[dict[str, Any]]) -> dict[str, Any]:
    return next(rule for rule in rules if rule["refs"])


BROKEN: dict[str, Callable[[list[dict[str, Any]]], None]] = {
    "bad severity": lambda r: r[0].update(severity="critical"),
    "bad applies_to": lambda r: r[0].update(applies_to="cluster"),
    "empty fix": lambda r: r[0].update(fix=""),
    "no refs and not a field report": lambda r: _first_with_refs(r).update(refs=[]),
    "ref not a URL": lambda r: r[0].update(refs=["NVIDIA docs"]),
    "bad id": lambda r: r[0].update(id="driver-too-old"),
    "missing source": lambda r: r[0].pop("source"),
    "unknown field": lambda r: r[0].update(when={"driver.branch": {"ge": 1}}),
}


@pytest.mark.parametrize("breakage", sorted(BROKEN))
def test_schema_rejects_broken_lists(shipped: list[dict[str, Any]], breakage: str) -> None:
    assert violations("rules-list", shipped) == []
    broken = copy.deepcopy(shipped)
    BROKEN[breakage](broken)
    assert violations("rules-list", broken), breakage


def test_schema_rejects_an_object_instead_of_a_list(shipped: list[dict[str, Any]]) -> None:
    assert violations("rules-list", {"rules": shipped})
