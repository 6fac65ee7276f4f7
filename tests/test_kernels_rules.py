"""Each GD-KERN rule fires when its problem is there and stays silent when it is not.

Image facts come from real fixture scans; nodes from real saved node reports.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpudoctor.derive import build_context
from gpudoctor.engine import evaluate
from gpudoctor.facts import FatbinEntry, GpuFacts, ImageFacts, KernelScanFacts, NodeFacts, PackageFacts
from gpudoctor.kernels.scan import scan_path
from gpudoctor.knowledge import load_rules
from tests.kernels_support import FATBINS

NODES = Path(__file__).resolve().parent.parent / "fixtures" / "facts" / "nodes"


def scan_of(**binaries: str) -> KernelScanFacts:
    """{package: fixture} -> a scan where each fixture belongs to that package."""
    scan = KernelScanFacts()
    for package, fixture in binaries.items():
        name = package.replace("_", "-")
        facts = scan_path(str(FATBINS / "bin" / fixture), f"{package}/lib.so")
        facts.package = name
        scan.binaries.append(facts)
        scan.packages.append(PackageFacts(name=name, version="2.14.1+cu130" if name == "torch" else "3.0.0"))
    return scan


def node_with(cc: str | None = None, report: str | None = None, driver_cuda: str | None = None) -> NodeFacts:
    if report:
        node = NodeFacts.from_dict(json.loads((NODES / report).read_text()))
    else:
        node = NodeFacts()
        node.gpus.append(GpuFacts(index=0, name="test GPU", compute_capability=cc))
    if driver_cuda:
        node.driver.cuda_version = driver_cuda
    return node


def fired(node: NodeFacts, scan: KernelScanFacts | None) -> set[str]:
    image = ImageFacts(reference="test", kernels=scan)
    findings = evaluate(load_rules(), build_context(node, image), applies_to="node+image")
    return {f.rule_id for f in findings if f.rule_id.startswith("GD-KERN-")}


CASES = [
    # (node, scan, rules that must fire, rules that must not)
    (node_with("7.0"), scan_of(torch="multi_cubin_ptx.so"), {"GD-KERN-001", "GD-KERN-003"}, {"GD-KERN-004"}),
    (
        node_with("9.0"),
        scan_of(torch="multi_cubin_ptx.so"),
        set(),
        {"GD-KERN-001", "GD-KERN-003", "GD-KERN-004"},
    ),
    (node_with("12.0"), scan_of(torch="multi_cubin_ptx.so"), {"GD-KERN-004"}, {"GD-KERN-001"}),
    (node_with("10.0"), scan_of(flash_attn_3="arch_90a.so"), {"GD-KERN-002"}, {"GD-KERN-001"}),
    (node_with("9.0"), scan_of(flash_attn_3="arch_90a.so"), set(), {"GD-KERN-002"}),
    # A100 on R535 (CUDA 12.2): the CUDA 13.0 PTX cannot be JIT-compiled.
    (
        node_with(report="A100-SXM4-80GB_535.54.03.json"),
        scan_of(torch="ptx_only_75.so"),
        {"GD-KERN-001", "GD-KERN-006"},
        {"GD-KERN-003"},
    ),
    (
        node_with("8.0", driver_cuda="13.0"),
        scan_of(torch="ptx_only_75.so"),
        {"GD-KERN-004"},
        {"GD-KERN-006", "GD-KERN-001"},
    ),
]


@pytest.mark.parametrize(("node", "scan", "expected", "absent"), CASES)
def test_rule_fires_or_not(
    node: NodeFacts, scan: KernelScanFacts, expected: set[str], absent: set[str]
) -> None:
    result = fired(node, scan)
    assert expected <= result
    assert not (absent & result)


def test_ptx_of_an_unknown_isa_gives_unknown() -> None:
    scan = KernelScanFacts()
    scan.binaries.append(
        scan_path(str(FATBINS / "bin" / "hostonly.so"), "lib/future.so")  # type: ignore[arg-type]
    )
    scan.binaries[0].fatbin_entries = [FatbinEntry(kind="ptx", target="sm_80", ptx_isa="10.0")]
    assert "GD-KERN-005" in fired(node_with("9.0", driver_cuda="13.0"), scan)


def test_nothing_fires_without_a_scan() -> None:
    assert fired(node_with("7.0"), None) == set()


def test_unknown_compute_capability_is_not_a_silent_pass() -> None:
    context = build_context(
        node_with(None), ImageFacts(reference="t", kernels=scan_of(torch="plain_sm80.so"))
    )
    derived = context["gpus"][0]["derived"]
    assert (
        derived["kernel_none"] is None and derived["unknown"]["kernel_none"] == "compute capability unknown"
    )
