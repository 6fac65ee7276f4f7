"""Node classes: nodes that must get the same verdict for any image.

The class key is GPU model(s) x driver branch x driver CUDA version x kernel
module x topology signature: the facts an SRE buys, upgrades and drains by.

Image rules (applies_to image / node+image) may also read facts outside that
key: the exact driver version, the CPU architecture (image platform), per-GPU
compute capability, brand and MIG mode, and the container runtime. Nodes of one
class that differ in any of those fall into different *evaluation groups*
(`evaluation_signature`), and the matrix evaluates each group once on a
representative node. A new image rule that reads another node fact must add
that fact to the `_*_EVALUATION_FACTS` lists below, or the matrix would generalise wrongly.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

UNKNOWN = "unknown"


def gpu_models(node: dict[str, Any]) -> str:
    """'8x NVIDIA H100 80GB HBM3' or '4x NVIDIA H800 + 4x NVIDIA B200'; 'no GPU' when none."""
    gpus = node.get("gpus") or []
    if not gpus:
        return "no GPU"
    counts = Counter(str(gpu.get("name") or "unknown GPU") for gpu in gpus)
    return " + ".join(f"{count}x {name}" for name, count in sorted(counts.items()))


def driver_branch(node: dict[str, Any]) -> str:
    driver = node.get("driver") or {}
    branch = driver.get("branch")
    if branch is not None:
        return str(branch)
    version = driver.get("version")
    return str(version).split(".", 1)[0] if version else UNKNOWN


def driver_cuda(node: dict[str, Any]) -> str:
    return str((node.get("driver") or {}).get("cuda_version") or UNKNOWN)


def kernel_module(node: dict[str, Any]) -> str:
    return str((node.get("driver") or {}).get("kernel_module") or UNKNOWN)


def _link(pair: dict[str, Any]) -> str:
    # The nvidia-smi topo -m vocabulary SREs already read: NV18, PIX, PXB, PHB, NODE, SYS.
    if pair.get("nvlink_count"):
        return f"NV{pair['nvlink_count']}"
    ancestor = pair.get("common_ancestor")
    return {
        "internal": "SELF",
        "single": "PIX",
        "multiple": "PXB",
        "hostbridge": "PHB",
        "node": "NODE",
        "system": "SYS",
    }.get(str(ancestor), "?")


def topology_signature(node: dict[str, Any]) -> str:
    """A multiset of GPU-pair links ('NV18x28'), plus NVSwitches; 'single' for one GPU.

    Unknown when a multi-GPU node carries no pair facts (e.g. from nvidia-smi XML)."""
    gpus = node.get("gpus") or []
    pairs = (node.get("topology") or {}).get("pairs") or []
    if len(gpus) <= 1:
        return "single"
    if not pairs:
        return UNKNOWN
    counts = Counter(_link(pair) for pair in pairs)
    signature = ",".join(f"{link}x{count}" for link, count in sorted(counts.items()))
    nvswitches = (node.get("fabric") or {}).get("nvswitch_count")
    if nvswitches:
        signature += f"+{nvswitches}NVSwitch"
    return signature


def class_facts(node: dict[str, Any]) -> dict[str, str]:
    return {
        "gpu_models": gpu_models(node),
        "driver_branch": driver_branch(node),
        "driver_cuda": driver_cuda(node),
        "kernel_module": kernel_module(node),
        "topology": topology_signature(node),
    }


def class_key(facts: dict[str, str]) -> str:
    """One readable string, stable across runs: the class's id in every output."""
    return (
        f"{facts['gpu_models']} | driver {facts['driver_branch']} (CUDA {facts['driver_cuda']})"
        f" | {facts['kernel_module']} | {facts['topology']}"
    )


_GPU_EVALUATION_FACTS = ("name", "brand", "pci_device_id", "compute_capability", "architecture", "mig_mode")
_DRIVER_EVALUATION_FACTS = ("present", "version", "cuda_version", "kernel_module", "library_mismatch")
_RUNTIME_EVALUATION_FACTS = (
    "toolkit_version",
    "docker_nvidia_runtime",
    "docker_default_runtime",
    "cdi_specs",
    # NVIDIA_REQUIRE_* enforcement and the legacy CUDA_VERSION grammar (docs/container-stack.md)
    "libnvidia_container_version",
    "mode",
    "disable_require",
)


def evaluation_signature(node: dict[str, Any]) -> str:
    """The node facts image rules read; nodes with equal signatures get equal image verdicts."""
    driver = node.get("driver") or {}
    runtime = node.get("container_runtime") or {}
    facts = {
        "cpu_arch": (node.get("host") or {}).get("cpu_arch"),
        "driver": [driver.get(k) for k in _DRIVER_EVALUATION_FACTS],
        "gpus": [[gpu.get(k) for k in _GPU_EVALUATION_FACTS] for gpu in node.get("gpus") or []],
        "runtime": [runtime.get(k) for k in _RUNTIME_EVALUATION_FACTS],
    }
    return json.dumps(facts, sort_keys=True, separators=(",", ":"))
