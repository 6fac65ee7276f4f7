"""The one typed fact model: what probes fill and what rules read.

Every fact may be unknown. An unknown fact is `None` and its reason is kept in
the owning object's `unknown` mapping (field name -> reason), e.g.
`gpu.unknown["ecc_mode"] = "NVML: Not Supported"`. Nothing is ever guessed.

Two kinds of unknown are kept apart: an *answer* (NVML says a GeForce board has no
ECC; an nvidia-smi XML has no P2P matrix) and a *failure* (the query errored, timed
out, the GPU was lost). A failed fact is also listed in the owning object's `failed`
list (see `mark_failed`): the engine never lets a rule that reads one pass or skip
silently, it makes that rule `unknown` with the failure as the reason. A name stays
in `failed` when another source filled the value in afterwards (the GPU table, the
kernel module): the value is then used, but the failure still keeps the node from
passing (rule GD-NODE-003).

The model round-trips through JSON: `to_dict()` produces the `node` / `image`
objects of the report, `NodeFacts.from_dict()` loads them back, so a saved
report reproduces every verdict offline.

Naming: `driver.cuda_version` is the newest CUDA the *driver* supports (what
nvidia-smi prints as "CUDA Version"); `image.cuda_version` is the CUDA runtime
*inside an image*. They are never mixed.
"""

from __future__ import annotations

import types
import typing
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from typing import Any, TypeVar

T = TypeVar("T")

Unknown = dict[str, str]


def mark_failed(facts: Any, name: str, reason: str) -> None:
    """Fact `name` of `facts` could not be collected (a probe error, not an answer)."""
    facts.unknown[name] = reason
    if name not in facts.failed:
        facts.failed.append(name)


def mark_all(facts: Any, names: tuple[str, ...], reason: str) -> None:
    """Facts `names` of `facts` could not be collected: the one source they all come from failed."""
    for name in names:
        mark_failed(facts, name, reason)


def mark_all_failed(facts: Any, reason: str) -> None:
    """Every fact of `facts` (a record with `unknown` and `failed`): its probe failed."""
    mark_all(facts, tuple(f.name for f in fields(facts) if f.name not in ("unknown", "failed")), reason)


@dataclass
class ProbeError:
    """A probe that failed or timed out; the scan goes on without its facts."""

    probe: str
    message: str


@dataclass
class HostFacts:
    hostname: str | None = None
    os_release: str | None = None  # PRETTY_NAME from /etc/os-release
    kernel: str | None = None  # uname -r
    cpu_arch: str | None = None  # x86_64 / aarch64 (uname -m)
    unknown: Unknown = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)  # `unknown` names a probe failed to get


@dataclass
class DriverFacts:
    # False when no NVIDIA driver could be found at all (no libnvidia-ml, no
    # /proc/driver/nvidia); None when we could not tell.
    present: bool | None = None
    version: str | None = None  # "580.65.06"
    branch: int | None = None  # 580: the first component of version
    cuda_version: str | None = None  # "13.0": newest CUDA the driver supports
    kernel_module: str | None = None  # "open" | "proprietary"
    kernel_module_version: str | None = None  # from /proc/driver/nvidia/version
    nvml_version: str | None = None  # NVML library version, "13.580.65.06"
    # True when the user-space library and the loaded kernel module disagree
    # ("Failed to initialize NVML: Driver/library version mismatch").
    library_mismatch: bool | None = None
    # GPUs the driver says are attached (nvidia-smi <attached_gpus>, nvmlDeviceGetCount); more
    # than the GPUs described means some fell off the bus or are hidden.
    attached_gpus: int | None = None
    unknown: Unknown = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)  # `unknown` names a probe failed to get


@dataclass
class MigDeviceFacts:
    index: int | None = None
    uuid: str | None = None
    profile: str | None = None  # "1g.10gb"
    memory_total_mib: int | None = None


@dataclass
class GpuFacts:
    index: int
    uuid: str | None = None
    name: str | None = None  # "NVIDIA H100 80GB HBM3"
    brand: str | None = None  # NVML brand name as nvidia-smi prints it: "Tesla", "GeForce", "NVIDIA", ...
    pci_bus_id: str | None = None  # "00000000:1B:00.0"
    pci_device_id: str | None = None  # PCI device id, 4 upper-case hex digits: "2330"
    pci_subsystem_id: str | None = None  # 8 hex digits as NVML reports it: "16C110DE"
    compute_capability: str | None = None  # "9.0"
    architecture: str | None = None  # kepler/maxwell/pascal/volta/turing/ampere/ada/hopper/blackwell/rubin
    memory_total_mib: int | None = None
    mig_mode: str | None = None  # "enabled" | "disabled" (current mode)
    mig_mode_pending: str | None = None
    mig_devices: list[MigDeviceFacts] = field(default_factory=list)
    ecc_mode: str | None = None  # "enabled" | "disabled"
    ecc_errors_uncorrectable_volatile: int | None = None
    ecc_errors_uncorrectable_aggregate: int | None = None
    retired_pages_pending: bool | None = None  # page retirement (pre-Ampere)
    remapped_rows_pending: bool | None = None  # row remapping (Ampere+)
    remapped_rows_failure: bool | None = None
    persistence_mode: str | None = None  # "enabled" | "disabled"
    # True when the GPU is listed by PCI / the driver but does not answer
    # ("GPU has fallen off the bus", NVML_ERROR_GPU_IS_LOST).
    fallen_off_bus: bool = False
    nvlink_links_up: int | None = None
    nvlink_links_total: int | None = None
    fabric_state: str | None = None  # "not_supported" | "not_started" | "in_progress" | "completed"
    fabric_status: str | None = None  # "success" or the registration error, meaningful when completed
    fabric_clique_id: int | None = None
    fabric_cluster_uuid: str | None = None
    unknown: Unknown = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)  # `unknown` names a probe failed to get


@dataclass
class GpuPairFacts:
    """One unordered GPU pair (gpu_a < gpu_b), as NVML reports it."""

    gpu_a: int
    gpu_b: int
    # P2P statuses as lower-case names of nvmlGpuP2PStatus_t without the prefix:
    # "ok", "chipset_not_supported", "gpu_not_supported", "ioh_topology_not_supported",
    # "disabled_by_regkey", "not_supported", "unknown".
    p2p_read: str | None = None
    p2p_write: str | None = None
    p2p_nvlink: str | None = None
    p2p_atomics: str | None = None
    # nvmlDeviceGetTopologyCommonAncestor: "internal" | "single" | "multiple" |
    # "hostbridge" | "node" | "system"; nvidia-smi topo -m names in comments of
    # gpudoctor.probes.topology.
    common_ancestor: str | None = None
    nvlink_count: int | None = None  # bonded NVLinks between the pair ("NV18" -> 18)
    # PCIe bridges between the two GPUs with ACS source validation on (sysfs).
    acs_bridges: list[str] = field(default_factory=list)
    unknown: Unknown = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)  # `unknown` names a probe failed to get


@dataclass
class TopologyFacts:
    pairs: list[GpuPairFacts] = field(default_factory=list)
    iommu_active: bool | None = None
    iommu_mode: str | None = None  # "passthrough" | "translated" | None
    # Every PCIe bridge above a GPU that has ACS request redirection enabled.
    acs_enabled_bridges: list[str] = field(default_factory=list)
    unknown: Unknown = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)  # `unknown` names a probe failed to get


@dataclass
class FabricFacts:
    nvswitch_count: int | None = None
    fabric_manager_running: bool | None = None
    fabric_manager_version: str | None = None
    unknown: Unknown = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)  # `unknown` names a probe failed to get


@dataclass
class CudaToolkitFacts:
    path: str
    version: str | None = None


@dataclass
class CudartFacts:
    path: str
    version: str | None = None  # from the soname / file name: "12.4.127"


@dataclass
class CudaHostFacts:
    toolkits: list[CudaToolkitFacts] = field(default_factory=list)
    cudart: list[CudartFacts] = field(default_factory=list)
    unknown: Unknown = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)  # `unknown` names a probe failed to get


@dataclass
class CdiSpecFacts:
    """One CDI specification file (/etc/cdi, /var/run/cdi or the toolkit's spec-dirs)."""

    path: str
    kind: str | None = None  # "nvidia.com/gpu"
    cdi_version: str | None = None  # "0.5.0"
    # The driver version the spec was generated for: the version its library mounts name
    # (libcuda.so.<version>, libnvidia-ml.so.<version>) or its --host-driver-version hook argument.
    driver_version: str | None = None
    devices: list[str] = field(default_factory=list)  # device names: "0", "all", "GPU-..."
    error: str | None = None  # why the file could not be read as a CDI spec


@dataclass
class ContainerRuntimeFacts:
    toolkit_version: str | None = None  # nvidia-container-toolkit / nvidia-ctk version
    docker_nvidia_runtime: bool | None = None  # "nvidia" in /etc/docker/daemon.json runtimes
    docker_default_runtime: str | None = None
    cdi_specs: list[str] = field(default_factory=list)  # /etc/cdi, /var/run/cdi
    # Where toolkit_version came from: "nvidia-ctk --version", "/var/lib/dpkg/status", "/var/lib/rpm/rpmdb.sqlite".
    toolkit_version_source: str | None = None
    libnvidia_container_version: str | None = None  # libnvidia-container (nvidia-container-cli)
    libnvidia_container_version_source: str | None = None
    # /etc/nvidia-container-runtime/config.toml: the mode as configured ("auto" when the file
    # leaves it unset, the toolkit's default) and the mode the nvidia runtime then uses:
    # legacy | csv | cdi | jit-cdi ("auto" resolved as the detected toolkit release resolves it).
    mode_configured: str | None = None
    mode: str | None = None
    mode_reason: str | None = None  # how `mode` was decided
    # The toolkit's platform detection (go-nvlib ResolvePlatform): "nvml" | "tegra" | "wsl" | "unknown".
    platform: str | None = None
    disable_require: bool | None = None  # config.toml top-level disable-require
    cuda_compat_mode: str | None = None  # [nvidia-container-runtime.modes.legacy] cuda-compat-mode
    docker_cdi: bool | None = None  # daemon.json features.cdi
    containerd_nvidia_runtime: bool | None = None  # a runtime named "nvidia" in containerd's CRI config
    containerd_default_runtime: str | None = None
    containerd_cdi: bool | None = None  # CRI enable_cdi (default on from containerd 2.0)
    cdi_spec_details: list[CdiSpecFacts] = field(default_factory=list)
    unknown: Unknown = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)  # `unknown` names a probe failed to get


@dataclass
class NodeFacts:
    source: str = "live"  # "live" | "nvidia-smi-xml" | "report"
    collected_at: str | None = None  # ISO 8601 UTC
    host: HostFacts = field(default_factory=HostFacts)
    driver: DriverFacts = field(default_factory=DriverFacts)
    gpus: list[GpuFacts] = field(default_factory=list)
    topology: TopologyFacts = field(default_factory=TopologyFacts)
    fabric: FabricFacts = field(default_factory=FabricFacts)
    cuda_host: CudaHostFacts = field(default_factory=CudaHostFacts)
    container_runtime: ContainerRuntimeFacts = field(default_factory=ContainerRuntimeFacts)
    probe_errors: list[ProbeError] = field(default_factory=list)
    # Node-wide facts, e.g. "gpus" when the GPU list itself could not be read.
    unknown: Unknown = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    # Where each group of facts came from, e.g. {"driver": "NVML (libnvidia-ml.so.1 of this
    # container)", "container_runtime": "host files under /host"}: an in-cluster scan mixes both.
    origins: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NodeFacts:
        return from_dict(cls, data)


# --- image side (preflight issue) -------------------------------------------------


@dataclass
class Platform:
    os: str | None = None
    architecture: str | None = None  # OCI names: amd64, arm64
    variant: str | None = None

    def __str__(self) -> str:
        parts = [self.os or "?", self.architecture or "?"]
        if self.variant:
            parts.append(self.variant)
        return "/".join(parts)


# --- kernels side (kernels issue) -------------------------------------------------


@dataclass
class FatbinEntry:
    kind: str  # "cubin" | "ptx"
    target: str  # "sm_90a", "sm_100f", "sm_80" (PTX entries use sm_XY too)
    ptx_isa: str | None = None  # "8.7" for PTX entries where known
    toolkit_version: str | None = None  # producing CUDA version where known
    compressed: bool = False


@dataclass
class BinaryFacts:
    path: str  # path inside the scanned tree / image
    cubins: list[str] = field(default_factory=list)  # sorted unique targets
    ptx: list[str] = field(default_factory=list)
    compressed: bool = False
    fatbin_entries: list[FatbinEntry] = field(default_factory=list)
    # Per compute capability "9.0": "native" | "jit" | "none"; filled by
    # gpudoctor.kernels.compat for the GPUs asked about.
    per_gpu: dict[str, str] = field(default_factory=dict)
    package: str | None = None  # owning Python distribution, where known
    error: str | None = None  # per-file parse error; the scan goes on


@dataclass
class PackageFacts:
    name: str  # normalised distribution name: "torch", "flash-attn", "nvidia-cudnn-cu12"
    version: str | None = None
    cuda_variant: str | None = None  # "cu130" from "2.14.1+cu130", or from the wheel name
    path: str | None = None
    detail: dict[str, str] = field(default_factory=dict)  # e.g. {"flash_attn_generation": "fa3"}


@dataclass
class KernelScanFacts:
    binaries: list[BinaryFacts] = field(default_factory=list)
    packages: list[PackageFacts] = field(default_factory=list)
    errors: list[ProbeError] = field(default_factory=list)
    # Where these facts came from when not from reading the layers now:
    # {"from": "attestation", "attestation": digest, "tool_version": ..., "not_known": ...}
    source: dict[str, str] = field(default_factory=dict)


@dataclass
class ImageFacts:
    reference: str  # as normalised: "docker.io/library/ubuntu:22.04"
    source: str | None = None  # "registry" | "docker" | "archive" | "fixture"
    source_endpoint: str | None = None  # the mirror or registry that answered: "https://mirror.example"
    digest: str | None = None  # manifest digest of the chosen platform
    index_digest: str | None = None  # digest of the index / manifest list, if any
    platform: Platform | None = None  # the platform chosen for this node
    platforms: list[Platform] = field(default_factory=list)  # every platform offered
    # The platform asked for (--platform, or the node's CPU) when the image does not offer
    # it: then nothing else was read (no other platform's config stands in for it).
    platform_not_offered: Platform | None = None
    cuda_version: str | None = None  # CUDA runtime in the image: "13.0.0"
    # NVIDIA_REQUIRE_* values exactly as the toolkit would pass them to
    # --require= (after NVIDIA_DISABLE_REQUIRE and the legacy CUDA_VERSION rule).
    require: list[str] = field(default_factory=list)
    disable_require: bool = False
    visible_devices: str | None = None
    driver_capabilities: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    # Framework hints: torch_version, torch_cuda_arch_list, cudnn_version,
    # nccl_version, vllm_version, sglang_version, tensorrt_llm_version, ...
    env_hints: dict[str, str] = field(default_factory=dict)
    size_bytes: int | None = None  # total compressed layer size from the manifest
    # The layers' content (uncompressed tar digests, the config's rootfs.diff_ids): equal lists
    # mean the same files, whichever registry, engine or archive the image came from.
    diff_ids: list[str] = field(default_factory=list)
    kernels: KernelScanFacts | None = None  # filled by --deep
    unknown: Unknown = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImageFacts:
        return from_dict(cls, data)


# --- generic (de)serialisation ----------------------------------------------------


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}
_SCALARS = (str, int, float, bool, type(None))


def to_dict(obj: Any) -> Any:
    """Dataclasses -> plain JSON-able structures, field order kept.

    Hot in fleet-sized runs (10,000 nodes), hence the cached field names and
    the scalar fast path."""
    if isinstance(obj, _SCALARS):
        return obj
    if isinstance(obj, list):
        return [to_dict(item) for item in obj]
    if isinstance(obj, dict):
        return {str(key): to_dict(value) for key, value in obj.items()}
    cls = type(obj)
    names = _FIELD_NAMES.get(cls)
    if names is None:
        if not is_dataclass(cls):
            return obj
        names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(cls))
    return {name: to_dict(getattr(obj, name)) for name in names}


class FactsFormatError(ValueError):
    """A report's node/image object does not match the fact model."""


def from_dict(cls: type[T], data: Any, where: str = "") -> T:
    """Plain structures -> dataclasses; unknown keys are ignored (newer reports),
    wrong types raise FactsFormatError naming the path."""
    return _convert(cls, data, where or cls.__name__)


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        return _convert(non_none[0], value, where)
    if is_dataclass(tp):
        if not isinstance(value, dict):
            raise FactsFormatError(f"{where}: expected an object, got {type(value).__name__}")
        hints = _hints(tp)
        kwargs = {}
        for f in fields(tp):
            if f.name in value:
                kwargs[f.name] = _convert(hints[f.name], value[f.name], f"{where}.{f.name}")
            elif f.default is MISSING and f.default_factory is MISSING:
                raise FactsFormatError(f"{where}: missing required field '{f.name}'")
        return tp(**kwargs)
    if origin is list:
        if not isinstance(value, list):
            raise FactsFormatError(f"{where}: expected a list, got {type(value).__name__}")
        (item_tp,) = typing.get_args(tp)
        return [_convert(item_tp, item, f"{where}[{i}]") for i, item in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise FactsFormatError(f"{where}: expected an object, got {type(value).__name__}")
        _, value_tp = typing.get_args(tp)
        return {str(k): _convert(value_tp, v, f"{where}.{k}") for k, v in value.items()}
    if tp is typing.Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise FactsFormatError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise FactsFormatError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise FactsFormatError(f"{where}: expected a string, got {value!r}")
        return value
    return value
