"""GPU identity from the PCI device id (issue 12).

The generated device table (rules/matrix/gpu_devices.tsv) is reproduced by
tools/gen_gpu_table.py from a pci.ids excerpt; the device id decides over the
product name; every device of the table, put into pre-510 `nvidia-smi -q -x`
form 8 per node, gets its documented compute capability through the real XML
parser; unidentified GPUs and name/id contradictions are findings;
forward-compatibility eligibility follows NVIDIA's page.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gpudoctor.derive import build_context
from gpudoctor.facts import NodeFacts
from gpudoctor.knowledge import gpu_table, matrix, pciids
from gpudoctor.knowledge.gpu_identity import identify
from gpudoctor.pipeline import diagnose
from gpudoctor.probes.nvsmi_xml import parse_nvidia_smi_xml
from gpudoctor.versions import parse_version
from tests.support.factsbuild import context_for

REPO = Path(__file__).resolve().parent.parent
EXCERPT = REPO / "fixtures" / "pciids" / "pci.ids.excerpt"
sys.path.insert(0, str(REPO / "tools"))
sys.path.insert(0, str(REPO / "bench"))

import audit_gpu_identity  # noqa: E402
import gen_gpu_table  # noqa: E402

A100 = "A100-SXM4-80GB_535.54.03"


def _xml_node(devices: list[pciids.PciDevice], driver: str = "470.256.02") -> NodeFacts:
    xml = audit_gpu_identity.node_xml(devices, driver=driver, cuda="11.4")
    return parse_nvidia_smi_xml(xml.encode(), "test.xml")


# --- the generator -----------------------------------------------------------------


def test_generator_reproduces_the_rows_the_excerpt_covers() -> None:
    text = gen_gpu_table.generate(EXCERPT)
    generated = gpu_table.parse_table(text, str(EXCERPT))
    shipped = gpu_table.shipped_table()
    assert generated.source == shipped.source == "pci.ids 2026.10.24 dated 2026-10-24 03:15:02"
    assert len(generated.rows) >= 25
    for device_id, row in generated.rows.items():
        assert shipped.rows[device_id] == row


def test_generator_keeps_only_gpus_of_documented_chips() -> None:
    rows = gpu_table.parse_table(gen_gpu_table.generate(EXCERPT), "excerpt").rows
    # HD audio functions, NVSwitches, Fermi (GF108), GB102 and GB112 (no documented CC) are left out
    for device_id in ("10F0", "22BA", "1AF1", "22A3", "0DE1", "29BC", "3200"):
        assert device_id not in rows
    assert rows["1D01"] == gpu_table.DeviceRow("1D01", "GP108", "pascal", "6.1", "GeForce GT 1030")
    assert rows["0FC5"].chip == "GK107" and rows["0FC5"].compute_capability == "3.0"  # a Kepler GT 1030
    assert rows["102D"].compute_capability == "3.7" and rows["1024"].compute_capability == "3.5"
    assert rows["2B00"].compute_capability == "11.0" and rows["2E12"].compute_capability == "12.1"


def test_generator_check_mode_detects_a_stale_table(tmp_path: Path) -> None:
    out = tmp_path / "gpu_devices.tsv"
    tool = [sys.executable, str(REPO / "tools" / "gen_gpu_table.py"), str(EXCERPT), "--out", str(out)]
    assert subprocess.run([*tool, "--check"], capture_output=True, check=False).returncode == 1
    assert subprocess.run(tool, capture_output=True, check=False).returncode == 0
    assert subprocess.run([*tool, "--check"], capture_output=True, check=False).returncode == 0
    assert "# source: pci.ids 2026.10.24" in out.read_text(encoding="utf-8")
    missing = subprocess.run([*tool[:2], str(tmp_path / "nope")], capture_output=True, text=True, check=False)
    assert missing.returncode == 66 and missing.stderr.count("\n") == 1


def test_shipped_table_agrees_with_the_chip_mapping() -> None:
    chips = gpu_table.chip_map(matrix.table("gpu_chips"))
    for row in gpu_table.shipped_table().rows.values():
        assert chips[row.chip] == (row.architecture, row.compute_capability), row


def test_curated_rows_agree_with_their_device_ids() -> None:
    table = gpu_table.shipped_table().rows
    for model in matrix._gpu_models():
        for device_id in model.pci_device_ids:
            row = table.get(device_id)
            if row is None:
                continue  # a product newer than the pci.ids the table came from
            assert parse_version(row.compute_capability) == parse_version(model.compute_capability), (
                model.names
            )
            assert row.architecture == model.architecture, model.names


# --- the device id decides -----------------------------------------------------------

# The 13 GPUs the audit found with a wrong compute capability: a name glob of a
# different product won over the device id. (device id, name as pci.ids gives it, CC)
WRONG_BEFORE = [
    ("1CB1", "Quadro P1000", "6.1"),
    ("1CBB", "Quadro P1000 Mobile", "6.1"),
    ("1CFB", "Quadro P1000", "6.1"),
    ("25A9", "GeForce RTX 2050", "8.6"),
    ("25AD", "GeForce RTX 2050", "8.6"),
    ("25ED", "GeForce RTX 2050", "8.6"),
    ("25B0", "RTX A1000", "8.6"),
    ("25B9", "RTX A1000 Laptop GPU", "8.6"),
    ("25BC", "RTX A1000 6GB Laptop GPU", "8.6"),
    ("25F9", "RTX A1000 Embedded GPU", "8.6"),
    ("2822", "GeForce RTX 3050 A Laptop GPU", "8.9"),
    ("28A3", "GeForce RTX 3050 A Laptop GPU", "8.9"),
    ("28E3", "GeForce RTX 3050 A Laptop GPU", "8.9"),
]


@pytest.mark.parametrize(("device_id", "name", "cc"), WRONG_BEFORE, ids=[c[0] for c in WRONG_BEFORE])
@pytest.mark.parametrize("prefix", ["", "NVIDIA "])
def test_a_name_glob_never_overrides_the_device_id(device_id: str, name: str, cc: str, prefix: str) -> None:
    identity = identify(device_id, prefix + name)
    assert identity.compute_capability == cc
    assert identity.conflict is None
    assert identity.model is None or not identity.model.datacenter
    node = _xml_node([pciids.PciDevice(device_id, "", prefix + name)])
    assert node.gpus[0].compute_capability == cc
    derived = build_context(node, None)["gpus"][0]["derived"]
    assert derived["datacenter"] is not True and derived["nvswitch_baseboard"] is False


def test_a_name_that_contradicts_the_id_is_a_finding_not_a_pick() -> None:
    identity = identify("25B0", "NVIDIA A100-SXM4-80GB")
    assert identity.compute_capability == "8.6" and identity.model is None
    assert identity.conflict is not None and "25B0 is a GA107" in identity.conflict
    context = context_for(
        A100,
        {
            "gpus[0].name": "NVIDIA A100-SXM4-80GB",
            "gpus[0].pci_device_id": "25B0",
            "gpus[0].compute_capability": None,
            "gpus[0].architecture": None,
        },
    )
    derived = context["gpus"][0]["derived"]
    assert derived["compute_capability"] == "8.6" and derived["datacenter"] is None
    assert derived["forward_compat_eligible"] is None


def test_the_name_decides_only_without_an_id() -> None:
    assert identify(None, "NVIDIA GeForce GTX 1080").compute_capability == "6.1"
    assert identify(None, "NVIDIA A100-SXM4-80GB").compute_capability == "8.0"
    # pci.ids names a Kepler (0FC5) and a Pascal (1D01) "GeForce GT 1030": the name alone cannot tell
    ambiguous = identify(None, "GeForce GT 1030")
    assert ambiguous.compute_capability is None and "3.0, 6.1" in (ambiguous.unknown_reason or "")
    assert identify("0FC5", "GeForce GT 1030").compute_capability == "3.0"


# --- the audit, through the real XML parser ------------------------------------------


def test_every_device_of_the_table_gets_its_compute_capability() -> None:
    rows = sorted(gpu_table.shipped_table().rows.values(), key=lambda r: r.device_id)
    wrong = []
    for start in range(0, len(rows), 8):
        batch = rows[start : start + 8]
        node = _xml_node([pciids.PciDevice(r.device_id, r.chip, r.name) for r in batch])
        for row, gpu in zip(batch, node.gpus, strict=True):
            if gpu.compute_capability is None or parse_version(gpu.compute_capability) != parse_version(
                row.compute_capability
            ):
                wrong.append((row.device_id, row.name, gpu.compute_capability, row.compute_capability))
    assert len(rows) > 800
    assert wrong == []


# --- unidentified GPUs are findings ---------------------------------------------------


def test_geforce_gt_1030_on_driver_470_is_identified() -> None:
    node = _xml_node([pciids.PciDevice("1D01", "GP108", "GeForce GT 1030")], driver="470.256.02")
    gpu = node.gpus[0]
    assert (gpu.compute_capability, gpu.architecture) == ("6.1", "pascal")
    report = diagnose(node)
    assert not any(f["rule_id"] == "GD-GPU-001" for f in report["findings"])


def test_an_id_absent_from_the_table_gives_an_unknown_verdict() -> None:
    node = _xml_node([pciids.PciDevice("2FFF", "", "NVIDIA Graphics Device")], driver="580.95.05")
    report = diagnose(node)
    assert report["verdict"] == "unknown"
    finding = next(f for f in report["findings"] if f["rule_id"] == "GD-GPU-001")
    assert finding["severity"] == "unknown"
    assert "2FFF" in finding["message"] and "GD-DRV-001/002" in finding["message"]


# --- forward compatibility in NVIDIA's terms ------------------------------------------


@pytest.mark.parametrize(
    ("device_id", "name", "eligible"),
    [
        ("20B2", "NVIDIA A100-SXM4-80GB", True),  # data center GPU
        ("2BB5", "NVIDIA RTX PRO 6000 Blackwell Server Edition", True),  # listed under Data Center
        ("2230", "NVIDIA RTX A6000", None),  # RTX professional: "select NGC Server Ready SKUs"
        ("26B1", "NVIDIA RTX 6000 Ada Generation", None),
        ("2BB1", "NVIDIA RTX PRO 6000 Blackwell Workstation Edition", None),
        ("2684", "NVIDIA GeForce RTX 4090", False),  # GeForce: never
        (None, "Orin (nvgpu)", True),  # Jetson board
        (None, "Xavier", True),
    ],
)
def test_forward_compat_eligibility(device_id: str | None, name: str, eligible: bool | None) -> None:
    context = context_for(
        A100,
        {
            "gpus[0].name": name,
            "gpus[0].pci_device_id": device_id,
            "gpus[0].compute_capability": None,
            "gpus[0].architecture": None,
            "gpus[0].brand": None,
        },
    )
    derived = context["gpus"][0]["derived"]
    assert derived["forward_compat_eligible"] is eligible
    if eligible is None:
        assert "select NGC Server Ready SKUs" in derived["unknown"]["forward_compat_eligible"]


def test_every_driver_branch_has_an_end_of_life_or_says_unknown() -> None:
    for row in matrix.table("driver_branches"):
        eol = row["eol"]
        assert eol in ("unknown", "unlisted") or (len(eol) == 7 and eol[4] == "-"), row


# --- products as NVIDIA's compute capability pages list them ---------------------------

# (product name as pci.ids writes it, compute capability NVIDIA lists). Pages:
# https://developer.nvidia.com/cuda-gpus and https://developer.nvidia.com/cuda-legacy-gpus.
# This checks the chip mapping product by product, independently of how it was written.
NVIDIA_PAGES = [
    ("GeForce RTX 5090", "12.0"),
    ("GeForce RTX 5050", "12.0"),
    ("RTX PRO 6000 Blackwell Workstation Edition", "12.0"),
    ("GB10", "12.1"),
    ("B300 SXM6 AC", "10.3"),
    ("GB300", "10.3"),
    ("B200", "10.0"),
    ("H100 PCIe", "9.0"),
    ("H200 NVL", "9.0"),
    ("GeForce RTX 4090", "8.9"),
    ("GeForce RTX 4060", "8.9"),
    ("RTX 6000 Ada Generation", "8.9"),
    ("L40S", "8.9"),
    ("L4", "8.9"),
    ("A100 SXM4 80GB", "8.0"),
    ("A30 PCIe", "8.0"),
    ("A40", "8.6"),
    ("A10", "8.6"),
    ("A16", "8.6"),
    ("RTX A6000", "8.6"),
    ("RTX A2000", "8.6"),
    ("GeForce RTX 3090", "8.6"),
    ("Tesla T4", "7.5"),
    ("T1000 8GB", "7.5"),
    ("TITAN V", "7.0"),
    ("Quadro GV100", "7.0"),
    ("Tesla P100 PCIe 16GB", "6.0"),
    ("Quadro GP100", "6.0"),
    ("Tesla P40", "6.1"),
    ("Tesla P4", "6.1"),
    ("GeForce GTX 1080 Ti", "6.1"),
    ("Quadro P1000", "6.1"),
    ("Quadro P520", "6.1"),
    ("Tesla M60", "5.2"),
    ("Tesla M40", "5.2"),
    ("GeForce GTX 980", "5.2"),
    ("Quadro K2200", "5.0"),
    ("Quadro K620", "5.0"),
    ("GeForce 940M", "5.0"),
    ("GeForce GTX 750 Ti", "5.0"),
    ("Tesla K80", "3.7"),
    ("Tesla K40c", "3.5"),
    ("Quadro K610M", "3.5"),
    ("Tesla K10", "3.0"),
    ("Quadro K5000", "3.0"),
]
# pci.ids gives one "GeForce GTX 750 Ti" id on a Kepler die (11C7 GK106); NVIDIA lists the
# product (the Maxwell GM107 boards) at 5.0. The device id decides: 11C7 is 3.0.
OTHER_DIE = {"11C7"}


@pytest.mark.parametrize(("name", "cc"), NVIDIA_PAGES, ids=[n for n, _ in NVIDIA_PAGES])
def test_products_get_the_compute_capability_nvidia_lists(name: str, cc: str) -> None:
    rows = [
        r
        for r in gpu_table.shipped_table().rows.values()
        if name in (part.strip() for part in (r.name or "").split(" / "))
    ]
    assert rows, f"{name} is not in the device table"
    for row in rows:
        if row.device_id not in OTHER_DIE:
            assert parse_version(row.compute_capability) == parse_version(cc), row
