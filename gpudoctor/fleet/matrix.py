"""The runnability matrix: image x node class -> ok / warn / fail / unknown, with the fix.

Each image's metadata (manifest + config, never a layer) is fetched once per CPU
architecture present in the fleet, so a multi-platform image is judged by the
config a node would actually pull. Image rules are evaluated once per evaluation
group (see gpudoctor.fleet.classes), on the group's first node; the result is
shared by every node of the group and by every other group with the same signature.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gpudoctor.errors import GpudoctorError
from gpudoctor.exitcodes import worst
from gpudoctor.facts import ImageFacts, NodeFacts
from gpudoctor.findings import Finding
from gpudoctor.fleet.aggregate import NodeClass
from gpudoctor.fleet.load import load_node_report


@dataclass
class ImageFetch:
    platform: str  # "linux/amd64", or "default" when the nodes' CPU is unknown
    facts: ImageFacts | None
    error: str | None = None


@dataclass
class FleetImage:
    """One --image: fetched lazily, once per node CPU architecture."""

    reference: str
    insecure_registries: tuple[str, ...] = ()
    fetches: dict[str | None, ImageFetch] = field(default_factory=dict)

    def for_cpu(self, cpu_arch: str | None) -> ImageFetch:
        if cpu_arch not in self.fetches:
            self.fetches[cpu_arch] = self._fetch(cpu_arch)
        return self.fetches[cpu_arch]

    def _fetch(self, cpu_arch: str | None) -> ImageFetch:
        try:
            from gpudoctor.images import fetch_image
            from gpudoctor.images.platform import platform_for_cpu
        except ImportError:  # a build without the image side: unknown, with the reason
            return ImageFetch("default", None, "image fetching is not available in this build")
        platform = platform_for_cpu(cpu_arch)
        name = str(platform) if platform else "default"
        try:
            facts = fetch_image(
                self.reference, platform=platform, insecure_registries=self.insecure_registries
            )
        except GpudoctorError as exc:
            return ImageFetch(name, None, str(exc))
        except Exception as exc:  # noqa: BLE001 - a bug in one image's fetch must not void the fleet report
            return ImageFetch(name, None, f"internal error: {type(exc).__name__}: {exc} (please report this)")
        return ImageFetch(name, facts)

    def summary(self) -> dict[str, Any]:
        fetches = list(self.fetches.values())
        first = fetches[0] if fetches else None
        return {
            "reference": self.reference,
            "digest": first.facts.digest if first and first.facts else None,
            "error": first.error if first else None,
            "platforms": [
                {"platform": f.platform, "digest": f.facts.digest if f.facts else None, "error": f.error}
                for f in fetches
            ],
        }


def fleet_images(references: Sequence[str], insecure_registries: Sequence[str] = ()) -> list[FleetImage]:
    return [FleetImage(ref, tuple(insecure_registries)) for ref in dict.fromkeys(references)]


def finding_brief(finding: Finding) -> dict[str, Any]:
    """A finding as the fleet document shows it (no evidence: that is in the node reports)."""
    return {
        "rule_id": finding.rule_id,
        "severity": finding.severity,
        "title": finding.title,
        "message": finding.message,
        "fix": finding.fix,
        "refs": list(finding.refs),
    }


def _finding_row(finding: Finding, nodes: int) -> dict[str, Any]:
    return {**finding_brief(finding), "nodes": nodes}


class MatrixEvaluator:
    def __init__(self, rule_dirs: Sequence[str] = ()) -> None:
        from gpudoctor.knowledge import load_rules

        self._ruleset = load_rules(rule_dirs)
        self._nodes: dict[str, NodeFacts] = {}
        # (id of the ImageFacts, evaluation signature) -> findings; the images outlive the evaluator's use.
        self._results: dict[tuple[int, str], list[Finding]] = {}

    def node(self, path: str) -> NodeFacts:
        node = self._nodes.get(path)
        if node is None:
            node = self._nodes[path] = NodeFacts.from_dict(load_node_report(path))
        return node

    def evaluate(self, node: NodeFacts, image: ImageFacts | None) -> list[Finding]:
        """Node rules (image None) or image rules (node + image) on these facts."""
        from gpudoctor.derive import build_context
        from gpudoctor.engine import evaluate

        context = build_context(node, image)
        return evaluate(self._ruleset, context, applies_to="node" if image is None else "image")

    def findings(self, image: ImageFacts, signature: str, representative: str) -> list[Finding]:
        cache_key = (id(image), signature)
        cached = self._results.get(cache_key)
        if cached is None:
            cached = self._results[cache_key] = self.evaluate(self.node(representative), image)
        return cached

    def row(self, image: FleetImage, node_class: NodeClass) -> dict[str, Any]:
        verdicts: Counter[str] = Counter()
        rows: dict[tuple[str, str], dict[str, Any]] = {}
        errors: list[str] = []
        for signature, (count, representative, _findings) in node_class.groups.items():
            fetched = image.for_cpu(json.loads(signature)["cpu_arch"])
            if fetched.facts is None:
                verdicts["unknown"] += count
                errors.append(f"{fetched.platform}: {fetched.error}")
                continue
            findings = self.findings(fetched.facts, signature, representative)
            verdicts[worst(f.severity for f in findings)] += count
            for finding in findings:
                existing = rows.get((finding.rule_id, finding.severity))
                if existing is None:
                    rows[(finding.rule_id, finding.severity)] = _finding_row(finding, count)
                else:
                    existing["nodes"] += count
        row: dict[str, Any] = {
            "image": image.reference,
            "class": node_class.key,
            "nodes": node_class.nodes,
            "verdict": worst(verdicts),
            "verdicts": dict(verdicts),
            "findings": list(rows.values()),
        }
        if errors:
            row["error"] = "; ".join(dict.fromkeys(errors))
        return row
