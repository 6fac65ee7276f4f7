"""Node-wide, per-GPU and per-pair derived facts from the knowledge tables.

Everything a node rule needs that is not a plain fact is computed here once:
the GPU's product row (by name, else PCI device id), its generation's driver
branch window and kernel-module needs, whether the node is an NVSwitch system,
the driver branch's lifecycle, mismatches between driver components. A derived
value that cannot be known is None, with its reason in the owning
`derived["unknown"]` map so findings can say why.
"""

from __future__ import annotations

import time
from typing import Any

from gpudoctor.facts import ImageFacts, NodeFacts
from gpudoctor.knowledge import matrix
from gpudoctor.versions import branch_of

_NO_DRIVER_PREFIX = "no NVIDIA driver: "
_GEFORCE_BRANDS = ("geforce", "geforce rtx", "titan", "titan rtx")
_DATACENTER_BRANDS = ("tesla",)
_SAME_SWITCH = ("internal", "single", "multiple")
_FABRIC_ACTIVE = ("not_started", "in_progress", "completed")


_ID = "gpus[{gpu}].pci_device_id|gpus[{gpu}].name"  # identify(): by device id, else by name
_MODEL = ("gpus[{gpu}].derived.compute_capability", "gpus[{gpu}].derived.architecture")
_DRIVER_BRANCH = ("derived.driver_branch",)

# What each derived fact is computed from (gpudoctor.derive.inputs).
INPUTS = {
    "gpus[{gpu}].derived.compute_capability": ("gpus[{gpu}].compute_capability",),
    "gpus[{gpu}].derived.identified": ("gpus[{gpu}].compute_capability",),
    "gpus[{gpu}].derived.identified_by": ("gpus[{gpu}].compute_capability",),
    "gpus[{gpu}].derived.architecture": ("gpus[{gpu}].architecture",),
    "gpus[{gpu}].derived.known_model": (_ID,),
    "gpus[{gpu}].derived.chip": ("gpus[{gpu}].pci_device_id",),
    "gpus[{gpu}].derived.identity_conflict": ("gpus[{gpu}].pci_device_id", "gpus[{gpu}].name"),
    "gpus[{gpu}].derived.min_driver_branch": _MODEL,
    "gpus[{gpu}].derived.last_driver_branch": _MODEL,
    "gpus[{gpu}].derived.open_module_required": _MODEL,
    "gpus[{gpu}].derived.open_module_unsupported": _MODEL,
    "gpus[{gpu}].derived.last_cuda": _MODEL,
    "gpus[{gpu}].derived.first_cuda": _MODEL,
    "gpus[{gpu}].derived.geforce": ("gpus[{gpu}].brand", "gpus[{gpu}].name"),
    "gpus[{gpu}].derived.datacenter": (_ID, "gpus[{gpu}].brand"),
    "gpus[{gpu}].derived.forward_compat_kind": ("gpus[{gpu}].derived.datacenter",),
    "gpus[{gpu}].derived.forward_compat_eligible": ("gpus[{gpu}].derived.datacenter",),
    "gpus[{gpu}].derived.jetson": ("gpus[{gpu}].derived.datacenter",),
    "gpus[{gpu}].derived.nvswitch_baseboard": (_ID,),
    "gpus[{gpu}].derived.grace": (_ID,),
    "gpus[{gpu}].derived.form_factor": (_ID,),
    "topology.pairs[{pair}].derived.nvlink_connected": (
        "topology.pairs[{pair}].nvlink_count",
        "topology.pairs[{pair}].p2p_nvlink",
    ),
    "topology.pairs[{pair}].derived.same_pcie_switch": ("topology.pairs[{pair}].common_ancestor",),
    "topology.pairs[{pair}].derived.geforce": ("gpus[{a}].derived.geforce", "gpus[{b}].derived.geforce"),
    "topology.pairs[{pair}].derived.acs_on_path": ("topology.pairs[{pair}].acs_bridges",),
    "derived.driver_present": ("driver.present|driver.version",),
    "derived.no_driver_reason": (),
    "derived.driver_branch": ("driver.branch|driver.version",),
    "derived.gpu_count": ("gpus",),
    "derived.gpus_described": ("gpus",),
    "derived.gpus_missing": ("gpus", "driver.attached_gpus"),
    "derived.architectures": ("gpus", "gpus[*].derived.architecture"),
    "derived.architecture_count": ("derived.architectures",),
    "derived.gpu_models": ("gpus", "gpus[*].name"),
    "derived.geforce_count": ("gpus", "gpus[*].derived.geforce"),
    "derived.mig_enabled_count": ("gpus", "gpus[*].mig_mode"),
    "derived.open_module_required": ("gpus", "gpus[*].derived.open_module_required"),
    "derived.open_module_unsupported": ("gpus", "gpus[*].derived.open_module_unsupported"),
    "derived.nvswitch_system": ("gpus", "fabric.nvswitch_count|gpus[*].fabric_state"),
    "derived.fabric_manager_running": ("fabric.fabric_manager_running|gpus[*].fabric_state",),
    "derived.kernel_module_mismatch": ("driver.version", "driver.kernel_module_version"),
    "derived.nvml_mismatch": ("driver.version", "driver.nvml_version"),
    "derived.driver_components_mismatch": (
        "driver.library_mismatch|derived.kernel_module_mismatch|derived.nvml_mismatch",
    ),
    "derived.driver_branch_designation": _DRIVER_BRANCH,
    "derived.driver_branch_eol": _DRIVER_BRANCH,
    "derived.driver_branch_eol_passed": _DRIVER_BRANCH,
    "derived.driver_branch_eol_known": _DRIVER_BRANCH,
    "derived.driver_branch_lifecycle_note": _DRIVER_BRANCH,
}


def _driver_present(driver: dict[str, Any]) -> bool | None:
    if driver.get("present") is not None:
        return bool(driver["present"])
    # A driver version can only come from a running driver (NVML or nvidia-smi).
    return True if driver.get("version") else None


def _no_driver_reason(driver: dict[str, Any]) -> str | None:
    unknown = driver.get("unknown") or {}
    for key in ("present", "version", "nvml_version"):
        reason = unknown.get(key)
        if reason:
            return str(reason).removeprefix(_NO_DRIVER_PREFIX)
    return None


def _branch(driver: dict[str, Any]) -> int | None:
    if isinstance(driver.get("branch"), int):
        return int(driver["branch"])
    return branch_of(str(driver.get("version") or ""))


def _version_mismatch(driver_version: str | None, other: str | None) -> bool | None:
    """Whether a component version disagrees with the driver's ("13.580.65.06" NVML carries a prefix)."""
    if not driver_version or not other:
        return None
    return not (other == driver_version or other.endswith("." + driver_version))


def _first_branch_for(cc_row: matrix.ComputeCapability | None) -> int | None:
    """The branch of the driver that shipped with the first toolkit targeting this compute capability."""
    return branch_of(matrix.min_driver_for_cuda(cc_row.first_cuda) if cc_row else None)


# NVIDIA's forward-compatibility page names no RTX SKU among its "select NGC Server Ready SKUs".
_SELECT_RTX = (
    "NVIDIA's forward-compatibility page admits only 'select NGC Server Ready SKUs of RTX cards' "
    "and lists none, so whether {name} is one is unknown"
)


def _forward_compat(
    derived: dict[str, Any], model: matrix.GpuModel | None, name: str, unknown: dict[str, str]
) -> None:
    """Eligibility for forward compatibility (cuda-compat) in NVIDIA's terms: data center GPUs,
    select RTX boards, Jetson boards; never GeForce."""
    kind = None
    if model is not None:
        kind = model.forward_compat or ("datacenter" if model.datacenter else None)
    elif derived["geforce"]:
        kind = "no"
    elif derived["datacenter"]:
        kind = "datacenter"
    derived["forward_compat_kind"] = kind
    derived["jetson"] = kind == "jetson"
    derived["forward_compat_eligible"] = {"datacenter": True, "jetson": True, "no": False}.get(kind or "")
    if kind == "select_rtx":
        unknown["forward_compat_eligible"] = _SELECT_RTX.format(name=name)
    elif kind is None:
        unknown["forward_compat_eligible"] = f"GPU {name} has no product row in gpudoctor's GPU table"


def _gpu(gpu: dict[str, Any]) -> dict[str, Any]:
    from gpudoctor.knowledge.gpu_identity import identify

    derived: dict[str, Any] = gpu["derived"]
    unknown: dict[str, str] = derived.setdefault("unknown", {})
    identity = identify(gpu.get("pci_device_id"), gpu.get("name"))
    model = identity.model
    cc = gpu.get("compute_capability") or identity.compute_capability
    cc_row = matrix.compute_capability(cc)
    arch_name = gpu.get("architecture") or identity.architecture
    arch_name = arch_name or (cc_row.architecture if cc_row else None)
    arch = matrix.architecture(arch_name)
    brand = str(gpu.get("brand") or "").lower()
    name = str(gpu.get("name") or "").lower()
    label = f"{gpu.get('name') or 'GPU ' + str(gpu.get('index'))!r}"

    derived["known_model"] = model is not None
    derived["identified"] = cc is not None
    derived["identified_by"] = "source" if gpu.get("compute_capability") else identity.by
    derived["identity_conflict"] = identity.conflict
    derived["chip"] = identity.chip
    if cc is None:
        unknown["compute_capability"] = identity.unknown_reason or "not reported and not identified"
    derived["compute_capability"] = cc
    derived["architecture"] = arch_name
    derived["min_driver_branch"] = (
        (model.min_driver_branch if model else None)
        or _first_branch_for(cc_row)
        or (arch.min_driver_branch if arch else None)
    )
    derived["last_driver_branch"] = arch.last_driver_branch if arch else None
    derived["open_module_required"] = bool(model and model.open_module_required) or bool(
        arch and arch.open_module == "required"
    )
    derived["open_module_unsupported"] = bool(arch and arch.open_module == "unsupported")
    derived["last_cuda"] = cc_row.last_cuda if cc_row else (arch.last_cuda if arch else None)
    derived["first_cuda"] = cc_row.first_cuda if cc_row else (arch.first_cuda if arch else None)
    derived["geforce"] = brand in _GEFORCE_BRANDS or "geforce" in name or "titan" in name
    if model is not None:
        derived["datacenter"] = model.datacenter
    elif brand in _DATACENTER_BRANDS:
        derived["datacenter"] = True
    elif derived["geforce"]:
        derived["datacenter"] = False
    else:
        derived["datacenter"] = None
        unknown["datacenter"] = f"GPU {label} is not in gpudoctor's GPU table (no product row)"
    _forward_compat(derived, model, label, unknown)
    derived["nvswitch_baseboard"] = bool(model and model.nvswitch_baseboard)
    derived["grace"] = bool(model and model.grace)
    derived["form_factor"] = model.form_factor if model else None
    if arch_name is None:
        unknown["architecture"] = identity.unknown_reason or f"GPU {label}: no compute capability"
    return derived


def _missing_gpus(derived: dict[str, Any], driver: dict[str, Any], gpus: list[dict[str, Any]]) -> None:
    """GPUs the driver counts as attached but the input does not describe (no uuid, name or bus id)."""
    described = sum(
        1
        for g in gpus
        if not g.get("fallen_off_bus") and (g.get("uuid") or g.get("name") or g.get("pci_bus_id"))
    )
    derived["gpus_described"] = described
    attached = driver.get("attached_gpus")
    if isinstance(attached, int):
        derived["gpus_missing"] = max(attached - described, 0)
    else:
        derived["gpus_missing"] = None
        derived["unknown"]["gpus_missing"] = (driver.get("unknown") or {}).get(
            "attached_gpus", "the input does not say how many GPUs are attached"
        )


def _nvswitch_system(context: dict[str, Any]) -> bool | None:
    fabric = context["fabric"]
    gpus = context["gpus"]
    if isinstance(fabric.get("nvswitch_count"), int):
        return fabric["nvswitch_count"] > 0
    if any(g.get("fabric_state") in _FABRIC_ACTIVE for g in gpus):
        return True
    if len(gpus) < 8:
        return False  # NVSwitch baseboards carry 8 GPUs (rack-scale NVL systems report fabric state)
    if gpus and all(g["derived"]["nvswitch_baseboard"] for g in gpus):
        return True
    if any(g["derived"]["form_factor"] == "pcie" for g in gpus):
        return False
    return None


def _fabric_manager_running(context: dict[str, Any]) -> bool | None:
    running = context["fabric"].get("fabric_manager_running")
    if running is not None:
        return bool(running)
    states = [g.get("fabric_state") for g in context["gpus"]]
    # Fabric registration completes only through a running Fabric Manager.
    if states and all(s == "completed" for s in states):
        return True
    return None


def _this_month(context: dict[str, Any]) -> tuple[int, int]:
    """(year, month) the facts were collected in ("2026-11-29T..."), else now (UTC)."""
    collected = context.get("collected_at")
    if isinstance(collected, str):
        year, _, month = collected[:7].partition("-")
        if year.isdigit() and month.isdigit() and 1 <= int(month) <= 12:
            return int(year), int(month)
    now = time.gmtime()
    return now.tm_year, now.tm_mon


def _branch_lifecycle(derived: dict[str, Any], branch: int | None, this_month: tuple[int, int]) -> None:
    row = matrix.driver_branch(branch)
    derived["driver_branch_designation"] = row.designation if row else None
    derived["driver_branch_eol"] = row.eol if row else None
    eol_passed = None
    if row and row.eol == "unlisted":
        # NVIDIA's support matrix lists every supported LTSB and PB: one it no longer lists is out
        # of support, though no page gives the month.
        derived["driver_branch_eol"] = (
            "an unpublished month (NVIDIA's current support matrix no longer lists it)"
        )
        eol_passed = True
    elif row and row.eol != "unknown":
        year, month = (int(x) for x in row.eol.split("-"))
        eol_passed = this_month > (year, month)
    derived["driver_branch_eol_passed"] = eol_passed
    derived["driver_branch_eol_known"] = None if branch is None else eol_passed is not None
    if row is None:
        derived["unknown"]["driver_branch_designation"] = (
            f"branch {branch} is not in gpudoctor's branch table"
        )
    if branch is None:
        derived["driver_branch_lifecycle_note"] = None
    elif row is None:
        derived["driver_branch_lifecycle_note"] = "the branch is not in gpudoctor's branch table"
    else:
        derived["driver_branch_lifecycle_note"] = row.note or (
            f"NVIDIA publishes no end-of-life date for it ({row.designation})"
            if row.designation == "nfb"
            else f"no NVIDIA page found gives its end-of-life date ({row.designation})"
        )


def _pair(pair: dict[str, Any], gpus_by_index: dict[int, dict[str, Any]]) -> None:
    derived = pair["derived"]
    nvlinks = pair.get("nvlink_count")
    derived["nvlink_connected"] = (isinstance(nvlinks, int) and nvlinks > 0) or pair.get("p2p_nvlink") == "ok"
    derived["same_pcie_switch"] = pair.get("common_ancestor") in _SAME_SWITCH
    a = gpus_by_index.get(pair.get("gpu_a", -1), {}).get("derived", {})
    b = gpus_by_index.get(pair.get("gpu_b", -1), {}).get("derived", {})
    derived["geforce"] = bool(a.get("geforce") or b.get("geforce"))
    derived["acs_on_path"] = bool(pair.get("acs_bridges"))


def derive(context: dict[str, Any], node: NodeFacts, image: ImageFacts | None) -> None:
    derived = context["derived"]
    derived.setdefault("unknown", {})
    driver = context["driver"]
    gpus = context["gpus"]
    derived["driver_present"] = _driver_present(driver)
    if derived["driver_present"] is None:
        derived["unknown"]["driver_present"] = driver.get("unknown", {}).get("present") or "driver not probed"
    derived["no_driver_reason"] = _no_driver_reason(driver)
    branch = _branch(driver)
    derived["driver_branch"] = branch
    if branch is None:
        derived["unknown"]["driver_branch"] = (
            driver.get("unknown", {}).get("version") or "driver version unknown"
        )
    derived["gpu_count"] = len(gpus)
    _missing_gpus(derived, driver, gpus)

    per_gpu = [_gpu(gpu) for gpu in gpus]
    architectures = sorted({d["architecture"] for d in per_gpu if d["architecture"]})
    derived["architectures"] = architectures
    derived["architecture_count"] = len(architectures)
    derived["gpu_models"] = sorted({str(g.get("name")) for g in gpus if g.get("name")})
    derived["geforce_count"] = sum(1 for d in per_gpu if d["geforce"])
    derived["mig_enabled_count"] = sum(1 for g in gpus if g.get("mig_mode") == "enabled")
    derived["open_module_required"] = any(d["open_module_required"] for d in per_gpu)
    derived["open_module_unsupported"] = any(d["open_module_unsupported"] for d in per_gpu)
    derived["nvswitch_system"] = _nvswitch_system(context)
    if derived["nvswitch_system"] is None:
        derived["unknown"]["nvswitch_system"] = "no NVSwitch count and no fabric state reported"
    derived["fabric_manager_running"] = _fabric_manager_running(context)
    if derived["fabric_manager_running"] is None:
        derived["unknown"]["fabric_manager_running"] = (
            context["fabric"]
            .get("unknown", {})
            .get("fabric_manager_running", "Fabric Manager state not probed")
        )
    derived["kernel_module_mismatch"] = _version_mismatch(
        driver.get("version"), driver.get("kernel_module_version")
    )
    derived["nvml_mismatch"] = _version_mismatch(driver.get("version"), driver.get("nvml_version"))
    signals = (driver.get("library_mismatch"), derived["kernel_module_mismatch"], derived["nvml_mismatch"])
    derived["driver_components_mismatch"] = True if True in signals else (False if False in signals else None)
    _branch_lifecycle(derived, branch, _this_month(context))

    by_index = {g.get("index"): g for g in gpus}
    for pair in context["topology"]["pairs"]:
        _pair(pair, by_index)
