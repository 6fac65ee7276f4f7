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
from gpudoctor.exitcodes import SEVERITY_ORDER, worst
from gpudoctor.explain.correlate import correlate
from gpudoctor.explain.matcher import ScanResult, SignatureHits
from gpudoctor.facts import NodeFacts, to_dict
from gpudoctor.knowledge.conditions import Trace
from gpudoctor.knowledge.template import render

SCHEMA_VERSION = "1.0"
NO_MATCH = "no known failure signature found"
MAX_LINE_NUMBERS = 20
MAX_EXCERPT_LINES = 6
MAX_EXCERPT_CHARS = 400
MAX_VALUES = 10

_RANK = {s: i for i, s in enumerate(SEVERITY_ORDER)}


def captured_values(hits: SignatureHits) -> tuple[dict[str, str], dict[str, list[str]]]:
    """First value of each named group (required patterns first, in log order) and all distinct ones."""
    convert = hits.signature.convert
    first: dict[str, str] = {}
    every: dict[str, list[str]] = {}
    for pattern_hits in hits.patterns:
        for hit in sorted(pattern_hits.hits, key=lambda h: h.line_number):
            for name, raw in hit.groups.items():
                value = convert[name](raw) if name in convert else raw.strip()
                first.setdefault(name, value)
                values = every.setdefault(name, [])
                if value not in values and len(values) < MAX_VALUES:
                    values.append(value)
    return first, {k: v for k, v in every.items() if len(v) > 1}


def _excerpt(hits: SignatureHits) -> tuple[list[int], str]:
    by_line: dict[int, str] = {}
    for pattern_hits in hits.patterns:
        for hit in pattern_hits.hits:
            by_line.setdefault(hit.line_number, hit.text)
    numbers = sorted(by_line)
    lines = []
    for number in numbers[:MAX_EXCERPT_LINES]:
        text = by_line[number].strip()
        lines.append(text if len(text) <= MAX_EXCERPT_CHARS else text[: MAX_EXCERPT_CHARS - 3] + "...")
    return numbers[:MAX_LINE_NUMBERS], "\n".join(lines)


def _match(hits: SignatureHits) -> dict[str, Any]:
    signature = hits.signature
    captured, values = captured_values(hits)
    root = {"captured": captured}
    line_numbers, excerpt = _excerpt(hits)
    match: dict[str, Any] = {
        "signature_id": signature.id,
        "title": signature.title,
        "severity": signature.severity,
        "line_numbers": line_numbers,
        "count": sum(
            p.count for p, spec in zip(hits.patterns, signature.patterns, strict=True) if spec.required
        ),
        "excerpt": excerpt,
        "captured": captured,
        "cause": render(signature.cause, root, Trace()),
        "fix": render(signature.fix, root, Trace()),
        "refs": list(signature.refs),
        "source": signature.source,
    }
    if values:
        match["captured_values"] = values
    return match


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
    matched = scan.matched()
    matches = [_match(hits) for hits in matched]
    findings: list[dict[str, Any]] = []
    unchecked: list[dict[str, Any]] = []
    if context is not None:
        for hits, match in zip(matched, matches, strict=True):
            found, missing = correlate(hits.signature, match["captured"], context)
            findings.extend(to_dict(f) for f in found)
            unchecked.extend(to_dict(u) for u in missing)
    matches.sort(key=lambda m: (-_RANK[m["severity"]], m["line_numbers"][0] if m["line_numbers"] else 0))
    findings.sort(key=lambda f: -_RANK[f["severity"]])
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
