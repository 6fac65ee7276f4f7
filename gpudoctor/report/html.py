"""Scan / preflight report -> one self-contained HTML page (`--format html -o node.html`).

Same page frame, colours and escaping as the fleet page (see html_page.py); unknown facts
print as their reason ("not in nvidia-smi XML"), never as blanks.
"""

from __future__ import annotations

from typing import Any

from gpudoctor.report.html_page import render_page

UNKNOWN = "unknown"


def _fact(section: dict[str, Any], key: str) -> str:
    value = section.get(key)
    if value is None:
        return str((section.get("unknown") or {}).get(key) or UNKNOWN)
    return str(value)


def _facts(node: dict[str, Any]) -> list[tuple[str, str]]:
    host, driver = node.get("host") or {}, node.get("driver") or {}
    return [
        ("hostname", _fact(host, "hostname")),
        ("OS / kernel", f"{_fact(host, 'os_release')} / {_fact(host, 'kernel')}"),
        ("CPU architecture", _fact(host, "cpu_arch")),
        ("driver", _fact(driver, "version")),
        ("driver CUDA version", _fact(driver, "cuda_version")),
        ("kernel module", _fact(driver, "kernel_module")),
        ("GPUs", str(len(node.get("gpus") or []))),
    ]


def summary(report: dict[str, Any]) -> str:
    findings = report.get("findings") or []
    counts: dict[str, int] = {}
    for finding in findings:
        counts[finding["severity"]] = counts.get(finding["severity"], 0) + 1
    parts = [f"{n} {severity}" for severity, n in sorted(counts.items())]
    node = report.get("node") or {}
    host = (node.get("host") or {}).get("hostname") or "this node"
    text = f"{host}: {len(findings)} finding(s)" + (f" ({', '.join(parts)})" if parts else "")
    if report.get("image"):
        text += f" for image {report['image'].get('reference')}"
    return text


def render(report: dict[str, Any]) -> str:
    return render_page(
        "node.html.j2",
        report=report,
        summary=summary(report),
        facts=_facts(report.get("node") or {}),
        unknown=UNKNOWN,
    )
