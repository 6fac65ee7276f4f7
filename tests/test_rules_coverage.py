"""Every shipped rule and signature is exercised by some test or case file."""

from __future__ import annotations

from pathlib import Path

from gpudoctor.knowledge import load_rules

REPO = Path(__file__).resolve().parent.parent


def _test_text() -> str:
    parts = [p.read_text(encoding="utf-8") for p in (REPO / "tests").glob("test_*.py")]
    parts.append((REPO / "fixtures" / "facts" / "rule_cases.yaml").read_text(encoding="utf-8"))
    parts.extend(p.read_text(encoding="utf-8") for p in (REPO / "fixtures" / "logs").glob("*.yaml"))
    return "\n".join(parts)


def test_every_shipped_rule_is_named_by_a_test() -> None:
    text = _test_text()
    ids = [rule.id for rule in load_rules().rules]
    assert len(ids) >= 40
    assert [rule_id for rule_id in ids if rule_id not in text] == []


def test_every_shipped_signature_is_named_by_a_test() -> None:
    from gpudoctor.explain import load_signatures

    text = _test_text()
    signatures = load_signatures().signatures
    # A catalog family (GD-CUDART-*) is covered when a test names one of its entries.
    ids = [s.id if s.catalog is None else f"{s.catalog.id_prefix}-" for s in signatures]
    assert len(ids) >= 30
    assert [signature_id for signature_id in ids if signature_id not in text] == []
