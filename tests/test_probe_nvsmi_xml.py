"""nvidia-smi -q -x parsing on real outputs of many driver generations (fixtures/nvidia-smi/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpudoctor.errors import BadInput
from gpudoctor.probes.nvsmi_xml import parse_nvidia_smi_xml

XML = Path(__file__).resolve().parent.parent / "fixtures" / "nvidia-smi"

# file -> (driver version, driver CUDA, GPU count, first GPU name, compute capability, architecture)
EXPECTED = {
    "2x-RTX-2070_590.44.01.xml": ("590.44.01", "13.1", 2, "NVIDIA GeForce RTX 2070", "7.5", "turing"),
    "2x-RTX-2080-Ti_410.73.xml": ("410.73", "10.0", 2, "GeForce RTX 2080 Ti", "7.5", "turing"),
    "4x-Tesla-K80_430.26.xml": ("430.26", None, 4, "Tesla K80", "3.7", "kepler"),
    "8x-Tesla-V100S-PCIE-32GB_460.73.01.xml": (
        "460.73.01",
        "11.2",
        8,
        "Tesla V100S-PCIE-32GB",
        "7.0",
        "volta",
    ),
    "A100-SXM4-40GB-MIG_510.47.03.xml": ("510.47.03", "11.6", 1, "NVIDIA A100-SXM4-40GB", "8.0", "ampere"),
    "A100-SXM4-80GB_535.54.03.xml": ("535.54.03", "12.2", 1, "NVIDIA A100-SXM4-80GB", "8.0", "ampere"),
    "A10G_515.105.01.xml": ("515.105.01", "11.7", 1, "NVIDIA A10G", "8.6", "ampere"),
    "GRID-P4-1Q-vGPU_513.46.xml": ("513.46", "11.6", 1, "GRID P4-1Q", "6.1", "pascal"),
    # "Graphics Device" on a driver older than the GPU: identified by its device id 2184 (TU116)
    "GTX-1660-Ti_418.43.xml": ("418.43", "10.1", 1, "Graphics Device", "7.5", "turing"),
    "Quadro-P2000_525.125.06.xml": ("525.125.06", "12.0", 1, "Quadro P2000", "6.1", "pascal"),
    "RTX-2080-Windows_516.59.xml": ("516.59", "11.7", 1, "NVIDIA GeForce RTX 2080", "7.5", "turing"),
    "RTX-3060_570.124.04.xml": ("570.124.04", "12.8", 1, "NVIDIA GeForce RTX 3060", "8.6", "ampere"),
    "RTX-3080_595.58.03.xml": ("595.58.03", "13.2", 1, "NVIDIA GeForce RTX 3080", "8.6", "ampere"),
    "RTX-4090_535.86.05.xml": ("535.86.05", "12.2", 1, "NVIDIA GeForce RTX 4090", "8.9", "ada"),
    "Tesla-T4_515.105.01.xml": ("515.105.01", "11.7", 1, "Tesla T4", "7.5", "turing"),
}


def parse(name: str):  # type: ignore[no-untyped-def]
    return parse_nvidia_smi_xml((XML / name).read_bytes(), name)


def test_every_fixture_has_an_expectation() -> None:
    assert sorted(p.name for p in XML.glob("*.xml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_driver_gpus_and_compute_capability(name: str) -> None:
    version, cuda, count, first_name, cc, architecture = EXPECTED[name]
    node = parse(name)
    assert node.source == "nvidia-smi-xml"
    assert node.driver.present is True
    assert node.driver.version == version
    assert node.driver.branch == int(version.split(".")[0])
    assert node.driver.cuda_version == cuda
    assert len(node.gpus) == count
    assert [g.index for g in node.gpus] == list(range(count))
    assert node.gpus[0].name == first_name
    assert all(g.compute_capability == cc and g.architecture == architecture for g in node.gpus)
    if cc is None:
        assert "GPU table" in node.gpus[0].unknown["compute_capability"]
    for gpu in node.gpus:
        assert gpu.uuid and gpu.uuid.startswith("GPU-")
        assert gpu.memory_total_mib and gpu.memory_total_mib > 0
        # every unknown fact has a reason, every reason belongs to an unknown fact
        for field_name, reason in gpu.unknown.items():
            assert getattr(gpu, field_name) in (None, []), (field_name, reason)
            assert reason


def test_driver_cuda_not_found_is_unknown_with_the_xml_text() -> None:
    node = parse("4x-Tesla-K80_430.26.xml")
    assert node.driver.unknown["cuda_version"] == "nvidia-smi XML: Not Found"


def test_out_of_order_gpus_keep_nvidia_smi_order() -> None:
    node = parse("4x-Tesla-K80_430.26.xml")
    assert [g.pci_bus_id for g in node.gpus] == [
        "00001580:00:00.0",
        "00002DF7:00:00.0",
        "00004968:00:00.0",
        "0000F8D6:00:00.0",
    ]
    assert [g.ecc_errors_uncorrectable_aggregate for g in node.gpus][:2] == [7, 4]


def test_mig_gpu() -> None:
    gpu = parse("A100-SXM4-40GB-MIG_510.47.03.xml").gpus[0]
    assert (gpu.mig_mode, gpu.mig_mode_pending) == ("enabled", "enabled")
    assert [d.index for d in gpu.mig_devices] == [0, 1]
    assert all(d.memory_total_mib == 19968 for d in gpu.mig_devices)
    assert gpu.pci_device_id == "20B0"
    assert gpu.ecc_mode == "enabled"
    assert gpu.ecc_errors_uncorrectable_aggregate == 0
    assert gpu.unknown["ecc_errors_uncorrectable_volatile"] == "nvidia-smi XML: N/A"


def test_retired_pages_and_persistence() -> None:
    gpu = parse("8x-Tesla-V100S-PCIE-32GB_460.73.01.xml").gpus[3]
    assert gpu.retired_pages_pending is False
    assert gpu.persistence_mode == "disabled"
    assert gpu.remapped_rows_pending is None
    assert gpu.unknown["remapped_rows_pending"] == "nvidia-smi XML: N/A"


def test_v13_schema_fabric_and_deprecated_values() -> None:
    gpu = parse("RTX-3080_595.58.03.xml").gpus[0]
    assert gpu.brand == "GeForce"
    assert gpu.fabric_state is None
    assert gpu.unknown["fabric_state"] == "nvidia-smi XML: N/A"
    assert gpu.unknown["ecc_mode"] == "nvidia-smi XML: N/A"


def test_bogus_pci_device_id_is_unknown_not_guessed() -> None:
    gpu = parse("A10G_515.105.01.xml").gpus[0]
    assert gpu.pci_device_id is None
    assert "unexpected value '000000DE'" in gpu.unknown["pci_device_id"]
    assert gpu.compute_capability == "8.6"  # from the product name


def test_windows_and_vgpu_parse() -> None:
    assert parse("RTX-2080-Windows_516.59.xml").gpus[0].pci_device_id == "1E87"
    vgpu = parse("GRID-P4-1Q-vGPU_513.46.xml").gpus[0]
    assert vgpu.pci_device_id == "1BB3"
    assert vgpu.memory_total_mib == 1024


def test_node_level_facts_the_xml_lacks_are_unknown() -> None:
    node = parse("Tesla-T4_515.105.01.xml")
    assert node.host.hostname is None and node.host.unknown["hostname"] == "not in nvidia-smi XML"
    assert node.topology.pairs == [] and "pairs" in node.topology.unknown
    assert node.driver.kernel_module is None and "kernel_module" in node.driver.unknown


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"<nvidia_smi_log><driver_version>1</driver_version>", "malformed XML"),
        (b"<html><body>hi</body></html>", "root element <html>"),
        (
            b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'
            b"<nvidia_smi_log>&lol2;</nvidia_smi_log>",
            "entity declarations",
        ),
        (
            b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
            b"<nvidia_smi_log>&xxe;</nvidia_smi_log>",
            "entity declarations",
        ),
    ],
)
def test_bad_xml_is_bad_input(data: bytes, message: str) -> None:
    with pytest.raises(BadInput) as info:
        parse_nvidia_smi_xml(data, "x.xml")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_a_gpu_missing_from_the_xml_is_a_probe_error() -> None:
    data = (XML / "2x-RTX-2080-Ti_410.73.xml").read_bytes()
    start = data.index(b"<gpu id=", data.index(b"<gpu id=") + 1)
    end = data.index(b"</gpu>", start) + len(b"</gpu>")
    node = parse_nvidia_smi_xml(data[:start] + data[end:], "one-gpu-left-out.xml")
    assert len(node.gpus) == 1
    assert [(e.probe, e.message) for e in node.probe_errors] == [
        ("nvidia-smi-xml", "nvidia-smi reports 2 attached GPUs but describes 1")
    ]
    assert parse("2x-RTX-2080-Ti_410.73.xml").probe_errors == []
    # The telegraf fixture kept one <gpu> of a 4-GPU node, and says so itself.
    trimmed = parse("A100-SXM4-80GB_535.54.03.xml").probe_errors
    assert [e.message for e in trimmed] == ["nvidia-smi reports 4 attached GPUs but describes 1"]


def test_ecc_not_available_on_a_board_with_ecc_memory_is_a_failure() -> None:
    """N/A for ECC on a V100S (the GPU table: ECC memory) is not "no ECC" (docs/threat-model.md)."""
    data = (XML / "8x-Tesla-V100S-PCIE-32GB_460.73.01.xml").read_bytes()
    node = parse_nvidia_smi_xml(data.replace(b"<current_ecc>Enabled", b"<current_ecc>N/A", 1), "v100s")
    assert node.gpus[0].failed == ["ecc_mode"]
    assert (
        node.gpus[0]
        .unknown["ecc_mode"]
        .endswith("but gpudoctor's GPU table says Tesla V100S-PCIE-32GB has ECC memory")
    )
    assert [g.failed for g in node.gpus[1:]] == [[]] * 7


@pytest.mark.parametrize(
    "name",
    ["GRID-P4-1Q-vGPU_513.46.xml", "A100-SXM4-40GB-MIG_510.47.03.xml", "2x-RTX-2070_590.44.01.xml"],
)
def test_ecc_not_available_where_nvidia_smi_documents_it_stays_an_answer(name: str) -> None:
    """A vGPU guest (the host reports the board's memory), the volatile counter under MIG, a
    GeForce board the table says nothing of: real outputs with N/A there, and no failure."""
    node = parse_nvidia_smi_xml((XML / name).read_bytes(), name)
    assert [g.failed for g in node.gpus] == [[]] * len(node.gpus)
    assert any(g.ecc_errors_uncorrectable_volatile is None for g in node.gpus)


# The derived B200 capture (fixtures/fleets/derive.py: the real A100-SXM4-80GB output with its
# identity edited), ECC mode and uncorrectable counters as a driver that fails to report them prints them.
B200_XML = XML.parent / "fleets" / "nvidia-smi" / "B200_580.65.06.xml"
ECC_NOT_AVAILABLE = (
    (b"<current_ecc>Enabled", b"<current_ecc>N/A"),
    (b"<sram_uncorrectable>0</sram_uncorrectable>", b"<sram_uncorrectable>N/A</sram_uncorrectable>"),
    (b"<dram_uncorrectable>0</dram_uncorrectable>", b"<dram_uncorrectable>N/A</dram_uncorrectable>"),
)


def b200_xml_as(product: bytes, device_id: bytes) -> bytes:
    data = B200_XML.read_bytes()
    for old, new in (*ECC_NOT_AVAILABLE, (b"NVIDIA B200", product), (b"290110DE", device_id)):
        assert old in data, old
        data = data.replace(old, new)
    return data


def test_ecc_not_available_on_a_b200_is_a_failure() -> None:
    """B200 (GB100: HBM ECC per NVIDIA's memory error management note): N/A is a failed report."""
    gpu = parse_nvidia_smi_xml(b200_xml_as(b"NVIDIA B200", b"290110DE"), "b200").gpus[0]
    assert set(gpu.failed) == {
        "ecc_mode",
        "ecc_errors_uncorrectable_volatile",
        "ecc_errors_uncorrectable_aggregate",
    }
    assert gpu.unknown["ecc_mode"].endswith("but gpudoctor's GPU table says NVIDIA B200 has ECC memory")


@pytest.mark.parametrize(
    ("product", "device_id"),
    [(b"NVIDIA B300 SXM6 AC", b"318210DE"), (b"NVIDIA L40S", b"26B910DE")],
)
def test_ecc_not_available_on_a_board_without_a_sourced_ecc_row_stays_an_answer(
    product: bytes, device_id: bytes
) -> None:
    """B300 (GB110) and L40S: no NVIDIA page cited for their ECC memory, so N/A stays the answer."""
    gpu = parse_nvidia_smi_xml(b200_xml_as(product, device_id), "no-ecc-row").gpus[0]
    assert gpu.failed == []
    assert gpu.ecc_mode is None and gpu.ecc_errors_uncorrectable_volatile is None
