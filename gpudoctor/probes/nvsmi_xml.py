"""Parse `nvidia-smi -q -x` output of any driver generation into NodeFacts.

Schemas differ by driver (DTD v10..v13, none at all on old drivers, Windows
and vGPU guests); every field is looked up by path and absent or placeholder
values ("N/A", "[N/A]", "Not Found", "Requested functionality has been
deprecated", ...) become unknown with the text nvidia-smi printed as reason.
GPUs keep the order nvidia-smi printed them in: that order is nvidia-smi's own
index, which is what users type in `nvidia-smi -i`.
"""

from __future__ import annotations

from collections.abc import Callable
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from gpudoctor.errors import BadInput, one_line
from gpudoctor.facts import DriverFacts, GpuFacts, MigDeviceFacts, NodeFacts, ProbeError, mark_failed
from gpudoctor.probes.gpumodel import expected_memory_facts, fill_model_facts
from gpudoctor.probes.values import branch_of, count_from, fabric_state_name, mib_from, yes_no

NOT_IN_XML = "not in nvidia-smi XML"
# GPUs one node can describe. The largest single-OS GPU systems hold 16 (DGX-2, HGX-2) to
# 20 (10 dual-slot boards per PCIe root on 2-root 4U servers); the cap leaves room for
# any of those and refuses a file of thousands of <gpu> elements before per-GPU work.
MAX_GPUS = 256
NOT_IN_THIS_DRIVER = "not in nvidia-smi XML of this driver"

_HEX = frozenset("0123456789abcdef")


class Field:
    """One looked-up XML value: the text, or None with the reason it is unknown."""

    __slots__ = ("text", "reason")

    def __init__(self, text: str | None, reason: str | None) -> None:
        self.text = text
        self.reason = reason


def _is_placeholder(text: str) -> bool:
    lowered = text.strip("[] ").lower()
    return lowered in (
        "n/a",
        "not found",
        "not supported",
        "unknown error",
        "insufficient permissions",
        "none",
        "unknown",
    ) or lowered.startswith("requested functionality has been deprecated")


def lookup(element: Element, path: str) -> Field:
    node = element.find(path)
    if node is None:
        # "<remapped_rows>N/A</remapped_rows>": a parent that says why it has no children.
        parent_path = path.rpartition("/")[0]
        parent = element.find(parent_path) if parent_path else None
        parent_text = (parent.text or "").strip() if parent is not None else ""
        if parent_text and _is_placeholder(parent_text):
            return Field(None, f"nvidia-smi XML: {parent_text}")
        return Field(None, NOT_IN_THIS_DRIVER)
    text = (node.text or "").strip()
    if not text:
        return Field(None, "nvidia-smi XML: empty")
    if _is_placeholder(text):
        return Field(None, f"nvidia-smi XML: {text}")
    return Field(text, None)


def parse_root(data: bytes, origin: str) -> Element:
    try:
        root = fromstring(data)
    except DefusedXmlException:
        # Entity declarations are the only way an XML document can expand itself (billion
        # laughs) or pull in outside files; nvidia-smi never writes them. defusedxml refuses them.
        raise BadInput(f"{origin}: refusing XML with entity declarations (not nvidia-smi output)") from None
    except ParseError as exc:
        raise BadInput(f"{origin}: malformed XML: {exc}") from None
    if root.tag != "nvidia_smi_log":
        raise BadInput(f"{origin}: not nvidia-smi -q -x output (root element <{root.tag}>)")
    return root


def parse_nvidia_smi_xml(data: bytes, origin: str) -> NodeFacts:
    """NodeFacts from `nvidia-smi -q -x` bytes; BadInput (exit 65) if it is not that."""
    root = parse_root(data, origin)
    node = NodeFacts(source="nvidia-smi-xml")
    for name in ("hostname", "os_release", "kernel", "cpu_arch"):
        node.host.unknown[name] = NOT_IN_XML
    node.driver = _driver(root)
    elements = root.findall("gpu")
    if len(elements) > MAX_GPUS:
        raise BadInput(
            f"{origin}: describes {len(elements)} GPUs, more than the {MAX_GPUS} one node can hold"
        )
    node.gpus = [_gpu(index, element) for index, element in enumerate(elements)]
    attached = lookup(root, "attached_gpus")
    node.driver.attached_gpus = count_from(attached.text)
    if node.driver.attached_gpus is None:
        node.driver.unknown["attached_gpus"] = attached.reason or one_line(
            f"nvidia-smi XML: {attached.text!r}", 80
        )
    if node.driver.attached_gpus is not None and node.driver.attached_gpus != len(node.gpus):
        # nvidia-smi leaves out GPUs it cannot get a handle for (fallen off the bus).
        message = f"nvidia-smi reports {attached.text} attached GPUs but describes {len(node.gpus)}"
        node.probe_errors.append(ProbeError(probe="nvidia-smi-xml", message=message))
    node.topology.unknown["pairs"] = NOT_IN_XML
    for name in ("iommu_active", "iommu_mode", "acs_enabled_bridges"):
        node.topology.unknown[name] = NOT_IN_XML
    for name in ("nvswitch_count", "fabric_manager_running", "fabric_manager_version"):
        node.fabric.unknown[name] = NOT_IN_XML
    node.cuda_host.unknown["toolkits"] = NOT_IN_XML
    node.cuda_host.unknown["cudart"] = NOT_IN_XML
    for name in ("toolkit_version", "docker_nvidia_runtime", "docker_default_runtime", "cdi_specs", "mode"):
        node.container_runtime.unknown[name] = NOT_IN_XML
    return node


def _driver(root: Element) -> DriverFacts:
    driver = DriverFacts(present=True)
    version = lookup(root, "driver_version")
    driver.version = version.text
    driver.branch = branch_of(version.text)
    cuda = lookup(root, "cuda_version")
    driver.cuda_version = cuda.text
    for name, found in (("version", version), ("branch", version), ("cuda_version", cuda)):
        if found.reason:
            driver.unknown[name] = found.reason
    for name in ("kernel_module", "kernel_module_version", "nvml_version", "library_mismatch"):
        driver.unknown[name] = NOT_IN_XML
    return driver


def _set(gpu: GpuFacts, name: str, found: Field, convert: Callable[[str], object] = str) -> None:
    if found.text is None:
        gpu.unknown[name] = found.reason or NOT_IN_THIS_DRIVER
        return
    value = convert(found.text)
    if value is None:
        gpu.unknown[name] = f"nvidia-smi XML: unexpected value {found.text!r}"
    setattr(gpu, name, value)


def _enabled(text: str) -> str | None:
    lowered = text.lower()
    return lowered if lowered in ("enabled", "disabled") else None


def _device_id(text: str) -> str | None:
    # "20B010DE": device id in the upper 16 bits, NVIDIA's vendor id 10DE below.
    digits = text.lower().removeprefix("0x")
    if len(digits) == 8 and digits.endswith("10de") and all(c in _HEX for c in digits[:4]):
        return digits[:4].upper()
    return None


def _int(text: str) -> int | None:
    return count_from(text)


def _gpu(index: int, element: Element) -> GpuFacts:
    gpu = GpuFacts(index=index)
    _set(gpu, "uuid", lookup(element, "uuid"))
    _set(gpu, "name", lookup(element, "product_name"))
    _set(gpu, "brand", lookup(element, "product_brand"))
    bus_id = lookup(element, "pci/pci_bus_id")
    if bus_id.text is None and element.get("id"):
        bus_id = Field(element.get("id"), None)
    _set(gpu, "pci_bus_id", bus_id)
    _set(gpu, "pci_device_id", lookup(element, "pci/pci_device_id"), _device_id)
    _set(gpu, "pci_subsystem_id", lookup(element, "pci/pci_sub_system_id"))
    _set(gpu, "memory_total_mib", lookup(element, "fb_memory_usage/total"), mib_from)
    _set(gpu, "mig_mode", lookup(element, "mig_mode/current_mig"), _enabled)
    _set(gpu, "mig_mode_pending", lookup(element, "mig_mode/pending_mig"), _enabled)
    gpu.mig_devices = _mig_devices(element)
    _set(gpu, "ecc_mode", lookup(element, "ecc_mode/current_ecc"), _enabled)
    _uncorrectable(gpu, element)
    pending = lookup(element, "retired_pages/pending_retirement")
    if pending.text is None and element.find("retired_pages/pending_blacklist") is not None:
        pending = lookup(element, "retired_pages/pending_blacklist")
    _set(gpu, "retired_pages_pending", pending, yes_no)
    _set(gpu, "remapped_rows_pending", lookup(element, "remapped_rows/remapped_row_pending"), yes_no)
    _set(gpu, "remapped_rows_failure", lookup(element, "remapped_rows/remapped_row_failure"), yes_no)
    _set(gpu, "persistence_mode", lookup(element, "persistence_mode"), _enabled)
    _set(gpu, "fabric_state", lookup(element, "fabric/state"), fabric_state_name)
    _set(gpu, "fabric_status", lookup(element, "fabric/status"), str.lower)
    _set(gpu, "fabric_clique_id", lookup(element, "fabric/cliqueId"), _int)
    _set(gpu, "fabric_cluster_uuid", lookup(element, "fabric/clusterUuid"))
    for name in ("nvlink_links_up", "nvlink_links_total"):
        gpu.unknown[name] = NOT_IN_XML
    cc = lookup(element, "compute_cap")
    fill_model_facts(gpu, cc.text, lookup(element, "product_architecture").text)
    guest = lookup(element, "gpu_virtualization_mode/virtualization_mode").text == "VGPU"
    for name, why in expected_memory_facts(gpu, guest).items():
        # N/A for ECC on a board known to have ECC memory is a failure to report, not "no ECC".
        if getattr(gpu, name) is None and name not in gpu.failed:
            mark_failed(gpu, name, f"{gpu.unknown.get(name) or 'not reported'}, but {why}")
    return gpu


def _mig_devices(element: Element) -> list[MigDeviceFacts]:
    devices = []
    for mig in element.findall("mig_devices/mig_device"):
        devices.append(
            MigDeviceFacts(
                index=_int(lookup(mig, "index").text or ""),
                uuid=lookup(mig, "uuid").text,
                profile=lookup(mig, "profile").text,
                memory_total_mib=mib_from(lookup(mig, "fb_memory_usage/total").text or ""),
            )
        )
    return devices


# Uncorrectable counters by schema: v10 double_bit/total; v11/v12
# sram_uncorrectable + dram_uncorrectable; v13 splits SRAM into parity/SECDED.
_UNCORRECTABLE = (
    "double_bit/total",
    "sram_uncorrectable",
    "sram_uncorrectable_parity",
    "sram_uncorrectable_secded",
    "dram_uncorrectable",
)


def _uncorrectable(gpu: GpuFacts, element: Element) -> None:
    for period in ("volatile", "aggregate"):
        name = f"ecc_errors_uncorrectable_{period}"
        counts = [lookup(element, f"ecc_errors/{period}/{path}") for path in _UNCORRECTABLE]
        numbers = [n for n in (count_from(c.text) for c in counts) if n is not None]
        if numbers:
            setattr(gpu, name, sum(numbers))
            continue
        reasons = [c.reason for c in counts if c.reason and c.reason != NOT_IN_THIS_DRIVER]
        gpu.unknown[name] = reasons[0] if reasons else NOT_IN_THIS_DRIVER
