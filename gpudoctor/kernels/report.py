"""The `gpudoctor kernels` report: JSON contract and a plain table."""

from __future__ import annotations

from typing import Any

from gpudoctor import __version__
from gpudoctor.exitcodes import worst
from gpudoctor.facts import KernelScanFacts, to_dict
from gpudoctor.findings import Finding


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
    report["verdict"] = worst([*(f.severity for f in findings or []), *scan_unknowns(scan)])
    return report


def scan_unknowns(scan: KernelScanFacts) -> list[str]:
    """["unknown"] when part of the input could not be read: its kernels are not known."""
    unreadable = scan.errors or any(binary.error for binary in scan.binaries)
    return ["unknown"] if unreadable else []


# Per-GPU verdict -> (word, severity whose colour and symbol it takes: report/style.py).
_WORD = {
    "native": ("native", "ok"),
    "jit": ("JIT", "warn"),
    "none": ("none", "fail"),
    "unknown": ("?", "unknown"),
}


def _cell(word: str, severity: str) -> str:
    from gpudoctor.report.style import SEVERITY_SYMBOL

    return word if word == SEVERITY_SYMBOL[severity] else f"{SEVERITY_SYMBOL[severity]} {word}"


def render_table(report: dict[str, Any]) -> str:
    """One row per binary, one column per GPU compute capability with a word (native / JIT /
    none / ?), coloured as severities are everywhere; a legend says what each means."""
    import io

    from rich import box
    from rich.markup import escape
    from rich.table import Table

    from gpudoctor.report.style import SEVERITY_STYLE, console, verdict_markup

    ccs: list[str] = report["compute_capabilities"]
    buffer = io.StringIO()
    out = console(buffer)
    legend = " · ".join(
        f"[{SEVERITY_STYLE[severity]}]{_cell(word, severity)}[/]: {meaning}"
        for word, severity, meaning in (
            ("native", "ok", "cubin for the GPU"),
            ("JIT", "warn", "PTX only, compiled at start"),
            ("none", "fail", "no kernel image"),
            ("?", "unknown", "cannot tell"),
        )
    )
    out.print(f"Per GPU compute capability: {legend}")
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    table.add_column("binary", overflow="fold", ratio=3)
    for cc in ccs:
        table.add_column(f"CC {escape(cc)}", justify="center", no_wrap=True)
    table.add_column("cubin / ptx", overflow="fold", ratio=1)
    for binary in report["binaries"]:
        if "error" in binary or not binary["entries"]:
            # an unreadable binary is unknown for every GPU; a host-only one needs no kernel
            unknown = _cell(*_WORD["unknown"]) if "error" in binary else ""
            note = f"error: {binary['error']}" if "error" in binary else "no device code"
            table.add_row(escape(binary["path"]), *([unknown] * len(ccs)), escape(note))
            continue
        cells = []
        for cc in ccs:
            word, severity = _WORD.get(binary["per_gpu"].get(cc, "unknown"), ("?", "unknown"))
            cells.append(f"[{SEVERITY_STYLE[severity]}]{_cell(word, severity)}[/]")
        kinds = f"{','.join(binary['cubins']) or '-'} / {','.join(binary['ptx']) or '-'}"
        table.add_row(escape(binary["path"]), *cells, escape(kinds))
    if report["binaries"]:
        out.print(table)
    else:
        out.print("No CUDA device code found.")
    for package in report["packages"]:
        extra = f" {package['cuda_variant']}" if package.get("cuda_variant") else ""
        generation = f" ({package['flash_attn_generation']})" if package.get("flash_attn_generation") else ""
        out.print(escape(f"package {package['name']} {package.get('version') or '?'}{extra}{generation}"))
    for error in report["errors"]:
        out.print(escape(f"error: {error['message']}"))
    for finding in report.get("findings", []):
        out.print(
            f"{verdict_markup(finding['severity'])} {escape(finding['rule_id'])}: "
            f"{escape(' '.join(finding['message'].split()))}"
        )
    out.print(f"verdict: {verdict_markup(report['verdict'])}")
    return "".join(line.rstrip() + "\n" for line in buffer.getvalue().splitlines())
