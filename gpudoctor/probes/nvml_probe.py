"""Driver, GPU and topology facts through the NVML boundary.

Each NVML call that fails leaves its fact unknown with "NVML: <error>" as the
reason; a GPU whose handle answers GpuIsLost is recorded as fallen off the
bus. Nothing here raises: the collector runs this in a worker thread with a
deadline, because a wedged driver can hang any NVML call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from gpudoctor.facts import DriverFacts, GpuFacts, GpuPairFacts, MigDeviceFacts
from gpudoctor.probes.gpumodel import fill_model_facts
from gpudoctor.probes.nvml_api import Arg, NvmlBackend, NvmlError
from gpudoctor.probes.values import branch_of, cuda_version_from_int

NO_DRIVER = "no NVIDIA driver"
LIBRARY_NOT_FOUND = f"{NO_DRIVER}: libnvidia-ml.so.1 not found"

# nvmlInit errors that mean there is no usable driver at all.
_ABSENT = {
    "LibraryNotFound": LIBRARY_NOT_FOUND,
    "DriverNotLoaded": f"{NO_DRIVER}: the NVIDIA kernel module is not loaded (NVML: DriverNotLoaded)",
}

# nvmlBrandType_t values as nvidia-smi prints them in <product_brand>.
BRANDS = {
    0: "Unknown",
    1: "Quadro",
    2: "Tesla",
    3: "NVS",
    4: "Grid",
    5: "GeForce",
    6: "Titan",
    7: "NVIDIA Virtual Applications",
    8: "NVIDIA Virtual PC",
    9: "NVIDIA Virtual Compute Server",
    10: "NVIDIA RTX Virtual Workstation",
    11: "NVIDIA Cloud Gaming",
    12: "Quadro RTX",
    13: "NVIDIA RTX",
    14: "NVIDIA",
    15: "GeForce RTX",
    16: "Titan RTX",
}
P2P_STATUS = {
    0: "ok",
    1: "chipset_not_supported",
    2: "gpu_not_supported",
    3: "ioh_topology_not_supported",
    4: "disabled_by_regkey",
    5: "not_supported",
    6: "unknown",
}
COMMON_ANCESTOR = {0: "internal", 10: "single", 20: "multiple", 30: "hostbridge", 40: "node", 50: "system"}
FABRIC_STATE = {0: "not_supported", 1: "not_started", 2: "in_progress", 3: "completed"}
NVLINK_MAX_LINKS = 18  # NVLink 4/5 GPUs have 18 links; NVML answers InvalidArgument past the last.
ENABLED = {0: "disabled", 1: "enabled"}


class NvmlResult:
    """What the NVML probe found; merged into NodeFacts by the collector."""

    def __init__(self) -> None:
        self.driver = DriverFacts()
        self.gpus: list[GpuFacts] = []
        self.pairs: list[GpuPairFacts] = []
        self.pairs_unknown: str | None = None
        self.initialised = False


class _Asker:
    """Calls NVML and turns errors into unknown reasons on the fact object."""

    def __init__(self, nvml: NvmlBackend) -> None:
        self.nvml = nvml

    def fill(
        self,
        target: Any,
        name: str,
        function: str,
        *args: Arg,
        convert: Callable[[Any], Any] = lambda v: v,
    ) -> Any:
        try:
            raw = self.nvml.call(function, *args)
        except NvmlError as exc:
            target.unknown[name] = f"NVML: {exc.name}"
            return None
        value = convert(raw)
        if value is None:
            target.unknown[name] = f"NVML: unexpected answer {raw!r} from {function}"
        setattr(target, name, value)
        return raw


def probe_nvml(nvml: NvmlBackend) -> NvmlResult:
    result = NvmlResult()
    driver = result.driver
    try:
        nvml.call("nvmlInit")
    except NvmlError as exc:
        _init_failed(result, exc)
        return result
    result.initialised = True
    try:
        _probe_initialised(nvml, result)
    finally:
        # The facts are in; a failing shutdown changes none of them.
        with contextlib.suppress(NvmlError):
            nvml.call("nvmlShutdown")
    driver.present = True
    return result


def _init_failed(result: NvmlResult, exc: NvmlError) -> None:
    driver = result.driver
    reason = f"NVML: {exc.name}"
    if exc.name in _ABSENT:
        driver.present = False
        driver.unknown["present"] = _ABSENT[exc.name]
        reason = _ABSENT[exc.name]
    elif exc.name == "LibRmVersionMismatch":
        # "Failed to initialize NVML: Driver/library version mismatch": a driver is
        # there, but its user-space library and the loaded kernel module differ.
        driver.present = True
        driver.library_mismatch = True
        reason = "NVML: Driver/library version mismatch (LibRmVersionMismatch)"
    else:
        driver.unknown["present"] = reason
    for name in ("version", "branch", "cuda_version", "nvml_version"):
        driver.unknown[name] = reason
    if driver.library_mismatch is None:
        driver.unknown["library_mismatch"] = reason
    result.pairs_unknown = reason


def _probe_initialised(nvml: NvmlBackend, result: NvmlResult) -> None:
    ask = _Asker(nvml)
    driver = result.driver
    # nvmlInit succeeding means library and kernel module agree.
    driver.library_mismatch = False
    ask.fill(driver, "version", "nvmlSystemGetDriverVersion")
    driver.branch = branch_of(driver.version)
    if driver.branch is None:
        driver.unknown["branch"] = driver.unknown.get("version", "driver version not understood")
    ask.fill(driver, "nvml_version", "nvmlSystemGetNVMLVersion")
    ask.fill(driver, "cuda_version", "nvmlSystemGetCudaDriverVersion_v2", convert=cuda_version_from_int)
    try:
        count = int(nvml.call("nvmlDeviceGetCount"))
    except NvmlError as exc:
        result.pairs_unknown = f"NVML: {exc.name} (device count)"
        return
    result.gpus = [_gpu(ask, index) for index in range(count)]
    result.pairs = _pairs(ask, result.gpus)
    _nvlink_counts(ask, result.gpus, result.pairs)


def _gpu(ask: _Asker, index: int) -> GpuFacts:
    gpu = GpuFacts(index=index)
    try:
        ask.nvml.call("nvmlDeviceGetHandleByIndex", index)
    except NvmlError as exc:
        gpu.fallen_off_bus = exc.name == "GpuIsLost"
        reason = "GPU has fallen off the bus (NVML: GpuIsLost)" if gpu.fallen_off_bus else f"NVML: {exc.name}"
        for name in ("uuid", "name", "pci_bus_id", "compute_capability", "architecture"):
            gpu.unknown[name] = reason
        return gpu
    ask.fill(gpu, "uuid", "nvmlDeviceGetUUID", index)
    ask.fill(gpu, "name", "nvmlDeviceGetName", index)
    ask.fill(gpu, "brand", "nvmlDeviceGetBrand", index, convert=BRANDS.get)
    _pci(ask, gpu)
    cc_raw = ask.fill(gpu, "compute_capability", "nvmlDeviceGetCudaComputeCapability", index, convert=_cc)
    fill_model_facts(gpu, _cc(cc_raw) if cc_raw is not None else None, None)
    ask.fill(gpu, "memory_total_mib", "nvmlDeviceGetMemoryInfo", index, convert=lambda m: m["total"] // 2**20)
    mig = ask.fill(gpu, "mig_mode", "nvmlDeviceGetMigMode", index, convert=lambda m: ENABLED.get(m[0]))
    if mig is not None:
        gpu.mig_mode_pending = ENABLED.get(mig[1])
        if gpu.mig_mode == "enabled":
            gpu.mig_devices = _mig_devices(ask, index)
    else:
        gpu.unknown["mig_mode_pending"] = gpu.unknown["mig_mode"]
    ask.fill(gpu, "ecc_mode", "nvmlDeviceGetEccMode", index, convert=lambda m: ENABLED.get(m[0]))
    for counter in ("volatile", "aggregate"):
        name = f"ecc_errors_uncorrectable_{counter}"
        ask.fill(gpu, name, "nvmlDeviceGetTotalEccErrors", index, "uncorrected", counter)
    ask.fill(gpu, "retired_pages_pending", "nvmlDeviceGetRetiredPagesPendingStatus", index, convert=bool)
    rows = ask.fill(
        gpu, "remapped_rows_pending", "nvmlDeviceGetRemappedRows", index, convert=lambda r: bool(r[2])
    )
    if rows is not None:
        gpu.remapped_rows_failure = bool(rows[3])
    else:
        gpu.unknown["remapped_rows_failure"] = gpu.unknown["remapped_rows_pending"]
    ask.fill(gpu, "persistence_mode", "nvmlDeviceGetPersistenceMode", index, convert=ENABLED.get)
    _nvlinks(ask, gpu)
    _fabric(ask, gpu)
    return gpu


def _cc(value: Any) -> str | None:
    return f"{value[0]}.{value[1]}" if isinstance(value, list) and len(value) == 2 else None


def _pci(ask: _Asker, gpu: GpuFacts) -> None:
    try:
        info = ask.nvml.call("nvmlDeviceGetPciInfo", gpu.index)
    except NvmlError as exc:
        for name in ("pci_bus_id", "pci_device_id", "pci_subsystem_id"):
            gpu.unknown[name] = f"NVML: {exc.name}"
        return
    gpu.pci_bus_id = info["busId"]
    # pciDeviceId packs the device id in the upper 16 bits over vendor 10DE.
    gpu.pci_device_id = f"{info['pciDeviceId'] >> 16:04X}"
    gpu.pci_subsystem_id = f"{info['pciSubSystemId']:08X}"


def _mig_devices(ask: _Asker, index: int) -> list[MigDeviceFacts]:
    try:
        slots = int(ask.nvml.call("nvmlDeviceGetMaxMigDeviceCount", index))
    except NvmlError:
        return []
    devices = []
    for slot in range(slots):
        try:
            ask.nvml.call("nvmlDeviceGetMigDeviceHandleByIndex", index, slot)
        except NvmlError:
            continue  # an empty slot answers NotFound
        mig = f"{index}/{slot}"
        device = MigDeviceFacts(index=slot)
        for name, function, convert in (
            ("uuid", "nvmlDeviceGetUUID", str),
            ("memory_total_mib", "nvmlDeviceGetMemoryInfo", lambda m: m["total"] // 2**20),
        ):
            # MigDeviceFacts has no reasons map; a field NVML does not answer stays null.
            with contextlib.suppress(NvmlError):
                setattr(device, name, convert(ask.nvml.call(function, mig)))
        devices.append(device)
    return devices


def _nvlinks(ask: _Asker, gpu: GpuFacts) -> None:
    up = total = 0
    first_error: str | None = None
    for link in range(NVLINK_MAX_LINKS):
        try:
            state = ask.nvml.call("nvmlDeviceGetNvLinkState", gpu.index, link)
        except NvmlError as exc:
            first_error = first_error or exc.name
            if exc.name in ("InvalidArgument", "NotSupported", "NotRecorded"):
                break  # past the GPU's last link, or no NVLink at all
            continue
        total += 1
        up += 1 if state else 0
    if total:
        gpu.nvlink_links_up, gpu.nvlink_links_total = up, total
    else:
        for name in ("nvlink_links_up", "nvlink_links_total"):
            gpu.unknown[name] = f"NVML: {first_error or 'no links'}"


def _fabric(ask: _Asker, gpu: GpuFacts) -> None:
    try:
        info = ask.nvml.call("nvmlDeviceGetGpuFabricInfo", gpu.index)
    except NvmlError as exc:
        for name in ("fabric_state", "fabric_status", "fabric_clique_id", "fabric_cluster_uuid"):
            gpu.unknown[name] = f"NVML: {exc.name}"
        return
    gpu.fabric_state = FABRIC_STATE.get(info["state"])
    if gpu.fabric_state == "completed":
        gpu.fabric_status = "success" if info["status"] == 0 else f"nvml error {info['status']}"
        gpu.fabric_clique_id = info["cliqueId"]
        gpu.fabric_cluster_uuid = info["clusterUuid"]
    else:
        for name in ("fabric_status", "fabric_clique_id", "fabric_cluster_uuid"):
            gpu.unknown[name] = f"fabric registration {gpu.fabric_state}"


def _pairs(ask: _Asker, gpus: list[GpuFacts]) -> list[GpuPairFacts]:
    live = [g.index for g in gpus if not g.fallen_off_bus]
    pairs = []
    for position, a in enumerate(live):
        for b in live[position + 1 :]:
            pair = GpuPairFacts(gpu_a=a, gpu_b=b)
            for kind in ("read", "write", "nvlink", "atomics"):
                ask.fill(pair, f"p2p_{kind}", "nvmlDeviceGetP2PStatus", a, b, kind, convert=P2P_STATUS.get)
            ask.fill(
                pair,
                "common_ancestor",
                "nvmlDeviceGetTopologyCommonAncestor",
                a,
                b,
                convert=COMMON_ANCESTOR.get,
            )
            pairs.append(pair)
    return pairs


def _nvlink_counts(ask: _Asker, gpus: list[GpuFacts], pairs: list[GpuPairFacts]) -> None:
    """Direct NVLinks between each pair, from each link's remote PCI address."""
    by_bus = {g.pci_bus_id.upper(): g.index for g in gpus if g.pci_bus_id}
    links: dict[tuple[int, int], int] = {}
    through_switch: set[int] = set()
    for gpu in gpus:
        for link in range(gpu.nvlink_links_total or 0):
            try:
                remote = str(ask.nvml.call("nvmlDeviceGetNvLinkRemotePciInfo", gpu.index, link)).upper()
            except NvmlError:
                continue
            peer = by_bus.get(remote)
            if peer is None:
                through_switch.add(gpu.index)
            elif peer != gpu.index:
                key = (min(gpu.index, peer), max(gpu.index, peer))
                links[key] = links.get(key, 0) + 1
    for pair in pairs:
        if pair.gpu_a in through_switch or pair.gpu_b in through_switch:
            pair.unknown["nvlink_count"] = "NVLinks end at an NVSwitch, not at the peer GPU"
            continue
        # Both ends count the same link once each.
        pair.nvlink_count = links.get((pair.gpu_a, pair.gpu_b), 0) // 2
