"""The table renderer: every section, unknown shown as "?", never as healthy."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpudoctor.facts import ImageFacts, Platform
from gpudoctor.nodeinput import load_node
from gpudoctor.pipeline import diagnose
from gpudoctor.probes.collect import collect_node
from gpudoctor.report.table import render
from tests.support.nvml_replay import replay

REPO = Path(__file__).resolve().parent.parent
SYSFS = REPO / "fixtures" / "sysfs"


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Content checks at a wide terminal (the narrow view is checked in test_narrow_views)."""
    monkeypatch.setenv("COLUMNS", "200")


def live_table(sysfs_tree: str, nvml_snapshot: str) -> str:
    """The table of a live-like scan: a fixture sysfs tree and a recorded NVML snapshot."""
    return render(diagnose(collect_node(sysfs_root=str(SYSFS / sysfs_tree), nvml=replay(nvml_snapshot))))


def test_live_like_node_with_pairs_acs_and_a_lost_gpu() -> None:
    text = live_table("acs-on", "gpu-lost")
    assert "GPUs (2)" in text
    assert "GeForce RTX 2080 Ti" in text
    assert "FALLEN OFF THE BUS" in text
    assert "PCIe bridges with ACS on: 0000:02:08.0, 0000:02:10.0" in text
    assert "IOMMU: yes (translated)" in text
    assert "/etc/cdi/nvidia.yaml" in text
    assert "12.4.1" in text and "10.1.243" in text  # host toolkits
    assert text.rstrip().splitlines()[-1].startswith("verdict: ")


def test_p2p_summary_and_nvlink_column() -> None:
    text = live_table("no-driver", "8x-v100s-pcie")
    assert "Topology: 28 GPU pairs" in text
    assert "'chipset_not_supported': 16" in text
    assert "NVLink up" not in text  # no GPU has NVLink
    mig = live_table("no-driver", "a100-mig")
    assert "NVLink up" in mig and "12/12" in mig


def test_no_driver_reason_and_unknowns() -> None:
    text = live_table("no-driver", "no-driver")
    assert "no NVIDIA driver: libnvidia-ml.so.1 not found" in text
    assert "GPUs: none visible" in text
    assert "verdict: ? UNKNOWN" in text
    assert "probe error: nvml:" in text


def test_xml_node_shows_unknown_not_none() -> None:
    text = render(diagnose(load_node(REPO / "fixtures" / "nvidia-smi" / "Tesla-T4_515.105.01.xml")))
    assert "PCIe bridges with ACS on: ?" in text
    assert "│ CDI specs             │ ?" in text
    assert "none" not in text.split("Findings")[0]


def test_image_section_and_findings_with_fix_and_refs() -> None:
    node = load_node(REPO / "fixtures" / "nvidia-smi" / "4x-Tesla-K80_430.26.xml")
    image = ImageFacts(
        reference="docker.io/nvidia/cuda:12.4.1-base-ubuntu22.04",
        cuda_version="12.4.1",
        platform=Platform(os="linux", architecture="amd64"),
        require=["cuda>=12.4"],
    )
    report = diagnose(node, image)
    text = render(report)
    assert "docker.io/nvidia/cuda:12.4.1-base-ubuntu22.04" in text
    assert "linux/amd64" in text and "cuda>=12.4" in text
    assert report["findings"], "a K80 with a CUDA 12.4 image must have findings"
    first = report["findings"][0]
    assert first["rule_id"] in text
    assert first["refs"][0][:20] in text


def test_narrow_views_saved_xml(monkeypatch: pytest.MonkeyPatch) -> None:
    """At 80 columns (piped default): every line fits but whole refs, GPUs as lines, and the
    saved XML's host row says why its facts are unknown instead of '?  ?  kernel ?  ?'."""
    monkeypatch.setenv("COLUMNS", "80")
    xml = REPO / "fixtures" / "fleets" / "nvidia-smi" / "H800_570.124.06.xml"
    report = diagnose(load_node(xml))
    text = render(report)
    assert "│ host                  │ ? (not in nvidia-smi XML)" in text
    assert "kernel ?" not in text
    assert "0 NVIDIA H800: CC 9.0, arch hopper" in text
    for line in text.splitlines():
        assert len(line) <= 80 or line.strip().startswith("https://"), line
        assert line == line.rstrip()
    symbol = {"ok": "✓", "info": "✓", "warn": "!", "unknown": "?", "fail": "✗"}[report["verdict"]]
    assert text.splitlines()[-1] == f"verdict: {symbol} {report['verdict'].upper()}"
