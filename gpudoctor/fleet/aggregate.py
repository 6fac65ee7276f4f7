"""Group node records into classes: counts, worst verdict, findings by rule, worst nodes."""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from gpudoctor.exitcodes import SEVERITY_RANK, worst
from gpudoctor.fleet.classes import class_key
from gpudoctor.fleet.load import NodeRecord

WORST_NODES_SHOWN = 5


@dataclass
class NodeClass:
    key: str
    facts: dict[str, str]
    nodes: int = 0
    verdicts: Counter[str] = field(default_factory=Counter)
    # (rule_id, severity) -> node count
    findings: Counter[tuple[str, str]] = field(default_factory=Counter)
    # evaluation signature -> [node count, path of the first node (the representative),
    # Counter of (rule_id, severity) -> nodes of this group]
    groups: dict[str, list[Any]] = field(default_factory=dict)
    worst_nodes: list[NodeRecord] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return worst(self.verdicts)


def _listing_order(record: NodeRecord) -> tuple[int, int, str]:
    """Worse verdict first, then more findings, then by name."""
    return (-SEVERITY_RANK[record.verdict], -len(record.findings), record.hostname)


def aggregate(records: list[NodeRecord]) -> list[NodeClass]:
    """Classes, worst verdict first, then the biggest, then by key."""
    classes: dict[str, NodeClass] = {}
    for record in records:
        key = class_key(record.class_facts)
        node_class = classes.get(key)
        if node_class is None:
            node_class = classes[key] = NodeClass(key=key, facts=record.class_facts)
        node_class.nodes += 1
        node_class.verdicts[record.verdict] += 1
        # A rule counts once per node even if it fired for several GPUs.
        rules = set(record.findings)
        node_class.findings.update(rules)
        group = node_class.groups.get(record.evaluation_signature)
        if group is None:
            node_class.groups[record.evaluation_signature] = [1, record.path, Counter(rules)]
        else:
            group[0] += 1
            group[2].update(rules)
        # A bounded insertion: the class may hold thousands of nodes, five are shown.
        bisect.insort(node_class.worst_nodes, record, key=_listing_order)
        del node_class.worst_nodes[WORST_NODES_SHOWN:]
    return sorted(classes.values(), key=lambda c: (-SEVERITY_RANK[c.verdict], -c.nodes, c.key))


def findings_by_rule(counts: Counter[tuple[str, str]], titles: dict[str, str]) -> list[dict[str, Any]]:
    rows = [
        {"rule_id": rule_id, "severity": severity, "title": titles.get(rule_id, ""), "nodes": nodes}
        for (rule_id, severity), nodes in counts.items()
    ]
    rows.sort(key=lambda r: (-SEVERITY_RANK[r["severity"]], -r["nodes"], r["rule_id"]))
    return rows
