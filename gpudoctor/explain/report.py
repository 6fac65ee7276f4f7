"""Turn a scan of a log (and optional node facts) into the explain report.

Shape: schema_version, tool, kind "explain", log {source, lines, bytes},
verdict, summary, matches [{signature_id, title, severity, line_numbers,
excerpt, captured, captured_values, count, cause, fix, refs, source}],
findings (node-correlated), unchecked, node (a summary, when facts were given).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gpudoctor import __version__
from gpudoctor.exitcodes import SEVERITY_RANK, worst
from gpudoctor.explain.correlate import correlate
from gpudoctor.explain.incidents import Incident
from gpudoctor.explain.matcher import ScanResult
from gpudoctor.facts import NodeFacts, to_dict
from gpudoctor.knowledge.conditions import Trace
from gpudoctor.knowledge.template import render

SCHEMA_VERSION = "1.0"
NO_MATCH = "no known failure signature found"
MAX_LINE_NUMBERS = 20
MAX_EXCERPT_LINES = 6
MAX_EXCERPT_CHARS = 400


def _excerpt(incident: Incident) -> str:
    lines = []
    seen: set[int] = set()
    for evidence in incident.evidence:
        if evidence.line in seen or len(lines) >= MAX_EXCERPT_LINES:
            continue
        seen.add(evidence.line)
        text = evidence.text.strip()
        lines.append(text if len(text) <= MAX_EXCERPT_CHARS else text[: MAX_EXCERPT_CHARS - 3] + "...")
    return "\n".join(lines)


def _match(incident: Incident) -> dict[str, Any]:
    signature = incident.signature
    entry = incident.entry
    root: dict[str, Any] = {"captured": incident.captured}
    if entry is not None:
        root["entry"] = entry.fields()
    catalog = signature.catalog
    title = f"{signature.title} {entry.name} ({entry.code})" if entry is not None else signature.title
    match: dict[str, Any] = {
        "signature_id": incident.id,
        "title": title,
        "severity": _severity(incident),
        "kind": "catalog" if catalog is not None else "generic" if signature.generic else "signature",
        "line_numbers": incident.line_numbers[:MAX_LINE_NUMBERS],
        "first_line": incident.first_line,
        "last_line": incident.last_line,
        "count": incident.count,
        "excerpt": _excerpt(incident),
        "captured": dict(incident.captured),
        "cause": render(signature.cause, root, Trace()),
        "fix": render(signature.fix, root, Trace()),
        "refs": list(signature.refs),
        "source": signature.source,
    }
    if catalog is not None:
        match["family"] = catalog.family
    if incident.values:
        match["captured_values"] = incident.values
    return match


def _severity(incident: Incident) -> str:
    return incident.entry.severity if incident.entry is not None else incident.signature.severity


def node_summary(node: NodeFacts, context: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The node facts an explanation refers to; compute capability and architecture
    fall back to the derived (GPU table) values where the source did not report them."""
    derived = (
        [g.get("derived", {}) for g in context["gpus"]] if context is not None else [{}] * len(node.gpus)
    )
    return {
        "source": node.source,
        "hostname": node.host.hostname,
        "cpu_arch": node.host.cpu_arch,
        "driver_version": node.driver.version,
        "driver_cuda_version": node.driver.cuda_version,
        "kernel_module": node.driver.kernel_module,
        "gpus": [
            {
                "index": gpu.index,
                "name": gpu.name,
                "compute_capability": gpu.compute_capability or extra.get("compute_capability"),
                "architecture": gpu.architecture or extra.get("architecture"),
            }
            for gpu, extra in zip(node.gpus, derived, strict=True)
        ],
    }


def build_explain_report(
    scan: ScanResult,
    source: str,
    node: NodeFacts | None = None,
    context: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    incidents = sorted(
        scan.incidents, key=lambda i: (i.signature.tier, -SEVERITY_RANK[_severity(i)], i.first_line, i.id)
    )
    matches = [_match(incident) for incident in incidents]
    findings: list[dict[str, Any]] = []
    unchecked: list[dict[str, Any]] = []
    if context is not None:
        for incident in incidents:
            found, missing = correlate(incident.signature, incident.captured, context)
            findings.extend(to_dict(f) for f in found if to_dict(f) not in findings)
            unchecked.extend(to_dict(u) for u in missing if to_dict(u) not in unchecked)
    findings.sort(key=lambda f: -SEVERITY_RANK[f["severity"]])
    verdict = worst([m["severity"] for m in matches] + [f["severity"] for f in findings])
    report: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "gpudoctor", "version": __version__},
        "kind": "explain",
        "log": {"source": source, "lines": scan.lines, "bytes": scan.bytes_read},
        "verdict": verdict,
        "summary": f"{len(matches)} known failure signature(s) found" if matches else NO_MATCH,
        "matches": matches,
        "findings": findings,
    }
    if unchecked:
        report["unchecked"] = unchecked
    if node is not None:
        report["node"] = node_summary(node, context)
    return report
