"""The `gpudoctor kernels` report: JSON contract and a plain table."""

from __future__ import annotations

from typing import Any

from gpudoctor import __version__
from gpudoctor.exitcodes import worst
from gpudoctor.facts import KernelScanFacts, to_dict
from gpudoctor.findings import Finding

_LETTER = {"native": "N", "jit": "J", "none": "-", "unknown": "?"}


def build(scan: KernelScanFacts, ccs: list[str], findings: list[Finding] | None) -> dict[str, Any]:
    binaries = []
    for binary in scan.binaries:
        row = {
            "path": binary.path,
            "cubins": binary.cubins,
            "ptx": binary.ptx,
            "compressed": binary.compressed,
            "per_gpu": binary.per_gpu,
            "package": binary.package,
            "entries": to_dict(binary.fatbin_entries),
        }
        if binary.error:
            row["error"] = binary.error
        binaries.append(row)
    report: dict[str, Any] = {
        "schema_version": "1.0",
        "tool": {"name": "gpudoctor", "version": __version__},
        "compute_capabilities": ccs,
        "binaries": binaries,
        "packages": [
            {"name": p.name, "version": p.version, "cuda_variant": p.cuda_variant, "path": p.path, **p.detail}
            for p in scan.packages
        ],
        "errors": to_dict(scan.errors),
    }
    if findings is not None:
        report["findings"] = [to_dict(f) for f in findings]
    report["verdict"] = worst(f.severity for f in findings or [])
    return report


def render_table(report: dict[str, Any]) -> str:
    ccs: list[str] = report["compute_capabilities"]
    lines = [f"Per GPU: N native cubin, J PTX JIT only, - no kernel, ? cannot tell.  CCs: {' '.join(ccs)}"]
    width = max([len(b["path"]) for b in report["binaries"]] + [6])
    for binary in report["binaries"]:
        if "error" in binary:
            lines.append(f"{binary['path']:<{width}}  error: {binary['error']}")
            continue
        if not binary["entries"]:
            lines.append(f"{binary['path']:<{width}}  no device code")
            continue
        verdicts = "".join(_LETTER.get(binary["per_gpu"].get(cc, ""), " ") for cc in ccs)
        cubins = ",".join(binary["cubins"]) or "-"
        ptx = ",".join(binary["ptx"]) or "-"
        lines.append(f"{binary['path']:<{width}}  {verdicts}  cubin {cubins}  ptx {ptx}")
    if not report["binaries"]:
        lines.append("No CUDA device code found.")
    for package in report["packages"]:
        extra = f" {package['cuda_variant']}" if package.get("cuda_variant") else ""
        generation = f" ({package['flash_attn_generation']})" if package.get("flash_attn_generation") else ""
        lines.append(f"package {package['name']} {package.get('version') or '?'}{extra}{generation}")
    for error in report["errors"]:
        lines.append(f"error: {error['message']}")
    for finding in report.get("findings", []):
        lines.append(
            f"{finding['severity'].upper()} {finding['rule_id']}: {' '.join(finding['message'].split())}"
        )
    lines.append(f"verdict: {report['verdict']}")
    return "\n".join(lines) + "\n"
