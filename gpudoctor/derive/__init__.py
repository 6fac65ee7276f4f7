"""Derived facts: computed once in Python from facts, read by rules.

`build_context(node, image)` returns the plain mapping the rules engine
evaluates. Its root holds the node's facts as in the JSON report (`host`,
`driver`, `gpus`, `topology`, `fabric`, `cuda_host`, `container_runtime`),
`image` (preflight only, else None) and `derived` (node-wide derived facts).
Each GPU mapping gets its own `derived` mapping, and so does each GPU pair in
`topology.pairs`, so quantified conditions read `derived.*` of the GPU or pair
they range over.

Each domain derives its own facts in its own module:
  node.py     driver/GPU/topology knowledge (matrix look-ups, NVSwitch, legacy brand)
  container.py  container stack (stale CDI specs, GPU container paths, toolkit release)
  image.py    image vs node (CUDA runtime vs driver, NVIDIA_REQUIRE_* evaluation and enforcement, platform)
  kernels.py  fatbin coverage per GPU, framework meaning (FlashAttention, torch)

Each module also declares `INPUTS`, the facts each derived fact is computed from: a derived
fact computed from a failed fact is failed too (gpudoctor.derive.inputs), so a rule reading only
the derived fact is `unknown`, not skipped or passed.
"""

from __future__ import annotations

import importlib
from typing import Any

from gpudoctor.derive.inputs import mark_derived_failures
from gpudoctor.facts import ImageFacts, NodeFacts

_DERIVERS = (
    "gpudoctor.derive.node",
    "gpudoctor.derive.container",
    "gpudoctor.derive.image",
    "gpudoctor.derive.kernels",
)


def build_context(node: NodeFacts, image: ImageFacts | None = None) -> dict[str, Any]:
    context: dict[str, Any] = node.to_dict()
    context["image"] = image.to_dict() if image is not None else None
    context["derived"] = {}
    for gpu in context["gpus"]:
        gpu["derived"] = {}
    for pair in context["topology"]["pairs"]:
        pair["derived"] = {}
    failed = failed_facts(context)
    context["derived"]["failed_facts"] = {path: reason for path, (reason, null) in failed.items() if null}
    context["derived"]["probe_failures"] = _listed(
        [f"{path} ({reason})" for path, (reason, _) in failed.items()]
        + [f"{error['probe']}: {error['message']}" for error in context.get("probe_errors") or []]
    )
    declared: dict[str, tuple[str, ...]] = {}
    for module_name in _DERIVERS:
        module = importlib.import_module(module_name)
        module.derive(context, node, image)
        declared.update(module.INPUTS)
    mark_derived_failures(context, declared)
    return context


_NODE_PARTS = ("host", "driver", "topology", "fabric", "cuda_host", "container_runtime")
_LISTED = 8  # entries shown in a finding's message; the rest are counted


def failed_facts(context: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """Concrete fact path -> (reason, still null) for every fact a probe failed to collect
    (its owner's `failed` list, gpudoctor.facts.mark_failed); "still null" is false when
    another source filled the value in."""
    found: dict[str, tuple[str, bool]] = {}

    def collect(obj: Any, prefix: str) -> None:
        if not isinstance(obj, dict) or not obj.get("failed"):
            return
        reasons = obj.get("unknown") or {}
        for name in obj["failed"]:
            null = obj.get(name) in (None, [])
            reason = reasons.get(name) if null else "query failed, value from another source"
            found[f"{prefix}{name}"] = (str(reason or "probe failed"), null)

    collect(context, "")
    for part in _NODE_PARTS:
        collect(context.get(part), f"{part}.")
    for i, gpu in enumerate(context.get("gpus") or []):
        collect(gpu, f"gpus[{i}].")
    for i, pair in enumerate((context.get("topology") or {}).get("pairs") or []):
        collect(pair, f"topology.pairs[{i}].")
    return found


def _listed(entries: list[str]) -> list[str]:
    shown = list(entries)
    if len(shown) > _LISTED:
        shown[_LISTED:] = [f"and {len(shown) - _LISTED} more"]
    return shown
