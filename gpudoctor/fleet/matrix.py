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
from gpudoctor.facts import FactsFormatError, ImageFacts, NodeFacts
from gpudoctor.findings import Finding
from gpudoctor.fleet.aggregate import NodeClass
from gpudoctor.fleet.load import ReportError, load_node_report
from gpudoctor.images import RegistryOptions


@dataclass
class ImageFetch:
    platform: str  # "linux/amd64", or "default" when the nodes' CPU is unknown
    facts: ImageFacts | None
    error: str | None = None


@dataclass
class FleetImage:
    """One --image: fetched once per node CPU architecture (all of them at once, in
    `prefetch`, or lazily)."""

    reference: str
    options: RegistryOptions | None = None
    fetches: dict[str | None, ImageFetch] = field(default_factory=dict)

    def for_cpu(self, cpu_arch: str | None) -> ImageFetch:
        if cpu_arch not in self.fetches:
            prefetch([self], [cpu_arch], self.options)
        return self.fetches[cpu_arch]

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


def prefetch(
    images: Sequence[FleetImage], cpu_archs: Sequence[str | None], options: RegistryOptions | None
) -> None:
    """Every image for every CPU architecture not fetched yet, concurrently (one token and
    one connection pool per registry); a failure is that fetch's error, never the run's."""
    from gpudoctor.images import Fetcher
    from gpudoctor.images.platform import platform_for_cpu

    wanted = [
        (image, arch) for image in images for arch in dict.fromkeys(cpu_archs) if arch not in image.fetches
    ]
    platforms = [platform_for_cpu(arch) for _, arch in wanted]
    with Fetcher(options or RegistryOptions()) as fetcher:
        try:
            results = fetcher.fetch_many(
                [(image.reference, p) for (image, _), p in zip(wanted, platforms, strict=True)]
            )
        except Exception as exc:  # noqa: BLE001 - a bug in fetching must not void the fleet report
            results = [RuntimeError(f"{type(exc).__name__}: {exc}")] * len(wanted)
    for (image, arch), platform, result in zip(wanted, platforms, results, strict=True):
        name = str(platform) if platform else "default"
        if isinstance(result, ImageFacts):
            image.fetches[arch] = ImageFetch(name, result)
        elif isinstance(result, GpudoctorError):
            image.fetches[arch] = ImageFetch(name, None, str(result))
        else:
            image.fetches[arch] = ImageFetch(name, None, f"internal error: {result} (please report this)")


def fleet_images(references: Sequence[str], options: RegistryOptions | None = None) -> list[FleetImage]:
    return [FleetImage(ref, options) for ref in dict.fromkeys(references)]


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
            try:
                node = NodeFacts.from_dict(load_node_report(path))
            except FactsFormatError as exc:
                # Loading checked only the facts classes need (fleet.load._check_node).
                raise ReportError(f"bad report: {exc}") from None
            self._nodes[path] = node
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
