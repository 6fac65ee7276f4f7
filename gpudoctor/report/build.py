"""Assemble the JSON report (the contract dashboards depend on).

Shape: schema_version, tool, node, image (preflight), findings, verdict,
probe_errors. The JSON Schema lives in gpudoctor/report/schema/report.schema.json.
"""

from __future__ import annotations

from typing import Any

from gpudoctor import __version__
from gpudoctor.exitcodes import worst
from gpudoctor.facts import ImageFacts, NodeFacts, to_dict
from gpudoctor.findings import Finding

SCHEMA_VERSION = "1.0"


def build_report(node: NodeFacts, findings: list[Finding], image: ImageFacts | None = None) -> dict[str, Any]:
    report: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "gpudoctor", "version": __version__},
        "node": node.to_dict(),
    }
    if image is not None:
        report["image"] = image.to_dict()
    report["findings"] = [to_dict(f) for f in findings]
    report["verdict"] = worst(f.severity for f in findings)
    report["probe_errors"] = [to_dict(e) for e in node.probe_errors]
    return report
