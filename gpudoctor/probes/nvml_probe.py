"""Driver, GPU and topology facts through the NVML boundary.

Each NVML call that fails leaves its fact unknown with "NVML: <error>" as the
reason. NotSupported from a call for an optional feature (ECC, page retirement,
row remapping, NVLink, fabric, MIG, persistence) is NVML's answer that the board
lacks it, unless the board is known to have it (an earlier answer, or the GPU
table's `ecc` column for ECC: see _ecc and docs/threat-model.md). Any other error
is a failure and the fact is also marked failed (facts.mark_failed), so no rule
can pass or skip over it. A GPU that answers GpuIsLost to any call is recorded as
fallen off the bus. Nothing here raises: the collector runs this in a worker
thread with a deadline, because a wedged driver can hang any NVML call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from gpudoctor.facts import DriverFacts, GpuFacts, GpuPairFacts, MigDeviceFacts, mark_failed
from gpudoctor.probes.gpumodel import expected_memory_facts, fill_model_facts, table_says
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
VIRTUALIZATION_VGPU = 2  # nvmlGpuVirtualizationMode_t NVML_GPU_VIRTUALIZATION_MODE_VGPU: a vGPU guest

# Calls for features some boards do not have: NotSupported from them is an answer
# (nvml.h: "NVML_ERROR_NOT_SUPPORTED if the device does not support this feature").
# Not listed: persistence mode ("All products. For Linux only."), NVLink remote PCI
# info (only asked for links that answered), and every identity query.
OPTIONAL_FEATURES = frozenset(
    {
        "nvmlDeviceGetEccMode",
        "nvmlDeviceGetTotalEccErrors",
        "nvmlDeviceGetRetiredPagesPendingStatus",
        "nvmlDeviceGetRemappedRows",
        "nvmlDeviceGetNvLinkState",  # at link 0 only: a GPU whose link 0 answered has NVLink
        "nvmlDeviceGetGpuFabricInfo",
        "nvmlDeviceGetMigMode",
    }
)

_PAIR_CALLS = frozenset({"nvmlDeviceGetP2PStatus", "nvmlDeviceGetTopologyCommonAncestor"})


def is_answer(function: str, error: NvmlError) -> bool:
    """True when the error is NVML saying the feature does not exist, not a failure."""
    return error.name == "NotSupported" and function in OPTIONAL_FEATURES


class NvmlResult:
    """What the NVML probe found; merged into NodeFacts by the collector."""

    def __init__(self) -> None:
        self.driver = DriverFacts()
        self.gpus: list[GpuFacts] = []
        self.pairs: list[GpuPairFacts] = []
        self.pairs_unknown: str | None = None
        # Why the GPU list itself is not what NVML would list (count failed), if so.
        self.gpus_failed: str | None = None
        # Failed calls that no fact field holds (the collector makes them probe errors).
        self.errors: list[str] = []
        self.initialised = False


class _Asker:
    """Calls NVML and turns errors into unknown reasons on the fact object."""

    def __init__(self, nvml: NvmlBackend) -> None:
        self.nvml = nvml
        self.lost: set[int] = set()  # GPU indexes that answered GpuIsLost to some call

    def failed(
        self,
        target: Any,
        names: tuple[str, ...] | str,
        function: str,
        exc: NvmlError,
        *args: Arg,
        has_feature: str | None = None,
    ) -> None:
        """Record an NVML error on `names` of `target`: an answer (is_answer) or a failure.
        `has_feature` says why the GPU is known to have the feature (an earlier answer, the GPU
        table): then NotSupported cannot be the answer "no such feature" and is a failure too."""
        if exc.name == "GpuIsLost" and function not in _PAIR_CALLS and args and isinstance(args[0], int):
            self.lost.add(args[0])  # a pair call does not say which of its two GPUs is lost
        answer = is_answer(function, exc)
        reason = f"NVML: {exc.name}"
        if answer and has_feature:
            reason, answer = f"{reason}, but {has_feature}", False
        for name in (names,) if isinstance(names, str) else names:
            if answer:
                target.unknown[name] = reason
            else:
                mark_failed(target, name, reason)

    def fill(
        self,
        target: Any,
        name: str,
        function: str,
        *args: Arg,
        convert: Callable[[Any], Any] = lambda v: v,
        has_feature: str | None = None,
    ) -> Any:
        try:
            raw = self.nvml.call(function, *args)
        except NvmlError as exc:
            self.failed(target, name, function, exc, *args, has_feature=has_feature)
            return None
        value = convert(raw)
        if value is None:
            mark_failed(target, name, f"NVML: unexpected answer {raw!r} from {function}")
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
        # NVML is there but would not start (NoPermission, Unknown, ...): every fact it
        # would have given, the GPU list included, is a failure, not an answer.
        result.gpus_failed = reason
        for name in (
            "present",
            "version",
            "branch",
            "cuda_version",
            "nvml_version",
            "library_mismatch",
            "attached_gpus",
        ):
            mark_failed(driver, name, reason)
    for name in ("version", "branch", "cuda_version", "nvml_version", "attached_gpus"):
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
        mark_failed(driver, "branch", driver.unknown.get("version", "driver version not understood"))
    ask.fill(driver, "nvml_version", "nvmlSystemGetNVMLVersion")
    ask.fill(driver, "cuda_version", "nvmlSystemGetCudaDriverVersion_v2", convert=cuda_version_from_int)
    try:
        count = int(nvml.call("nvmlDeviceGetCount"))
    except NvmlError as exc:
        result.pairs_unknown = result.gpus_failed = f"NVML: {exc.name} (device count)"
        mark_failed(driver, "attached_gpus", result.gpus_failed)
        return
    driver.attached_gpus = count
    result.gpus = [_gpu(ask, index) for index in range(count)]
    result.pairs = _pairs(ask, result.gpus)
    result.errors.extend(_nvlink_counts(ask, result.gpus, result.pairs))
    for gpu in result.gpus:
        if gpu.index in ask.lost:
            gpu.fallen_off_bus = True


def _gpu(ask: _Asker, index: int) -> GpuFacts:
    gpu = GpuFacts(index=index)
    try:
        ask.nvml.call("nvmlDeviceGetHandleByIndex", index)
    except NvmlError as exc:
        gpu.fallen_off_bus = exc.name == "GpuIsLost"
        reason = "GPU has fallen off the bus (NVML: GpuIsLost)" if gpu.fallen_off_bus else f"NVML: {exc.name}"
        for name in ("uuid", "name", "pci_bus_id", "compute_capability", "architecture"):
            mark_failed(gpu, name, reason)
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
            gpu.mig_devices = _mig_devices(ask, gpu)
    else:
        _same_as(gpu, "mig_mode_pending", "mig_mode")
    _ecc(ask, gpu)
    rows = ask.fill(
        gpu, "remapped_rows_pending", "nvmlDeviceGetRemappedRows", index, convert=lambda r: bool(r[2])
    )
    if rows is not None:
        gpu.remapped_rows_failure = bool(rows[3])
    else:
        _same_as(gpu, "remapped_rows_failure", "remapped_rows_pending")
    ask.fill(gpu, "persistence_mode", "nvmlDeviceGetPersistenceMode", index, convert=ENABLED.get)
    _nvlinks(ask, gpu)
    _fabric(ask, gpu)
    return gpu


def _ecc(ask: _Asker, gpu: GpuFacts) -> None:
    """ECC mode, uncorrectable counters and page retirement. NotSupported is NVML's answer "no
    ECC" except for the facts this board must report (gpumodel.expected_memory_facts): there it
    is a failed query."""
    index = gpu.index
    try:
        guest = ask.nvml.call("nvmlDeviceGetVirtualizationMode", index) == VIRTUALIZATION_VGPU
    except NvmlError:
        guest = False  # not known to be a vGPU guest: the board's ECC is expected
    enabled = lambda m: ENABLED.get(m[0])  # noqa: E731 - NVML's (current, pending) pair
    board = expected_memory_facts(gpu, guest).get("ecc_mode")
    ask.fill(gpu, "ecc_mode", "nvmlDeviceGetEccMode", index, convert=enabled, has_feature=board)
    expected = expected_memory_facts(gpu, guest)  # now that the ECC mode is known
    for counter in ("volatile", "aggregate"):
        name = f"ecc_errors_uncorrectable_{counter}"
        known = expected.get(name)
        ask.fill(gpu, name, "nvmlDeviceGetTotalEccErrors", index, "uncorrected", counter, has_feature=known)
    known = expected.get("retired_pages_pending")
    ask.fill(
        gpu,
        "retired_pages_pending",
        "nvmlDeviceGetRetiredPagesPendingStatus",
        index,
        convert=bool,
        has_feature=known,
    )


def _same_as(gpu: GpuFacts, name: str, source: str) -> None:
    """`name` comes from the same NVML answer as `source`, which did not come."""
    if source in gpu.failed:
        mark_failed(gpu, name, gpu.unknown[source])
    else:
        gpu.unknown[name] = gpu.unknown[source]


def _cc(value: Any) -> str | None:
    return f"{value[0]}.{value[1]}" if isinstance(value, list) and len(value) == 2 else None


def _pci(ask: _Asker, gpu: GpuFacts) -> None:
    try:
        info = ask.nvml.call("nvmlDeviceGetPciInfo", gpu.index)
    except NvmlError as exc:
        ask.failed(
            gpu, ("pci_bus_id", "pci_device_id", "pci_subsystem_id"), "nvmlDeviceGetPciInfo", exc, gpu.index
        )
        return
    gpu.pci_bus_id = info["busId"]
    # pciDeviceId packs the device id in the upper 16 bits over vendor 10DE.
    gpu.pci_device_id = f"{info['pciDeviceId'] >> 16:04X}"
    gpu.pci_subsystem_id = f"{info['pciSubSystemId']:08X}"


def _mig_devices(ask: _Asker, gpu: GpuFacts) -> list[MigDeviceFacts]:
    index = gpu.index
    try:
        slots = int(ask.nvml.call("nvmlDeviceGetMaxMigDeviceCount", index))
    except NvmlError as exc:
        # Only asked when MIG mode is enabled: the GPU has MIG, so no error is an answer.
        ask.failed(
            gpu,
            "mig_devices",
            "nvmlDeviceGetMaxMigDeviceCount",
            exc,
            index,
            has_feature="MIG mode is enabled",
        )
        return []
    devices = []
    for slot in range(slots):
        try:
            ask.nvml.call("nvmlDeviceGetMigDeviceHandleByIndex", index, slot)
        except NvmlError as exc:
            if exc.name != "NotFound":  # an empty slot answers NotFound
                ask.failed(gpu, "mig_devices", "nvmlDeviceGetMigDeviceHandleByIndex", exc, index)
            continue
        mig = f"{index}/{slot}"
        device = MigDeviceFacts(index=slot)
        for name, function, convert in (
            ("uuid", "nvmlDeviceGetUUID", str),
            ("memory_total_mib", "nvmlDeviceGetMemoryInfo", lambda m: m["total"] // 2**20),
        ):
            # MigDeviceFacts has no reasons map: a field NVML does not answer stays null,
            # and the GPU's mig_devices is marked failed.
            try:
                setattr(device, name, convert(ask.nvml.call(function, mig)))
            except NvmlError as exc:
                ask.failed(gpu, "mig_devices", function, exc, index)
        devices.append(device)
    return devices


def _nvlinks(ask: _Asker, gpu: GpuFacts) -> None:
    up = total = 0
    first_error: str | None = None
    failure: NvmlError | None = None
    known: str | None = "earlier links answered"
    # An NVSwitch-baseboard GPU has NVLink, so NotSupported at link 0 is a failure there; not
    # under MIG, where NVIDIA's MIG guide rules out GPU-to-GPU NVLink and the state may go unreported.
    board = None
    if gpu.mig_mode != "enabled":
        board = table_says(
            gpu, "nvswitch_baseboard", "sits on NVSwitch baseboards, which connect GPUs by NVLink"
        )
    for link in range(NVLINK_MAX_LINKS):
        try:
            state = ask.nvml.call("nvmlDeviceGetNvLinkState", gpu.index, link)
        except NvmlError as exc:
            first_error = first_error or exc.name
            if exc.name == "NotSupported" and (link > 0 or board):
                failure = exc  # links 0..link-1 answered, or the board has NVLink: this link failed
                known = board if link == 0 else "earlier links answered"
                break
            if exc.name in ("InvalidArgument", "NotSupported", "NotRecorded"):
                break  # past the GPU's last link, or no NVLink at all
            failure = failure or exc  # a link that would not answer: the counts are not known
            continue
        total += 1
        up += 1 if state else 0
    if failure is not None:
        names = ("nvlink_links_up", "nvlink_links_total")
        ask.failed(gpu, names, "nvmlDeviceGetNvLinkState", failure, gpu.index, has_feature=known)
    elif total:
        gpu.nvlink_links_up, gpu.nvlink_links_total = up, total
    else:
        for name in ("nvlink_links_up", "nvlink_links_total"):
            gpu.unknown[name] = f"NVML: {first_error or 'no links'}"


def _fabric(ask: _Asker, gpu: GpuFacts) -> None:
    try:
        info = ask.nvml.call("nvmlDeviceGetGpuFabricInfo", gpu.index)
    except NvmlError as exc:
        names = ("fabric_state", "fabric_status", "fabric_clique_id", "fabric_cluster_uuid")
        ask.failed(gpu, names, "nvmlDeviceGetGpuFabricInfo", exc, gpu.index)
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


def _nvlink_counts(ask: _Asker, gpus: list[GpuFacts], pairs: list[GpuPairFacts]) -> list[str]:
    """Direct NVLinks between each pair, from each link's remote PCI address; returns the
    failed calls (a link that answered its state but not its remote end)."""
    by_bus = {g.pci_bus_id.upper(): g.index for g in gpus if g.pci_bus_id}
    links: dict[tuple[int, int], int] = {}
    through_switch: set[int] = set()
    unanswered: dict[int, NvmlError] = {}
    for gpu in gpus:
        for link in range(gpu.nvlink_links_total or 0):
            try:
                remote = str(ask.nvml.call("nvmlDeviceGetNvLinkRemotePciInfo", gpu.index, link)).upper()
            except NvmlError as exc:
                unanswered.setdefault(gpu.index, exc)
                continue
            peer = by_bus.get(remote)
            if peer is None:
                through_switch.add(gpu.index)
            elif peer != gpu.index:
                key = (min(gpu.index, peer), max(gpu.index, peer))
                links[key] = links.get(key, 0) + 1
    for pair in pairs:
        failure = unanswered.get(pair.gpu_a) or unanswered.get(pair.gpu_b)
        if failure is not None:
            ask.failed(pair, "nvlink_count", "nvmlDeviceGetNvLinkRemotePciInfo", failure)
            continue
        if pair.gpu_a in through_switch or pair.gpu_b in through_switch:
            pair.unknown["nvlink_count"] = "NVLinks end at an NVSwitch, not at the peer GPU"
            continue
        # Both ends count the same link once each.
        pair.nvlink_count = links.get((pair.gpu_a, pair.gpu_b), 0) // 2
    return [
        f"nvmlDeviceGetNvLinkRemotePciInfo (GPU {index}): {exc.name}" for index, exc in unanswered.items()
    ]
