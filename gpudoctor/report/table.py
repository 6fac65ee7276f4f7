"""Human view of a report: node summary, GPUs, topology, image, findings, verdict.

Unknown facts print as "?" so a missing fact never reads as a healthy one.
"""

from __future__ import annotations

import io
import shutil
import sys
from collections import Counter
from typing import Any

UNKNOWN = "?"
_MIN_WIDTHS = {"name": 22, "bus id": 16, "memory": 9}
_VERDICT_STYLE = {
    "ok": "bold green",
    "info": "bold green",
    "warn": "bold yellow",
    "fail": "bold red",
    "unknown": "bold magenta",
}


def _text(value: Any) -> str:
    if value is None:
        return UNKNOWN
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def render(report: dict[str, Any]) -> str:
    from rich.console import Console

    buffer = io.StringIO()
    interactive = sys.stdout.isatty()
    width = shutil.get_terminal_size((120, 40)).columns if interactive else 120
    console = Console(
        file=buffer, width=width, force_terminal=interactive, color_system="auto" if interactive else None
    )
    node = report.get("node") or {}
    _node_summary(console, node)
    _gpus(console, node.get("gpus") or [])
    _topology(console, node)
    if report.get("image"):
        _image(console, report["image"])
    _findings(console, report.get("findings") or [])
    for error in report.get("probe_errors") or []:
        console.print(f"probe error: {error.get('probe')}: {error.get('message')}", markup=False)
    verdict = report.get("verdict", "unknown")
    console.print(f"verdict: {verdict.upper()}", style=_VERDICT_STYLE.get(verdict), markup=False)
    return buffer.getvalue()


def _node_summary(console: Any, node: dict[str, Any]) -> None:
    from rich.table import Table

    host, driver = node.get("host") or {}, node.get("driver") or {}
    cuda_host, runtime, fabric = (
        node.get("cuda_host") or {},
        node.get("container_runtime") or {},
        node.get("fabric") or {},
    )
    table = Table(title="Node", show_header=False, title_justify="left")
    table.add_column("fact", style="bold")
    table.add_column("value", overflow="fold")
    if driver.get("present") is False:
        driver_text = (driver.get("unknown") or {}).get("present") or "no NVIDIA driver"
    else:
        driver_text = f"{_text(driver.get('version'))} (branch {_text(driver.get('branch'))})"
        if driver.get("library_mismatch"):
            driver_text += " - Driver/library version MISMATCH"
    toolkits = ", ".join(
        _text(t.get("version")) for t in cuda_host.get("toolkits") or []
    ) or _none_or_unknown(cuda_host, "toolkits")
    cdi = runtime.get("cdi_specs") or []
    rows = [
        ("source", node.get("source")),
        (
            "host",
            f"{_text(host.get('hostname'))}  {_text(host.get('os_release'))}  kernel {_text(host.get('kernel'))}  {_text(host.get('cpu_arch'))}",
        ),
        ("driver", driver_text),
        ("driver CUDA (max)", driver.get("cuda_version")),
        (
            "kernel module",
            f"{_text(driver.get('kernel_module'))} {driver.get('kernel_module_version') or ''}".strip(),
        ),
        ("NVSwitches", fabric.get("nvswitch_count")),
        ("fabric manager", _fabric_manager(fabric)),
        ("host CUDA toolkits", toolkits),
        ("container toolkit", runtime.get("toolkit_version")),
        ("docker nvidia runtime", runtime.get("docker_nvidia_runtime")),
        ("CDI specs", ", ".join(cdi) or _none_or_unknown(runtime, "cdi_specs")),
    ]
    for name, value in rows:
        table.add_row(name, _text(value), end_section=False)
    console.print(table)


def _none_or_unknown(facts: dict[str, Any], key: str) -> str:
    """An empty list is "none" only when the source could have listed something."""
    return UNKNOWN if key in (facts.get("unknown") or {}) else "none"


def _fabric_manager(fabric: dict[str, Any]) -> str:
    running = fabric.get("fabric_manager_running")
    state = UNKNOWN if running is None else ("running" if running else "not running")
    version = fabric.get("fabric_manager_version")
    return f"{state} {version}" if version else state


def _gpu_health(gpu: dict[str, Any]) -> str:
    problems = []
    if gpu.get("fallen_off_bus"):
        problems.append("FALLEN OFF THE BUS")
    for key, label in (
        ("retired_pages_pending", "retirement pending"),
        ("remapped_rows_pending", "row remap pending"),
        ("remapped_rows_failure", "row remap FAILED"),
    ):
        if gpu.get(key):
            problems.append(label)
    if gpu.get("ecc_errors_uncorrectable_volatile"):
        problems.append(f"{gpu['ecc_errors_uncorrectable_volatile']} uncorrectable ECC (volatile)")
    return ", ".join(problems) or "-"


def _gpus(console: Any, gpus: list[dict[str, Any]]) -> None:
    from rich.table import Table

    if not gpus:
        console.print("GPUs: none visible")
        return
    columns: list[tuple[str, Any]] = [
        ("#", lambda g: str(g.get("index"))),
        ("name", lambda g: _text(g.get("name"))),
        ("CC", lambda g: _text(g.get("compute_capability"))),
        ("arch", lambda g: _text(g.get("architecture"))),
        (
            "memory",
            lambda g: f"{g['memory_total_mib']} MiB" if g.get("memory_total_mib") is not None else UNKNOWN,
        ),
        ("bus id", lambda g: _text(g.get("pci_bus_id"))),
        ("MIG", lambda g: _text(g.get("mig_mode"))),
        ("ECC", lambda g: _text(g.get("ecc_mode"))),
        ("persist.", lambda g: _text(g.get("persistence_mode"))),
    ]
    # NVLink and fabric columns only where some GPU has them: most nodes have neither.
    if any(g.get("nvlink_links_total") for g in gpus):
        columns.append(
            ("NVLink up", lambda g: f"{_text(g.get('nvlink_links_up'))}/{_text(g.get('nvlink_links_total'))}")
        )
    if any(g.get("fabric_state") for g in gpus):
        columns.append(("fabric", lambda g: _text(g.get("fabric_state"))))
    columns.append(("health", _gpu_health))
    table = Table(title=f"GPUs ({len(gpus)})", title_justify="left")
    for column, _ in columns:
        table.add_column(column, overflow="fold", min_width=_MIN_WIDTHS.get(column))
    for gpu in gpus:
        table.add_row(*(_escape_text(cell(gpu)) for _, cell in columns))
    console.print(table)


def _topology(console: Any, node: dict[str, Any]) -> None:
    topology = node.get("topology") or {}
    pairs = topology.get("pairs") or []
    if pairs:
        reads = Counter(_text(p.get("p2p_read")) for p in pairs)
        ancestors = Counter(_text(p.get("common_ancestor")) for p in pairs)
        console.print(
            f"Topology: {len(pairs)} GPU pairs; P2P read {dict(reads)}; common ancestor {dict(ancestors)}",
            markup=False,
        )
    elif (topology.get("unknown") or {}).get("pairs"):
        console.print(f"Topology: {UNKNOWN} ({topology['unknown']['pairs']})", markup=False)
    iommu = topology.get("iommu_active")
    mode = topology.get("iommu_mode")
    acs = topology.get("acs_enabled_bridges") or []
    acs_text = (
        ", ".join(acs)
        if acs
        else ("none" if "acs_enabled_bridges" not in (topology.get("unknown") or {}) else UNKNOWN)
    )
    console.print(
        f"IOMMU: {_text(iommu)}{f' ({mode})' if mode else ''}; PCIe bridges with ACS on: {acs_text}",
        markup=False,
    )


def _image(console: Any, image: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title="Image", show_header=False, title_justify="left")
    table.add_column("fact", style="bold")
    table.add_column("value", overflow="fold")
    platform = image.get("platform") or {}
    for name, value in (
        ("reference", image.get("reference")),
        ("digest", image.get("digest")),
        (
            "platform",
            "/".join(str(platform.get(k)) for k in ("os", "architecture") if platform.get(k)) or None,
        ),
        ("CUDA runtime", image.get("cuda_version")),
        ("NVIDIA_REQUIRE_*", "; ".join(image.get("require") or []) or "none"),
    ):
        table.add_row(name, _text(value))
    console.print(table)


def _findings(console: Any, findings: list[dict[str, Any]]) -> None:
    from rich.table import Table

    if not findings:
        console.print("Findings: none")
        return
    table = Table(title=f"Findings ({len(findings)})", title_justify="left", show_lines=True)
    for column in ("severity", "rule", "finding", "fix", "refs"):
        table.add_column(column, overflow="fold")
    for finding in findings:
        severity = finding.get("severity", "unknown")
        table.add_row(
            f"[{_VERDICT_STYLE.get(severity, '')}]{severity}[/]" if severity in _VERDICT_STYLE else severity,
            _escape(finding.get("rule_id")),
            _escape(f"{finding.get('title')}: {finding.get('message')}"),
            _escape(finding.get("fix")),
            _escape("\n".join(finding.get("refs") or [])),
        )
    console.print(table)


def _escape(value: Any) -> str:
    return _escape_text(_text(value))


def _escape_text(text: str) -> str:
    from rich.markup import escape

    return escape(text)
