"""The runnability matrix: image x node class -> ok / warn / fail / unknown, with the fix.

Each image's metadata is fetched once. Image rules are evaluated once per
evaluation group (see gpudoctor.fleet.classes), on the group's first node, and
the result is shared by every node of the group and by every other group with
the same signature.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpudoctor.errors import GpudoctorError
from gpudoctor.exitcodes import worst
from gpudoctor.facts import ImageFacts, NodeFacts
from gpudoctor.findings import Finding
from gpudoctor.fleet.aggregate import NodeClass
from gpudoctor.fleet.load import load_node_report


@dataclass
class FetchedImage:
    reference: str
    facts: ImageFacts | None
    error: str | None = None


def fetch_images(references: Sequence[str], insecure_registries: Sequence[str] = ()) -> list[FetchedImage]:
    """Each image once; a failure becomes an error row, so one bad image spoils no other."""
    try:
        from gpudoctor.images import fetch_image
    except ImportError:  # a build without the image side: every image is unknown, with the reason
        return [
            FetchedImage(ref, None, "image fetching is not available in this build") for ref in references
        ]
    fetched = []
    for reference in dict.fromkeys(references):
        try:
            facts = fetch_image(reference, insecure_registries=tuple(insecure_registries))
        except GpudoctorError as exc:
            fetched.append(FetchedImage(reference, None, str(exc)))
            continue
        fetched.append(FetchedImage(reference, facts))
    return fetched


def _finding_row(finding: Finding, nodes: int) -> dict[str, Any]:
    return {
        "rule_id": finding.rule_id,
        "severity": finding.severity,
        "title": finding.title,
        "message": finding.message,
        "fix": finding.fix,
        "refs": finding.refs,
        "nodes": nodes,
    }


class MatrixEvaluator:
    def __init__(self, rule_dirs: Sequence[Path] = ()) -> None:
        from gpudoctor.knowledge import load_rules

        self._ruleset = load_rules(rule_dirs)
        self._nodes: dict[str, NodeFacts] = {}
        # (id of the ImageFacts, evaluation signature) -> findings; the images outlive the evaluator's use.
        self._results: dict[tuple[int, str], list[Finding]] = {}

    def _node(self, path: str) -> NodeFacts:
        node = self._nodes.get(path)
        if node is None:
            node = self._nodes[path] = NodeFacts.from_dict(load_node_report(path))
        return node

    def findings(self, image: ImageFacts, signature: str, representative: str) -> list[Finding]:
        cache_key = (id(image), signature)
        cached = self._results.get(cache_key)
        if cached is None:
            from gpudoctor.derive import build_context
            from gpudoctor.engine import evaluate

            context = build_context(self._node(representative), image)
            cached = self._results[cache_key] = evaluate(self._ruleset, context, applies_to="image")
        return cached

    def row(self, image: FetchedImage, node_class: NodeClass) -> dict[str, Any]:
        row: dict[str, Any] = {"image": image.reference, "class": node_class.key, "nodes": node_class.nodes}
        if image.facts is None:
            row.update(
                verdict="unknown", verdicts={"unknown": node_class.nodes}, findings=[], error=image.error
            )
            return row
        verdicts: Counter[str] = Counter()
        rows: dict[tuple[str, str], dict[str, Any]] = {}
        for signature, (count, representative) in node_class.groups.items():
            findings = self.findings(image.facts, signature, representative)
            verdicts[worst(f.severity for f in findings)] += count
            for finding in findings:
                existing = rows.get((finding.rule_id, finding.severity))
                if existing is None:
                    rows[(finding.rule_id, finding.severity)] = _finding_row(finding, count)
                else:
                    existing["nodes"] += count
        row["verdict"] = worst(verdicts)
        row["verdicts"] = dict(verdicts)
        row["findings"] = list(rows.values())
        return row
