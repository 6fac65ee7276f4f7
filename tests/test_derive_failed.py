"""Missing is never ok through derivation (gpudoctor.derive.inputs): a derived fact computed from
a failed fact is failed too, so a rule reading only the derived fact is `unknown`."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import pytest

from gpudoctor.derive import build_context
from gpudoctor.facts import mark_failed
from gpudoctor.probes.collect import collect_node
from tests.support.factsbuild import image_facts, node_facts
from tests.support.nvml_faults import diagnose_with_fault, with_fault

SYSFS = Path(__file__).resolve().parent.parent / "fixtures" / "sysfs"
_BOOKKEEPING = {"unknown", "failed_facts", "probe_failures"}


def _declared() -> set[str]:
    from gpudoctor.derive import _DERIVERS

    return {key for name in _DERIVERS for key in importlib.import_module(name).INPUTS}


def _produced(context: dict[str, Any]) -> set[str]:
    keys = {f"derived.{k}" for k in context["derived"] if k not in _BOOKKEEPING}
    keys |= {
        f"gpus[{{gpu}}].derived.{k}" for g in context["gpus"] for k in g["derived"] if k not in _BOOKKEEPING
    }
    keys |= {
        f"topology.pairs[{{pair}}].derived.{k}"
        for p in context["topology"]["pairs"]
        for k in p["derived"]
        if k not in _BOOKKEEPING
    }
    return keys


@pytest.mark.parametrize(
    ("node", "image"),
    [
        ("A100-SXM4-80GB_535.54.03", "vllm-openai_v0.23.0-cuda13.0.2_amd64"),
        ("RTX-4090_535.86.05", "nvidia-cuda_12.4.1-runtime-ubuntu2204_amd64"),
    ],
)
def test_every_derived_fact_declares_its_inputs(node: str, image: str) -> None:
    """A new derived fact without INPUTS would be computed from failed facts unnoticed."""
    produced = _produced(build_context(node_facts(node), image_facts(image)))
    produced |= _produced(
        build_context(
            collect_node(
                sysfs_root=str(SYSFS / "acs-off"),
                nvml=with_fault("8x-v100s-pcie", "nvmlDeviceGetName|0", "Unknown"),
            )
        )
    )
    assert produced - _declared() == set()


def test_a_pair_whose_common_ancestor_failed_is_unknown_not_skipped() -> None:
    """GD-P2P-002 reads only pair.derived.same_pcie_switch, which was False from a failed query."""
    report = diagnose_with_fault("8x-v100s-pcie", "nvmlDeviceGetTopologyCommonAncestor|0|4", "Unknown")
    by_rule = {f["rule_id"]: f for f in report["findings"]}
    assert by_rule["GD-P2P-002"]["severity"] == "unknown"
    pair = next(
        i for i, p in enumerate(report["node"]["topology"]["pairs"]) if (p["gpu_a"], p["gpu_b"]) == (0, 4)
    )
    assert (
        f"topology.pairs[{pair}].derived.same_pcie_switch: computed from topology.pairs[{pair}].common_ancestor, "
        "which failed: NVML: Unknown"
    ) in by_rule["GD-P2P-002"]["missing_facts"]
    untouched = diagnose_with_fault("8x-v100s-pcie", "nvmlSystemGetNVMLVersion", "Unknown")
    assert "GD-P2P-002" not in {f["rule_id"] for f in untouched["findings"]}


def test_derived_from_derived_and_across_gpus() -> None:
    """A GPU's failed compute capability fails its derived identity, the node's architecture list,
    and every derived fact computed from those, but not an unrelated one."""
    node = node_facts("A100-SXM4-80GB_535.54.03")
    gpu = node.gpus[0]
    gpu.compute_capability = gpu.architecture = None
    mark_failed(gpu, "compute_capability", "NVML: Timeout")
    mark_failed(gpu, "architecture", "NVML: Timeout")
    failed = build_context(node)["derived"]["failed_facts"]
    assert failed["gpus[0].derived.min_driver_branch"].startswith(
        "computed from gpus[0].derived.compute_capability"
    )
    assert failed["derived.architecture_count"] == (
        "computed from derived.architectures, which failed: computed from gpus[0].derived.architecture, "
        "which failed: computed from gpus[0].architecture, which failed: NVML: Timeout"
    )
    assert "derived.driver_branch" not in failed
    assert not [k for k in failed if re.match(r"gpus\[[1-9]", k)]


def test_an_alternative_source_with_a_value_keeps_the_derived_fact() -> None:
    """The toolkit release comes from libnvidia-container when the toolkit's version failed."""
    node = node_facts("A100-SXM4-80GB_535.54.03")
    runtime = node.container_runtime
    runtime.toolkit_version = None
    mark_failed(runtime, "toolkit_version", "dpkg status: not a regular file")
    runtime.libnvidia_container_version = "1.17.4"
    assert "derived.toolkit_release" not in build_context(node)["derived"]["failed_facts"]
    runtime.libnvidia_container_version = None
    failed = build_context(node)["derived"]["failed_facts"]
    assert failed["derived.toolkit_release"] == (
        "computed from container_runtime.toolkit_version, which failed: dpkg status: not a regular file"
    )


def test_nothing_failed_marks_nothing() -> None:
    assert build_context(node_facts("A100-SXM4-80GB_535.54.03"))["derived"]["failed_facts"] == {}
