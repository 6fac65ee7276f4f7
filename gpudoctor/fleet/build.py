"""Assemble the fleet JSON document (schema: gpudoctor/fleet/schema/fleet.schema.json)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gpudoctor import __version__
from gpudoctor.exitcodes import SEVERITY_ORDER, worst
from gpudoctor.fleet import FLEET_SCHEMA_VERSION
from gpudoctor.fleet.aggregate import NodeClass, aggregate, findings_by_rule
from gpudoctor.fleet.load import InvalidReport, NodeRecord, iter_report_paths, read_record

_RANK = {severity: rank for rank, severity in enumerate(SEVERITY_ORDER)}


def load_fleet(paths: Sequence[str]) -> tuple[list[NodeRecord], list[InvalidReport], dict[str, str]]:
    records: list[NodeRecord] = []
    invalid: list[InvalidReport] = []
    titles: dict[str, str] = {}
    for path in iter_report_paths(paths):
        result = read_record(path, titles)
        if isinstance(result, NodeRecord):
            records.append(result)
        else:
            invalid.append(result)
    return records, invalid, titles


def _class_row(node_class: NodeClass, titles: dict[str, str]) -> dict[str, Any]:
    return {
        "key": node_class.key,
        **node_class.facts,
        "nodes": node_class.nodes,
        "verdict": node_class.verdict,
        "verdicts": dict(node_class.verdicts),
        "evaluation_groups": len(node_class.groups),
        "findings": findings_by_rule(node_class.findings, titles),
        "worst_nodes": [
            {
                "hostname": record.hostname,
                "path": record.path,
                "verdict": record.verdict,
                "rule_ids": sorted({rule_id for rule_id, _ in record.findings}),
            }
            for record in node_class.worst_nodes
        ],
    }


def build_fleet(
    paths: Sequence[str],
    images: Sequence[str] = (),
    insecure_registries: Sequence[str] = (),
    rule_dirs: Sequence[Path] = (),
) -> dict[str, Any]:
    records, invalid, titles = load_fleet(paths)
    classes = aggregate(records)
    del records  # the classes keep what the output needs; free the rest before the matrix
    document: dict[str, Any] = {
        "schema_version": FLEET_SCHEMA_VERSION,
        "tool": {"name": "gpudoctor", "version": __version__},
        "nodes_total": sum(c.nodes for c in classes),
        "invalid_total": len(invalid),
        "invalid_reports": [{"path": item.path, "error": item.error} for item in invalid],
        "verdict": worst(c.verdict for c in classes) if classes else "unknown",
        "classes": [_class_row(c, titles) for c in classes],
    }
    if images:
        from gpudoctor.fleet.matrix import MatrixEvaluator, fleet_images

        fleet_image_list = fleet_images(images, insecure_registries)
        evaluator = MatrixEvaluator(rule_dirs)
        document["matrix"] = [evaluator.row(image, c) for image in fleet_image_list for c in classes]
        document["images"] = [image.summary() for image in fleet_image_list]
        for row in document["matrix"]:
            row["findings"].sort(key=lambda f: (-_RANK[f["severity"]], f["rule_id"]))
        if classes:
            # Exit code answers "can these images run on this fleet" too.
            document["verdict"] = worst(
                [document["verdict"], *(row["verdict"] for row in document["matrix"])]
            )
    return document
