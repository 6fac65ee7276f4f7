"""facts -> derived facts -> rules engine -> findings -> report (one function)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from gpudoctor.facts import ImageFacts, NodeFacts


def diagnose(
    node: NodeFacts,
    image: ImageFacts | None = None,
    rule_dirs: Sequence[str | os.PathLike[str]] = (),
) -> dict[str, Any]:
    """The JSON report for a node (and an image, for preflight)."""
    from gpudoctor.derive import build_context
    from gpudoctor.engine import evaluate
    from gpudoctor.knowledge import load_rules
    from gpudoctor.report.build import build_report

    ruleset = load_rules(rule_dirs)
    context = build_context(node, image)
    findings = evaluate(ruleset, context, applies_to="node+image" if image is not None else "node")
    return build_report(node, findings, image)
