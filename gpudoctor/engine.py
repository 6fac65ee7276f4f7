"""Evaluate compiled rules against a context (gpudoctor.derive.build_context) into findings.

Per rule: `when` is the applicability guard (false -> the rule does not apply;
unknown -> it does not apply either, unless the rule says `when_unknown:
unknown`); `test` is the problem (true -> a finding of the rule's severity;
unknown -> a finding of severity `unknown` naming the missing facts; false ->
nothing). Both run first on the fast path without evidence; only a rule that
produces a finding is evaluated again with a Trace to collect its evidence.

Missing is never ok: when a probe failed to collect facts (the context's
`derived.failed_facts`, from gpudoctor.facts.mark_failed), every rule is
evaluated traced with them, and a rule whose guard or test depends on one is
`unknown` with the failure as its reason, never skipped or passed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from gpudoctor.exitcodes import SEVERITY_RANK
from gpudoctor.findings import Finding
from gpudoctor.knowledge import Rule, RuleSet
from gpudoctor.knowledge.conditions import EMPTY_SCOPE, Condition, Trace, compile_condition, make_getter
from gpudoctor.knowledge.template import render

_SCOPES = {"node": ("node",), "node+image": ("node", "node+image", "image"), "image": ("image", "node+image")}


def evaluate(
    ruleset: RuleSet | list[Rule], context: Mapping[str, Any], applies_to: str = "node"
) -> list[Finding]:
    """Findings of every applicable rule, worst severity first, then by rule id."""
    wanted = _SCOPES[applies_to]
    findings = []
    failed = failed_facts(context)
    for rule in ruleset:
        if rule.applies_to not in wanted:
            continue
        finding = evaluate_rule(rule, context) if not failed else _evaluate_traced(rule, context, failed)
        if finding is not None:
            findings.append(finding)
    findings.sort(key=lambda f: (-SEVERITY_RANK[f.severity], f.rule_id))
    return findings


def evaluate_rule(rule: Rule, context: Mapping[str, Any]) -> Finding | None:
    when = rule.when
    applies: bool | None = True
    if when is not None:
        applies = when(context, EMPTY_SCOPE, None)
        if applies is False or (applies is None and rule.when_unknown == "skip"):
            return None
    if applies is True and rule.test(context, EMPTY_SCOPE, None) is False:
        return None
    trace = Trace()
    if when is not None:
        when(context, EMPTY_SCOPE, trace)
    if applies is None:
        return _finding(rule, context, trace, None)
    test_trace = Trace()
    result = rule.test(context, EMPTY_SCOPE, test_trace)
    trace.merge(test_trace, with_missing=result is None)
    return _finding(rule, context, trace, result)


def failed_facts(context: Mapping[str, Any]) -> Mapping[str, str]:
    """Fact path -> reason for the facts a probe failed to collect (set by derive)."""
    derived = context.get("derived")
    failed = derived.get("failed_facts") if isinstance(derived, dict) else None
    return failed if isinstance(failed, dict) else {}


def _evaluate_traced(rule: Rule, context: Mapping[str, Any], failed: Mapping[str, str]) -> Finding | None:
    """evaluate_rule, with failed facts read as unknown everywhere (see Trace.failed)."""
    trace = Trace(failed=failed)
    if rule.when is not None:
        applies = rule.when(context, EMPTY_SCOPE, trace)
        if applies is False:
            return None
        if applies is None:
            if rule.when_unknown == "skip" and not trace.touched_failed():
                return None
            return _finding(rule, context, trace, None)
    test_trace = trace.child()
    result = rule.test(context, EMPTY_SCOPE, test_trace)
    if result is False:
        return None
    trace.merge(test_trace, with_missing=result is None)
    return _finding(rule, context, trace, result)


def _finding(rule: Rule, context: Mapping[str, Any], trace: Trace, result: bool | None) -> Finding:
    for path in rule.evidence:
        trace.evidence.setdefault(path.text, make_getter(path)(context, EMPTY_SCOPE))
    if result is None:
        severity = "unknown"
        template = rule.message_unknown or f"Cannot check ({rule.title.rstrip('.')}): missing {{missing}}."
    else:
        severity = rule.severity
        template = rule.message
    return Finding(
        rule_id=rule.id,
        severity=severity,
        title=rule.title,
        message=render(template, context, trace),
        fix=render(rule.fix, context, trace),
        refs=list(rule.refs),
        source=rule.source,
        evidence=dict(trace.evidence),
        missing_facts=[f"{path}: {reason}" for path, reason in trace.missing.items()],
        subjects=list(trace.subjects),
    )


@lru_cache(maxsize=1024)
def _compiled(key: str) -> Condition:
    return compile_condition(json.loads(key), "condition")


def evaluate_condition(
    condition: Any, context: Mapping[str, Any]
) -> tuple[bool | None, dict[str, Any], list[str]]:
    """One condition (as in a rule's `test`) -> (result, evidence, missing fact paths).

    Compiled once per distinct condition. Raises ConditionError (a ValueError)
    for a malformed condition; validate conditions at load time to avoid that.
    """
    compiled = _compiled(json.dumps(condition, sort_keys=True))
    trace = Trace()
    result = compiled(context, EMPTY_SCOPE, trace)
    missing = list(trace.missing) if result is None else []
    return result, dict(trace.evidence), missing
