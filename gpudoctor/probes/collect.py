"""collect_node: run every live probe under its own deadline and merge the facts.

Probes run in daemon threads: a hung NVML call or helper binary cannot be
interrupted from Python, but it must not hang the scan or the interpreter's
exit, so the collector stops waiting at the deadline, records a probe error
and goes on with what the other probes found. Nothing here raises.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from gpudoctor.facts import (
    ContainerRuntimeFacts,
    CudaHostFacts,
    GpuFacts,
    GpuPairFacts,
    HostFacts,
    NodeFacts,
    ProbeError,
    mark_all,
    mark_all_failed,
    mark_failed,
)
from gpudoctor.probes import sysfs as sysfs_probe
from gpudoctor.probes.fsroot import FsRoot
from gpudoctor.probes.nvml_api import NvmlBackend, NvmlError
from gpudoctor.probes.nvml_probe import LIBRARY_NOT_FOUND, NvmlResult, probe_nvml
from gpudoctor.versions import branch_of

T = TypeVar("T")

_NO_DRIVER_PREFIX = "no NVIDIA driver: "


@dataclass
class Deadlines:
    nvml_s: float = 20.0
    files_s: float = 10.0
    commands_s: float = 15.0


class ProbeFailed(Exception):
    pass


def run_with_deadline(name: str, work: Callable[[], T], deadline_s: float) -> T:
    """work() in a daemon thread; ProbeFailed on timeout or on any exception it raised."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = work()
        except BaseException as exc:  # noqa: BLE001 - a probe bug must not end the scan
            box["error"] = exc

    thread = threading.Thread(target=target, name=f"gpudoctor-probe-{name}", daemon=True)
    thread.start()
    thread.join(deadline_s)
    if thread.is_alive():
        raise ProbeFailed(f"timed out after {deadline_s:g}s")
    if "error" in box:
        exc = box["error"]
        raise ProbeFailed(f"{type(exc).__name__}: {exc}")
    value: T = box["value"]
    return value


def collect_node(
    sysfs_root: str | None = None,
    nvml: NvmlBackend | None = None,
    deadlines: Deadlines | None = None,
    host_root: str | None = None,
) -> NodeFacts:
    """Live facts of this node, of a host mounted under host_root (NVML still queried, through
    the library the container runtime injected), or of a recorded tree under sysfs_root
    (nothing live: NVML only when a backend is given). Never raises."""
    limits = deadlines or Deadlines()
    fs = FsRoot(host_root, live_kernel=True) if host_root is not None else FsRoot(sysfs_root)
    node = NodeFacts(
        source="live", collected_at=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    )

    def attempt(name: str, work: Callable[[], T], deadline_s: float) -> T | None:
        try:
            return run_with_deadline(name, work, deadline_s)
        except ProbeFailed as exc:
            node.probe_errors.append(ProbeError(probe=name, message=str(exc)))
            return None

    from gpudoctor.probes.container import probe_container_runtime
    from gpudoctor.probes.cuda_host import probe_cuda_host
    from gpudoctor.probes.host import probe_host

    def attempt_facts(name: str, work: Callable[[], T], deadline_s: float, empty: T) -> T:
        """The facts `work` returns; when it fails, `empty` with every fact marked failed."""
        found = attempt(name, work, deadline_s)
        if found is None:
            mark_all_failed(empty, f"{name} probe failed: {node.probe_errors[-1].message}")
            return empty
        return found

    node.host = attempt_facts("host", lambda: probe_host(fs), limits.files_s, HostFacts())
    sysfs = attempt("sysfs", lambda: sysfs_probe.probe_sysfs(fs), limits.files_s)
    node.cuda_host = attempt_facts("cuda_host", lambda: probe_cuda_host(fs), limits.files_s, CudaHostFacts())
    node.container_runtime = attempt_facts(
        "container_runtime",
        lambda: probe_container_runtime(fs),
        limits.commands_s,
        ContainerRuntimeFacts(),
    )

    backend = nvml if nvml is not None else (_live_nvml() if fs.live_kernel else None)
    nvml_result = None
    if isinstance(backend, NvmlError):
        nvml_result = NvmlResult()
        _no_library(nvml_result, backend)
    elif backend is not None:
        nvml_result = attempt("nvml", lambda: probe_nvml(backend), limits.nvml_s)
    if nvml_result is not None and not nvml_result.initialised:
        reason = nvml_result.driver.unknown.get("version", "NVML did not start")
        node.probe_errors.append(ProbeError(probe="nvml", message=reason))
    if nvml_result is not None:
        node.probe_errors.extend(ProbeError(probe="nvml", message=m) for m in nvml_result.errors)
    _merge_driver(node, nvml_result, sysfs, backend is None)
    _merge_gpus(node, nvml_result, sysfs, fs, attempt, limits)
    _merge_topology(node, nvml_result, sysfs)
    if nvml_result is not None and nvml_result.initialised and sysfs is not None:
        _gpus_nvml_does_not_list(node, sysfs)
    _merge_fabric(node, sysfs, fs, attempt, limits)
    if "mode" not in node.container_runtime.failed:
        from gpudoctor.probes.container import finish_mode

        finish_mode(node)
    _origins(node, fs, nvml_result, nvml is not None)
    return node


def _origins(node: NodeFacts, fs: FsRoot, nvml: NvmlResult | None, replayed: bool) -> None:
    """Say where each group of facts came from: an in-cluster scan mixes NVML and host files."""
    if nvml is not None and nvml.initialised:
        source = "NVML (replayed snapshot)" if replayed else "NVML (libnvidia-ml.so.1 loaded by this process)"
        node.origins.update({"driver": source, "gpus": source, "topology.pairs": source})
        node.origins["driver.kernel_module"] = f"/proc/driver/nvidia/version, {fs.label}"
    else:
        node.origins.update({"driver": fs.label, "gpus": fs.label})
    for group in ("host", "topology.acs", "cuda_host", "container_runtime", "fabric.nvswitch_count"):
        node.origins[group] = fs.label


def _live_nvml() -> NvmlBackend | NvmlError:
    from gpudoctor.probes.nvml_api import LiveNvml

    try:
        return LiveNvml()
    except NvmlError as exc:
        return exc


def _no_library(result: NvmlResult, exc: NvmlError) -> None:
    result.driver.present = False
    for name in ("present", "version", "branch", "cuda_version", "nvml_version", "library_mismatch"):
        result.driver.unknown[name] = f"{LIBRARY_NOT_FOUND} ({exc})"


def _merge_driver(
    node: NodeFacts, nvml: NvmlResult | None, sysfs: sysfs_probe.SysfsResult | None, nvml_skipped: bool
) -> None:
    if nvml is not None:
        node.driver = nvml.driver
    driver = node.driver
    module = sysfs.module if sysfs else None
    if module is not None:
        driver.kernel_module = module.flavour
        driver.kernel_module_version = module.version
        if not driver.version:
            # Without NVML the loaded kernel module is the only driver version there is.
            if driver.present is False:
                # NVML said "no driver", but a kernel module is loaded: the user-space
                # part is what is missing, and the reasons must say so.
                for name, reason in list(driver.unknown.items()):
                    if reason.startswith(_NO_DRIVER_PREFIX):
                        text = reason.removeprefix(_NO_DRIVER_PREFIX)
                        driver.unknown[name] = (
                            f"{text}, although NVIDIA kernel module {module.version} is loaded"
                        )
            driver.present = True
            driver.unknown.pop("present", None)
            driver.version = module.version
            driver.branch = branch_of(module.version)
            for name in ("version", "branch"):
                driver.unknown.pop(name, None)
    else:
        reason = sysfs.module_reason if sysfs else "procfs probe failed"
        driver.unknown["kernel_module"] = driver.unknown["kernel_module_version"] = reason or "unknown"
        if sysfs is None:
            mark_all(driver, ("kernel_module", "kernel_module_version"), "procfs probe failed")
        if nvml_skipped and sysfs is not None and driver.present is None:
            driver.present = False
            driver.unknown["present"] = f"no NVIDIA driver: {reason}"
    for name in ("version", "branch", "cuda_version", "nvml_version", "library_mismatch"):
        if getattr(driver, name) is None and name not in driver.unknown:
            driver.unknown[name] = "NVML not queried under --sysfs-root" if nvml_skipped else "not reported"


def _merge_gpus(
    node: NodeFacts, nvml: NvmlResult | None, sysfs: Any, fs: FsRoot, attempt: Any, limits: Deadlines
) -> None:
    from gpudoctor.probes.gpumodel import fill_model_facts

    if nvml is not None and nvml.initialised:
        node.gpus = nvml.gpus
        if nvml.gpus_failed:
            mark_failed(node, "gpus", nvml.gpus_failed)
        return
    if fs.is_host and node.driver.present is not False:
        fallback = attempt("nvidia-smi", lambda: _nvidia_smi(limits.commands_s), limits.commands_s + 1)
        if fallback is not None:
            node.gpus = fallback.gpus
            for name in ("version", "branch", "cuda_version"):
                if getattr(node.driver, name) is None and getattr(fallback.driver, name) is not None:
                    setattr(node.driver, name, getattr(fallback.driver, name))
                    node.driver.unknown.pop(name, None)
            return
    if sysfs is not None and sysfs.proc_gpus:
        node.gpus = sysfs.proc_gpus
        for gpu in node.gpus:
            fill_model_facts(gpu, None, None)
    elif nvml is not None and nvml.gpus_failed:
        mark_failed(node, "gpus", nvml.gpus_failed)  # NVML failed and nothing else lists the GPUs


def _nvidia_smi(timeout_s: float) -> NodeFacts | None:
    from gpudoctor.probes import runcmd
    from gpudoctor.probes.nvsmi_xml import parse_nvidia_smi_xml

    output, reason = runcmd.run(["nvidia-smi", "-q", "-x"], timeout_s=timeout_s)
    if output is None:
        if reason and reason.endswith("not found"):
            return None
        raise ProbeFailed(reason or "no output")
    return parse_nvidia_smi_xml(output.encode(), "nvidia-smi -q -x")


def _merge_topology(node: NodeFacts, nvml: NvmlResult | None, sysfs: sysfs_probe.SysfsResult | None) -> None:
    topology = node.topology
    if nvml is not None and nvml.initialised:
        topology.pairs = nvml.pairs
    else:
        topology.unknown["pairs"] = (nvml.pairs_unknown if nvml else None) or "NVML not available"
    if sysfs is None:
        mark_all(topology, ("iommu_active", "iommu_mode", "acs_enabled_bridges"), "sysfs probe failed")
        return
    topology.iommu_active, topology.iommu_mode = sysfs.iommu_active, sysfs.iommu_mode
    if sysfs.iommu_reason:
        topology.unknown["iommu_active"] = topology.unknown["iommu_mode"] = sysfs.iommu_reason
    elif sysfs.iommu_active is False:
        topology.unknown["iommu_mode"] = "no IOMMU active"
    topology.acs_enabled_bridges = sorted(b for b, state in sysfs.acs.items() if state.enabled)
    unreadable = sorted(
        {state.reason for state in sysfs.acs.values() if state.enabled is None and state.reason}
    )
    if unreadable:
        topology.unknown["acs_enabled_bridges"] = "; ".join(unreadable)
    elif not sysfs.pci_gpus:
        topology.unknown["acs_enabled_bridges"] = "no NVIDIA GPU in /sys/bus/pci/devices"
    _pair_acs(node.gpus, topology.pairs, sysfs)


def _gpus_nvml_does_not_list(node: NodeFacts, sysfs: sysfs_probe.SysfsResult) -> None:
    """A GPU on the PCI bus, bound to nvidia, that NVML does not list has fallen off the bus
    or was excluded; NVML then simply counts one GPU less, so only sysfs can tell."""
    listed = {sysfs_probe.sysfs_bus_id(g.pci_bus_id) for g in node.gpus if g.pci_bus_id}
    lost = sum(1 for g in node.gpus if g.fallen_off_bus)
    for device in sysfs.pci_gpus:
        if device.address in listed or device.driver not in ("nvidia", None):
            continue  # listed, or handed to another driver on purpose (vfio-pci passthrough)
        if lost:
            lost -= 1  # already reported by NVML as lost
            continue
        binding = "bound to the nvidia driver" if device.driver else "bound to no driver"
        message = f"NVIDIA GPU {device.address} is on the PCI bus, {binding}, but NVML does not list it"
        node.probe_errors.append(ProbeError(probe="sysfs", message=message))


def _pair_acs(gpus: list[GpuFacts], pairs: list[GpuPairFacts], sysfs: sysfs_probe.SysfsResult) -> None:
    """Bridges with ACS on the PCIe path between each pair (below their common ancestor)."""
    by_address = {device.address: device for device in sysfs.pci_gpus}
    ancestors: dict[int, list[str]] = {}
    for gpu in gpus:
        if gpu.pci_bus_id:
            device = by_address.get(sysfs_probe.sysfs_bus_id(gpu.pci_bus_id))
            if device is not None:
                ancestors[gpu.index] = device.ancestors
    for pair in pairs:
        if pair.gpu_a not in ancestors or pair.gpu_b not in ancestors:
            pair.unknown["acs_bridges"] = "GPU not found in /sys/bus/pci/devices"
            continue
        path = set(ancestors[pair.gpu_a]) ^ set(ancestors[pair.gpu_b])
        states = {bridge: sysfs.acs.get(bridge) for bridge in path}
        pair.acs_bridges = sorted(b for b, state in states.items() if state is not None and state.enabled)
        if any(state is None or state.enabled is None for state in states.values()):
            pair.unknown["acs_bridges"] = "ACS state of a bridge on the path not readable"


def _merge_fabric(node: NodeFacts, sysfs: Any, fs: FsRoot, attempt: Any, limits: Deadlines) -> None:
    fabric = node.fabric
    if sysfs is not None and sysfs.nvswitch_count is not None:
        fabric.nvswitch_count = sysfs.nvswitch_count
    else:
        fabric.unknown["nvswitch_count"] = "no PCI devices in sysfs"
    if not fs.is_host:
        for name in ("fabric_manager_running", "fabric_manager_version"):
            fabric.unknown[name] = f"services are not queried under a root ({fs.label})"
        return
    from gpudoctor.probes.fabric_manager import probe_fabric_manager

    found = attempt("fabric_manager", probe_fabric_manager, limits.commands_s)
    if found is None:
        mark_all(fabric, ("fabric_manager_running", "fabric_manager_version"), "fabric manager probe failed")
        return
    fabric.fabric_manager_running, fabric.fabric_manager_version, unknown = found
    fabric.unknown.update(unknown)
