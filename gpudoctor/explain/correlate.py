"""Sharpen a log match with the node's facts (`correlate:` entries of a signature).

The condition reads the rules engine's context (node facts + derived facts) with
the match's captured values under `captured`, so one condition can compare the
two: `{any_gpu: {gpu.compute_capability: {eq: {path: captured.cc}}}}`.
A correlation whose node facts are unknown yields no finding; it is listed as
unchecked with the missing facts, never reported as fine. One that needs a
value the log did not print simply does not apply.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gpudoctor.explain.signatures import CAPTURED, Signature
from gpudoctor.knowledge.conditions import EMPTY_SCOPE, Trace
from gpudoctor.knowledge.template import render


@dataclass
class CorrelatedFinding:
    signature_id: str
    severity: str
    message: str
    fix: str
    refs: list[str]
    evidence: dict[str, Any]
    subjects: list[str] = field(default_factory=list)


@dataclass
class Unchecked:
    signature_id: str
    missing_facts: list[str]


def correlate(
    signature: Signature, captured: Mapping[str, str], context: Mapping[str, Any]
) -> tuple[list[CorrelatedFinding], list[Unchecked]]:
    root = dict(context)
    root[CAPTURED] = dict(captured)
    findings: list[CorrelatedFinding] = []
    unchecked: list[Unchecked] = []
    for entry in signature.correlate:
        trace = Trace()
        result = entry.condition(root, EMPTY_SCOPE, trace)
        if result is None:
            # A value the log did not print is no missing node fact: nothing to report.
            node_missing = [f"{p}: {r}" for p, r in trace.missing.items() if not p.startswith(f"{CAPTURED}.")]
            if node_missing:
                unchecked.append(Unchecked(signature.id, node_missing))
            continue
        if not result:
            continue
        findings.append(
            CorrelatedFinding(
                signature_id=signature.id,
                severity=entry.severity,
                message=render(entry.message, root, trace),
                fix=render(entry.fix or signature.fix, root, trace),
                refs=entry.refs or list(signature.refs),
                evidence={k: v for k, v in trace.evidence.items() if not k.startswith(f"{CAPTURED}.")},
                subjects=list(trace.subjects),
            )
        )
    return findings, unchecked
