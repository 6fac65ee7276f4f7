"""Read NVIDIA's GPU functions out of a `pci.ids` file (https://pci-ids.ucw.cz/).

`pci.ids` names the chip of every NVIDIA (vendor 10de) device, then the products in
brackets: `1d01  GP108 [GeForce GT 1030]`. Chip suffixes mark the market segment
(GL workstation/data center, M mobile, GLM, BM), not a different die, so
`GP107GL` is a GP107. Other functions of the same chips (HD audio, USB-C, bridges,
NVSwitch) are not GPUs and are left out.

Used by tools/gen_gpu_table.py (which writes rules/matrix/gpu_devices.tsv) and by
bench/audit_gpu_identity.py; gpudoctor itself reads only the generated table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

NVIDIA = "10de"
# "1d01  GP108 [GeForce GT 1030]": one tab, 4 hex digits, two spaces, the name.
_DEVICE_LINE = re.compile(r"^\t([0-9a-fA-F]{4})  (.+)$")
_VENDOR_LINE = re.compile(r"^([0-9a-fA-F]{4})  ")
_VERSION = re.compile(r"^#\s*Version:\s*(\S+)")
_DATE = re.compile(r"^#\s*Date:\s*(.+?)\s*$")
# Chip code, then optional segment suffix; the rest must be a product in brackets.
_GPU_NAME = re.compile(r"^([A-Z]{2,3}\d{2,3}[A-Z]??)(GLM|GL|BM|M)?(?: / \S+)?(?: \[(.+)\])?$")
_NOT_A_GPU = ("NVSwitch",)


@dataclass(frozen=True)
class PciDevice:
    device_id: str  # 4 upper-case hex digits
    chip: str  # the die, segment suffix removed: "GP107"
    name: str | None  # the product(s) in brackets, None where pci.ids gives none


@dataclass(frozen=True)
class PciIds:
    version: str | None
    date: str | None
    devices: tuple[PciDevice, ...]


def gpu_function(device_id: str, text: str) -> PciDevice | None:
    """The GPU a `pci.ids` device line names, or None for any other function."""
    match = _GPU_NAME.match(text.strip())
    if match is None:
        return None
    chip, _segment, product = match.groups()
    if product and any(word in product for word in _NOT_A_GPU):
        return None
    return PciDevice(device_id.upper(), chip, product)


def parse(text: str) -> PciIds:
    """Version, date and NVIDIA GPU functions of a `pci.ids` text."""
    version = date = None
    devices: list[PciDevice] = []
    inside = False
    for line in text.splitlines():
        if line.startswith("#"):
            if version is None and (found := _VERSION.match(line)):
                version = found.group(1)
            elif date is None and (found := _DATE.match(line)):
                date = found.group(1)
            continue
        if _VENDOR_LINE.match(line):
            if inside:
                break  # vendors are sorted; NVIDIA's block is over
            inside = line.lower().startswith(NVIDIA + " ")
            continue
        if inside and (found := _DEVICE_LINE.match(line)):
            device = gpu_function(found.group(1), found.group(2))
            if device is not None:
                devices.append(device)
    return PciIds(version, date, tuple(devices))
