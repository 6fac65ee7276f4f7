"""Human view of a report: node summary, GPUs, topology, image, findings, verdict.

Unknown facts print as "?" with the reason where the facts carry one ("? (not in nvidia-smi
XML)"), so a missing fact never reads as a healthy one. Findings are a list, not a table:
message, fix and each ref on a line of its own (refs are never broken). Colours and symbols
are the shared ones (report/style.py); the width follows the terminal or COLUMNS.
"""

from __future__ import annotations

import io
from collections import Counter
from typing import Any

from rich.markup import escape
from rich.table import Table

from gpudoctor.report.style import console as console_for
from gpudoctor.report.style import indented, verdict_markup

UNKNOWN = "?"
_MIN_WIDTHS = {"name": 22, "bus id": 16, "memory": 9}
_GPU_TABLE_WIDTH = 110  # the GPU table's columns need about this much


def _text(value: Any) -> str:
    if value is None:
        return UNKNOWN
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _fact(section: dict[str, Any], key: str) -> str:
    """The value, or "?" with the reason the facts give for not knowing it."""
    if section.get(key) is not None:
        return _text(section[key])
    reason = (section.get("unknown") or {}).get(key)
    return f"{UNKNOWN} ({reason})" if reason else UNKNOWN


def _host(host: dict[str, Any]) -> str:
    keys = ("hostname", "os_release", "kernel", "cpu_arch")
    reasons = {(host.get("unknown") or {}).get(k) for k in keys if host.get(k) is None}
    if all(host.get(k) is None for k in keys) and len(reasons) == 1 and None not in reasons:
        return f"{UNKNOWN} ({reasons.pop()})"  # a saved nvidia-smi XML: one reason, said once
    return "  ".join(f"kernel {_fact(host, k)}" if k == "kernel" else _fact(host, k) for k in keys)


def render(report: dict[str, Any], quiet: bool = False, verbose: bool = False) -> str:
    buffer = io.StringIO()
    console = console_for(buffer)
    verdict = report.get("verdict", "unknown")
    if quiet:
        console.print(f"verdict: {verdict_markup(verdict)}")
        return buffer.getvalue()
    node = report.get("node") or {}
    _node_summary(console, node)
    _gpus(console, node.get("gpus") or [])
    _topology(console, node)
    if report.get("image"):
        _image(console, report["image"])
    _findings(console, report.get("findings") or [], verbose)
    for error in report.get("probe_errors") or []:
        console.print(f"probe error: {error.get('probe')}: {error.get('message')}", markup=False)
    console.print(f"verdict: {verdict_markup(verdict)}")
    # rich pads table rows and wrapped lines to the width; piped text should not end in blanks.
    return "".join(line.rstrip() + "\n" for line in buffer.getvalue().splitlines())


def _node_summary(console: Any, node: dict[str, Any]) -> None:
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
        ("host", _host(host)),
        ("driver", driver_text),
        ("driver CUDA (max)", _fact(driver, "cuda_version")),
        (
            "kernel module",
            f"{_fact(driver, 'kernel_module')} {driver.get('kernel_module_version') or ''}".strip(),
        ),
        ("NVSwitches", _fact(fabric, "nvswitch_count")),
        ("fabric manager", _fabric_manager(fabric)),
        ("host CUDA toolkits", toolkits),
        ("container toolkit", _fact(runtime, "toolkit_version")),
        ("docker nvidia runtime", _fact(runtime, "docker_nvidia_runtime")),
        ("CDI specs", ", ".join(cdi) or _none_or_unknown(runtime, "cdi_specs")),
    ]
    for name, value in rows:
        table.add_row(name, _escape(value), end_section=False)
    console.print(table)


def _none_or_unknown(facts: dict[str, Any], key: str) -> str:
    """An empty list is "none" only when the source could have listed something."""
    reason = (facts.get("unknown") or {}).get(key)
    return "none" if reason is None else f"{UNKNOWN} ({reason})"


def _fabric_manager(fabric: dict[str, Any]) -> str:
    running = fabric.get("fabric_manager_running")
    state = (
        _fact(fabric, "fabric_manager_running")
        if running is None
        else ("running" if running else "not running")
    )
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
    if console.width < _GPU_TABLE_WIDTH:
        # Too narrow for a column each: one GPU per (wrapped) line, every fact named.
        console.print(f"GPUs ({len(gpus)})")
        for gpu in gpus:
            facts = [f"{name} {escape(cell(gpu))}" for name, cell in columns[2:]]
            indented(
                console,
                f"{escape(columns[0][1](gpu))} {escape(columns[1][1](gpu))}: " + ", ".join(facts),
                2,
            )
        return
    table = Table(title=f"GPUs ({len(gpus)})", title_justify="left")
    for column, _ in columns:
        table.add_column(column, overflow="fold", min_width=_MIN_WIDTHS.get(column))
    for gpu in gpus:
        table.add_row(*(escape(cell(gpu)) for _, cell in columns))
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
    iommu_text = _text(iommu) if iommu is not None else _fact(topology, "iommu_active")
    console.print(
        f"IOMMU: {iommu_text}{f' ({mode})' if mode else ''}; PCIe bridges with ACS on: {acs_text}",
        markup=False,
    )


def _image(console: Any, image: dict[str, Any]) -> None:
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
        ("kernels", _kernel_source(image)),
    ):
        table.add_row(name, _text(value))
    if image.get("source_endpoint"):
        table.add_row("read from", image["source_endpoint"])
    unknown = image.get("unknown") or {}
    for fact in ("platform", "kernels"):  # why a fact asked for was not read (--platform, --deep)
        if unknown.get(fact):
            table.add_row(f"{fact} not read", str(unknown[fact]))
    console.print(table)


def _kernel_source(image: dict[str, Any]) -> str:
    """Where the image's kernel facts came from, or why there are none."""
    kernels = image.get("kernels")
    if not isinstance(kernels, dict):
        return str((image.get("unknown") or {}).get("kernels") or "not scanned (use --deep)")
    source = kernels.get("source") or {}
    if source.get("from") == "attestation":
        return (
            f"from attestation {str(source.get('attestation'))[:19]} (gpudoctor {source.get('tool_version')}, "
            f"{source.get('found_by')}); not known: {source.get('not_known')}"
        )
    return f"layers scanned: {len(kernels.get('binaries') or [])} binaries with device code or errors"


def _findings(console: Any, findings: list[dict[str, Any]], verbose: bool = False) -> None:
    if not findings:
        console.print("Findings: none")
        return
    console.print(f"[bold]Findings ({len(findings)})[/]")
    for finding in findings:
        severity = finding.get("severity", "unknown")
        indented(
            console,
            f"{verdict_markup(severity)} {escape(_text(finding.get('rule_id')))} {escape(_text(finding.get('title')))}",
            0,
        )
        indented(console, escape(_text(finding.get("message"))), 4)
        if finding.get("fix"):
            indented(console, f"fix: {escape(finding['fix'])}", 4)
        for ref in finding.get("refs") or []:
            console.print(f"    {escape(ref)}", soft_wrap=True)  # whole, on its own line
        if verbose and finding.get("evidence"):
            evidence = ", ".join(f"{path}={value!r}" for path, value in finding["evidence"].items())
            indented(console, f"evidence: {escape(evidence)}", 4, style="dim")


def _escape(value: Any) -> str:
    return escape(_text(value))
