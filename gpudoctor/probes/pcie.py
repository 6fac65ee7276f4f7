"""PCI devices from sysfs: NVIDIA GPUs, NVSwitches, and ACS on the bridges above GPUs.

ACS (Access Control Services) on a PCIe switch port redirects peer-to-peer
traffic up to the root complex, which makes GPU P2P slow or hang (NCCL's
troubleshooting guide: disable ACS on bare metal). The ACS control register is
read from the bridge's config space: extended capability id 0x000D, control
register at offset +6. Unprivileged reads of sysfs `config` return only the
first 64 bytes, so without root the ACS state is unknown, not "off".
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from gpudoctor.probes.fsroot import FsRoot

NVIDIA_VENDOR = "0x10de"
GPU_CLASSES = ("0x0300", "0x0302")  # VGA-compatible / 3D controller
NVSWITCH_CLASS = "0x0680"  # bridge, "other": how NVSwitches enumerate

ACS_CAPABILITY_ID = 0x000D
EXTENDED_CONFIG_START = 0x100
CONFIG_SPACE_SIZE = 4096
# ACS control bits that send peer traffic elsewhere: Source Validation (0),
# P2P Request Redirect (2), P2P Completion Redirect (3).
ACS_SOURCE_VALIDATION = 1 << 0
ACS_REQUEST_REDIRECT = 1 << 2
ACS_COMPLETION_REDIRECT = 1 << 3
ACS_REDIRECTING = ACS_SOURCE_VALIDATION | ACS_REQUEST_REDIRECT | ACS_COMPLETION_REDIRECT


@dataclass
class PciDevice:
    address: str  # "0000:1b:00.0"
    vendor: str
    device: str
    pci_class: str
    path: str  # real sysfs path, /sys/devices/pci0000:00/.../0000:1b:00.0
    ancestors: list[str] = field(default_factory=list)  # bridge addresses, nearest first
    driver: str | None = None  # bound kernel driver: "nvidia", "vfio-pci", None when unbound


@dataclass
class AcsState:
    """ACS control of one bridge: True on, False off, None unknown (with reason)."""

    enabled: bool | None
    reason: str | None = None


def list_devices(fs: FsRoot) -> list[PciDevice]:
    devices = []
    for entry in fs.glob("/sys/bus/pci/devices/*"):
        address = entry.rsplit("/", 1)[-1]
        vendor = (fs.read_text(f"{entry}/vendor") or "").strip().lower()
        device = (fs.read_text(f"{entry}/device") or "").strip().lower()
        pci_class = (fs.read_text(f"{entry}/class") or "").strip().lower()
        real = fs.realpath(entry) or entry
        ancestors = [part for part in reversed(real.split("/")[:-1]) if _is_address(part)]
        bound = fs.realpath(f"{entry}/driver")
        driver = bound.rsplit("/", 1)[-1] if bound else None
        devices.append(PciDevice(address, vendor, device, pci_class, real, ancestors, driver))
    return devices


def _is_address(part: str) -> bool:
    # "0000:00:01.0" (domain:bus:device.function), not "pci0000:00"
    return len(part) >= 12 and part[4] == ":" and part[7] == ":" and part[10] == "."


def nvidia_gpus(devices: list[PciDevice]) -> list[PciDevice]:
    return [d for d in devices if d.vendor == NVIDIA_VENDOR and d.pci_class[:6] in GPU_CLASSES]


def nvswitches(devices: list[PciDevice]) -> list[PciDevice]:
    return [d for d in devices if d.vendor == NVIDIA_VENDOR and d.pci_class[:6] == NVSWITCH_CLASS]


def acs_control(config: bytes) -> int | None:
    """The ACS control register from config space bytes; None when there is no ACS capability."""
    offset = EXTENDED_CONFIG_START
    seen: set[int] = set()
    while offset and offset + 8 <= len(config) and offset not in seen:
        seen.add(offset)
        (header,) = struct.unpack_from("<I", config, offset)
        if header in (0, 0xFFFFFFFF):
            return None
        capability_id = header & 0xFFFF
        if capability_id == ACS_CAPABILITY_ID:
            (control,) = struct.unpack_from("<H", config, offset + 6)
            return int(control)
        offset = (header >> 20) & 0xFFC
    return None


def acs_state(fs: FsRoot, bridge_path: str) -> AcsState:
    config = fs.read_bytes(f"{bridge_path}/config", CONFIG_SPACE_SIZE)
    if config is None:
        return AcsState(None, "config space not readable")
    if len(config) <= EXTENDED_CONFIG_START:
        return AcsState(None, "extended config space not readable (needs root)")
    control = acs_control(config)
    if control is None:
        return AcsState(False, "no ACS capability")
    return AcsState(bool(control & ACS_REDIRECTING))


def bridge_path(gpu: PciDevice, address: str) -> str:
    """The sysfs path of an ancestor bridge of gpu."""
    head, _, _ = gpu.path.partition("/" + address + "/")
    return f"{head}/{address}"
