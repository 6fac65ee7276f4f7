"""Driver, GPU, ACS, IOMMU and NVSwitch facts from /proc and /sys.

These add what NVML does not say (kernel module flavour, ACS, IOMMU) and
stand in for it when NVML cannot start (library/kernel mismatch).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from gpudoctor.facts import GpuFacts
from gpudoctor.probes import pcie
from gpudoctor.probes.fsroot import FsRoot

# "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.65.06  Release Build ..."
# "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.54.03  Wed Jun 14 ..."
_NVRM = re.compile(r"NVRM version:\s*(?P<what>.*?Kernel Module.*?)\s+(?P<version>\d+\.\d+(?:\.\d+)?)\s")


@dataclass
class KernelModule:
    flavour: str | None  # "open" | "proprietary"
    version: str | None


@dataclass
class SysfsResult:
    module: KernelModule | None = None
    module_reason: str | None = None
    proc_gpus: list[GpuFacts] = field(default_factory=list)
    pci_gpus: list[pcie.PciDevice] = field(default_factory=list)
    nvswitch_count: int | None = None
    acs: dict[str, pcie.AcsState] = field(default_factory=dict)  # bridge address -> state
    iommu_active: bool | None = None
    iommu_mode: str | None = None
    iommu_reason: str | None = None


def parse_nvrm_version(text: str) -> KernelModule | None:
    match = _NVRM.search(text)
    if not match:
        return None
    flavour = "open" if "open kernel module" in match.group("what").lower() else "proprietary"
    return KernelModule(flavour, match.group("version"))


def parse_gpu_information(index: int, text: str) -> GpuFacts:
    """/proc/driver/nvidia/gpus/<bus>/information: "Model: ...", "GPU UUID: ...", "Bus Location: ..."."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip().lower()] = value.strip()
    gpu = GpuFacts(index=index)
    gpu.name = fields.get("model")
    uuid = fields.get("gpu uuid", "")
    gpu.uuid = uuid if uuid.startswith("GPU-") else None
    bus = fields.get("bus location")
    gpu.pci_bus_id = _nvml_bus_id(bus) if bus else None
    for name in ("name", "uuid", "pci_bus_id"):
        if getattr(gpu, name) is None:
            gpu.unknown[name] = "not in /proc/driver/nvidia/gpus/*/information"
    return gpu


def _nvml_bus_id(address: str) -> str:
    """sysfs "0000:1b:00.0" -> NVML's "00000000:1B:00.0"."""
    domain, _, rest = address.rpartition(":")
    domain, _, bus = domain.partition(":") if domain.count(":") else ("", "", domain)
    domain_text = (domain or "0").zfill(8)
    return f"{domain_text}:{bus}:{rest}".upper()


def sysfs_bus_id(nvml_bus_id: str) -> str:
    """NVML's "00000000:1B:00.0" -> sysfs "0000:1b:00.0"."""
    domain, bus, rest = nvml_bus_id.lower().split(":", 2)
    return f"{domain[-4:]}:{bus}:{rest}"


def probe_sysfs(fs: FsRoot) -> SysfsResult:
    result = SysfsResult()
    version_text = fs.read_text("/proc/driver/nvidia/version")
    if version_text is None:
        result.module_reason = "/proc/driver/nvidia/version absent: NVIDIA kernel module not loaded"
    else:
        result.module = parse_nvrm_version(version_text)
        if result.module is None:
            result.module_reason = "/proc/driver/nvidia/version not understood"
    for index, info in enumerate(fs.glob("/proc/driver/nvidia/gpus/*/information")):
        result.proc_gpus.append(parse_gpu_information(index, fs.read_text(info) or ""))
    devices = pcie.list_devices(fs)
    if devices or fs.exists("/sys/bus/pci/devices"):
        result.pci_gpus = pcie.nvidia_gpus(devices)
        result.nvswitch_count = len(pcie.nvswitches(devices))
        for gpu in result.pci_gpus:
            for bridge in gpu.ancestors:
                if bridge not in result.acs:
                    result.acs[bridge] = pcie.acs_state(fs, pcie.bridge_path(gpu, bridge))
    _iommu(fs, result)
    return result


def _iommu(fs: FsRoot, result: SysfsResult) -> None:
    units = fs.glob("/sys/class/iommu/*")
    groups = fs.glob("/sys/kernel/iommu_groups/*")
    if not fs.exists("/sys/class/iommu") and not fs.exists("/sys/kernel/iommu_groups"):
        result.iommu_reason = "/sys/class/iommu and /sys/kernel/iommu_groups absent"
        return
    result.iommu_active = bool(units or groups)
    if not result.iommu_active:
        return
    cmdline = (fs.read_text("/proc/cmdline") or "").split()
    # iommu=pt: devices bypass translation (passthrough), P2P is not remapped.
    result.iommu_mode = "passthrough" if "iommu=pt" in cmdline or "amd_iommu=pt" in cmdline else "translated"
