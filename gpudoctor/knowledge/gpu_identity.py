"""Which GPU is this: compute capability, architecture and product row from device id and name.

The PCI device id decides. It names one die in the generated device table
(rules/matrix/gpu_devices.tsv, from pci.ids), and the die's compute capability
comes from NVIDIA's pages (rules/matrix/gpu_chips.yaml). Product facts pci.ids
does not carry (data center, form factor, NVSwitch baseboard, forward
compatibility) come from a curated row of rules/matrix/gpus.yaml: the row keyed
by that device id, else a row whose name glob matches and agrees with the die's
compute capability. A name never overrides the device id: a name that belongs to
another compute capability is reported as a conflict (`GpuIdentity.conflict`)
and its row is not used.

The product name decides only where no device id is known (a saved report
without one): the curated name globs, then an exact product name of the device
table when every device of that name has the same compute capability.

An id that neither table knows leaves the GPU unidentified, with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from gpudoctor.knowledge import gpu_table, matrix
from gpudoctor.knowledge.matrix import normal_device_id
from gpudoctor.versions import parse_version

BY_DEVICE_ID = "device id"
BY_NAME = "product name"


@dataclass(frozen=True)
class GpuIdentity:
    compute_capability: str | None
    architecture: str | None
    model: matrix.GpuModel | None  # the curated product row, if one applies
    chip: str | None = None
    by: str | None = None  # BY_DEVICE_ID | BY_NAME | None (unidentified)
    conflict: str | None = None  # a name glob row that contradicts the device id
    unknown_reason: str | None = None


def _same_cc(left: str, right: str) -> bool:
    parsed = parse_version(left)
    return parsed is not None and parsed == parse_version(right)


@lru_cache(maxsize=1)
def _names_to_cc() -> dict[str, frozenset[str]]:
    """Lower-case product name -> compute capabilities of the devices pci.ids gives that name."""
    names: dict[str, set[str]] = {}
    for row in gpu_table.shipped_table().rows.values():
        for name in (row.name or "").split(" / "):
            if name.strip():
                names.setdefault(name.strip().lower(), set()).add(row.compute_capability)
    return {name: frozenset(ccs) for name, ccs in names.items()}


def _by_name(name: str | None) -> GpuIdentity:
    model = matrix.gpu_by_name(name)
    if model is not None:
        return GpuIdentity(model.compute_capability, model.architecture, model, by=BY_NAME)
    lowered = (name or "").strip().lower()
    ccs = _names_to_cc().get(lowered) or _names_to_cc().get(lowered.removeprefix("nvidia "))
    if ccs and len(ccs) == 1:
        (cc,) = ccs
        row = matrix.compute_capability(cc)
        return GpuIdentity(cc, row.architecture if row else None, None, by=BY_NAME)
    why = (
        f"the product name {name!r} is used by GPUs of different compute capabilities ({', '.join(sorted(ccs))})"
        if ccs
        else f"no PCI device id, and the product name {name!r} is not in gpudoctor's GPU tables"
    )
    return GpuIdentity(None, None, None, unknown_reason=why)


@lru_cache(maxsize=4096)
def identify(device_id: str | None, name: str | None) -> GpuIdentity:
    wanted = normal_device_id(device_id)
    if wanted is None:
        return _by_name(name)
    by_id = matrix.gpu_by_pci_id(wanted)
    table = gpu_table.shipped_table()
    device = table.rows.get(wanted)
    if device is None:
        if by_id is not None:  # a curated product newer than the pci.ids the table came from
            return GpuIdentity(by_id.compute_capability, by_id.architecture, by_id, by=BY_DEVICE_ID)
        return GpuIdentity(
            None,
            None,
            None,
            unknown_reason=(
                f"PCI device id {wanted} is not in gpudoctor's device table ({table.source}, "
                "GPUs whose chip has a documented compute capability)"
            ),
        )
    model, conflict = by_id, None
    named = _by_name(name) if name else None
    if named is not None and named.compute_capability is not None:
        if not _same_cc(named.compute_capability, device.compute_capability):
            row = f"gpudoctor's GPU table row {named.model.names[0]!r}" if named.model else "pci.ids"
            conflict = (
                f"the product name {name!r} is a compute capability {named.compute_capability} GPU ({row}), "
                f"but device id {wanted} is a {device.chip} ({device.name or 'no product name in pci.ids'}, "
                f"compute capability {device.compute_capability})"
            )
        elif model is None and named.model is not None:
            model = named.model
    return GpuIdentity(
        device.compute_capability, device.architecture, model, device.chip, BY_DEVICE_ID, conflict
    )
