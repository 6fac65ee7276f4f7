"""Every shipped rule fires on one fixture and stays quiet on another (fixtures/facts/rule_cases.yaml).

Rules in rules/image/kernels.yaml are tested by the kernels tests; every other
shipped rule must have cases here.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpudoctor.engine import evaluate
from gpudoctor.findings import Finding
from gpudoctor.knowledge import load_rules
from tests.support.factsbuild import FACTS, context_for

CASES: dict[str, Any] = yaml.safe_load((FACTS / "rule_cases.yaml").read_text(encoding="utf-8"))["cases"]
RULES = load_rules()
OWN_RULES = sorted(rule.id for rule in RULES if Path(rule.file).name != "kernels.yaml")


def _params(kind: str) -> list[Any]:
    params = []
    for rule_id, spec in CASES.items():
        for i, case in enumerate(spec.get(kind, [])):
            params.append(pytest.param(rule_id, spec.get("needs"), case, id=f"{rule_id}-{kind}{i}"))
    return params


def _findings(case: dict[str, Any]) -> list[Finding]:
    context = context_for(case["node"], case.get("patch"), case.get("image"), case.get("image_patch"))
    return evaluate(RULES, context, applies_to="node+image" if case.get("image") else "node")


def _skip_unless_available(needs: str | None) -> None:
    if needs and importlib.util.find_spec(needs) is None:
        pytest.skip(f"{needs} is not in this tree yet")


def test_every_rule_has_cases() -> None:
    missing = [rid for rid in OWN_RULES if not CASES.get(rid, {}).get("fires") or not CASES[rid].get("quiet")]
    assert missing == []
    unknown_ids = sorted(set(CASES) - {rule.id for rule in RULES})
    assert unknown_ids == []


@pytest.mark.parametrize(("rule_id", "needs", "case"), _params("fires"))
def test_rule_fires(rule_id: str, needs: str | None, case: dict[str, Any]) -> None:
    _skip_unless_available(needs)
    hits = [f for f in _findings(case) if f.rule_id == rule_id]
    assert len(hits) == 1, f"{rule_id} did not fire"
    finding = hits[0]
    assert finding.severity == case["severity"]
    assert finding.evidence, "a finding must carry its evidence"
    assert "unknown" not in finding.message.split() or case["severity"] == "unknown"
    if "message_contains" in case:
        assert case["message_contains"] in finding.message
    if "subjects" in case:
        assert finding.subjects == case["subjects"]


@pytest.mark.parametrize(("rule_id", "needs", "case"), _params("quiet"))
def test_rule_quiet(rule_id: str, needs: str | None, case: dict[str, Any]) -> None:
    _skip_unless_available(needs)
    assert [f for f in _findings(case) if f.rule_id == rule_id] == []
