"""Real nvidia-smi XMLs edited into known-bad states, and the unedited ones as healthy controls,
through the XML loader and the whole pipeline (the held-out checks work the same way)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gpudoctor import nodeinput
from gpudoctor.exitcodes import worst
from gpudoctor.pipeline import diagnose
from tests.support.cli import run_gpudoctor
from tests.support.factsbuild import FACTS, image_facts

XMLS = FACTS / "nvidia-smi"


def _edited(tmp_path: Path, name: str, **tags: str) -> Path:
    """A copy of a real XML with the text of each named element replaced (first GPU's for GPU tags)."""
    text = (XMLS / f"{name}.xml").read_text(encoding="utf-8")
    for tag, value in tags.items():
        text, count = re.subn(rf"<{tag}>[^<]*</{tag}>", f"<{tag}>{value}</{tag}>", text)
        assert count, f"{tag} not in {name}"
    path = tmp_path / f"{name}.edited.xml"
    path.write_text(text, encoding="utf-8")
    return path


# No end-of-life date for an older driver branch: the one `unknown` a sound node may get.
LIFECYCLE_UNKNOWN = "GD-DRV-010"


def _verdict(path: Path) -> tuple[str, dict[str, str]]:
    """(verdict leaving out the lifecycle unknown, {rule id: severity} of every finding)."""
    report = diagnose(nodeinput.load_node(path))
    others = [f["severity"] for f in report["findings"] if f["rule_id"] != LIFECYCLE_UNKNOWN]
    return worst(others), {f["rule_id"]: f["severity"] for f in report["findings"]}


@pytest.mark.parametrize(
    ("name", "edits", "rule"),
    [
        (
            "A100-SXM4-80GB_535.54.03",
            {
                "product_name": "NVIDIA A800-SXM4-80GB",
                "pci_device_id": "20F310DE",
                "driver_version": "650.12",
            },
            "GD-DRV-006",
        ),
        ("RTX-4090_535.86.05", {"driver_version": "515.105.01", "cuda_version": "11.7"}, "GD-DRV-001"),
        (
            "A100-SXM4-80GB_535.54.03",
            {"product_name": "NVIDIA B200", "pci_device_id": "290110DE"},
            "GD-DRV-001",
        ),
        (
            "A100-SXM4-80GB_535.54.03",
            {
                "product_name": "NVIDIA H100 80GB HBM3",
                "pci_device_id": "233010DE",
                "driver_version": "510.47.03",
            },
            "GD-DRV-001",
        ),
        (
            "8x-Tesla-V100S-PCIE-32GB_460.73.01",
            {"driver_version": "590.44.01", "cuda_version": "13.1"},
            "GD-DRV-002",
        ),
        ("4x-Tesla-K80_430.26", {"driver_version": "535.54.03"}, "GD-DRV-002"),
    ],
)
def test_edited_bad_nodes_fail(tmp_path: Path, name: str, edits: dict[str, str], rule: str) -> None:
    verdict, findings = _verdict(_edited(tmp_path, name, **edits))
    assert verdict == "fail"
    assert findings.get(rule) == "fail"


# The telegraf capture kept one <gpu> of a 4-GPU node: the 3 GPUs it hides make it unknown.
TRIMMED = "A100-SXM4-80GB_535.54.03"


@pytest.mark.parametrize("path", sorted(XMLS.glob("*.xml")), ids=lambda p: p.stem)
def test_real_nodes_are_not_failed(path: Path) -> None:
    verdict, findings = _verdict(path)
    if path.stem == TRIMMED:
        assert verdict == "unknown" and findings["GD-NODE-003"] == "unknown", findings
        assert [rule for rule, severity in findings.items() if severity not in ("ok", "info", "warn")] == [
            "GD-NODE-003"
        ]
    else:
        assert verdict in ("ok", "info", "warn"), findings


def _whole(tmp_path: Path, **tags: str) -> Path:
    """The trimmed A100 capture as the 1-GPU node it describes (plus any edits)."""
    return _edited(tmp_path, TRIMMED, attached_gpus="1", **tags)


def _preflight(path: Path, image: str, **node_patch: str) -> tuple[str, dict[str, str]]:
    node = nodeinput.load_node(path)
    for dotted, value in node_patch.items():
        owner, field = dotted.split(".")
        setattr(getattr(node, owner), field, value)
    report = diagnose(node, image_facts(image))
    others = [f["severity"] for f in report["findings"] if f["rule_id"] != LIFECYCLE_UNKNOWN]
    return worst(others), {f["rule_id"]: f["severity"] for f in report["findings"]}


CUDA13 = "vllm-openai_v0.23.0-cuda13.0.2_amd64"
CUDA124 = "nvidia-cuda_12.4.1-runtime-ubuntu2204_amd64"


def test_cuda13_image_on_geforce_525_fails(tmp_path: Path) -> None:
    path = _edited(tmp_path, "RTX-4090_535.86.05", driver_version="525.125.06", cuda_version="12.0")
    verdict, findings = _preflight(path, CUDA13)
    assert verdict == "fail"
    assert findings["GD-CUDA-004"] == "fail"


def test_cuda13_image_on_a100_r535_is_not_failed(tmp_path: Path) -> None:
    verdict, findings = _preflight(_whole(tmp_path), CUDA13)
    assert verdict == "warn"
    assert findings["GD-CUDA-003"] == "warn"


def test_cuda124_image_on_550_is_ok(tmp_path: Path) -> None:
    path = _whole(tmp_path, driver_version="550.54.15", cuda_version="12.4")
    verdict, findings = _preflight(path, CUDA124)
    assert verdict in ("ok", "info"), findings
    assert not any(rule.startswith(("GD-CUDA", "GD-REQ")) for rule in findings)


def test_arm64_image_on_x86_64_fails() -> None:
    verdict, findings = _preflight(
        XMLS / "A100-SXM4-80GB_535.54.03.xml",
        "nvidia-cuda_11.8.0-base-ubuntu2204_arm64",
        **{"host.cpu_arch": "x86_64"},
    )
    assert verdict == "fail"
    assert findings["GD-PLAT-001"] == "fail"


@pytest.mark.parametrize(
    ("edits", "exit_code"),
    [
        (
            {
                "product_name": "NVIDIA A800-SXM4-80GB",
                "pci_device_id": "20F310DE",
                "driver_version": "650.12",
                "attached_gpus": "1",
            },
            2,
        ),
        ({"attached_gpus": "1"}, 0),
        ({}, 3),
    ],
    ids=["a800-on-650", "healthy-a100", "a100-with-3-gpus-not-described"],
)
def test_scan_from_nvidia_smi_exit_codes(tmp_path: Path, edits: dict[str, str], exit_code: int) -> None:
    path = _edited(tmp_path, "A100-SXM4-80GB_535.54.03", **edits)
    result = run_gpudoctor("scan", "--from-nvidia-smi", str(path), "--format", "json", timeout=60)
    assert result.returncode == exit_code, result.stderr
    report = json.loads(result.stdout)
    fails = [f["rule_id"] for f in report["findings"] if f["severity"] == "fail"]
    assert fails == (["GD-DRV-006"] if exit_code == 2 else [])
    unknowns = [f["rule_id"] for f in report["findings"] if f["severity"] == "unknown"]
    # R650 is in no NVIDIA lifecycle table gpudoctor has: its end of life is unknown (GD-DRV-010)
    expected = {0: [], 2: [LIFECYCLE_UNKNOWN], 3: ["GD-NODE-003"]}[exit_code]
    assert unknowns == expected
    if exit_code == 3:
        assert any(f["rule_id"] == "GD-NODE-004" for f in report["findings"])  # 3 GPUs not described
