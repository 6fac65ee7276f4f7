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
  image.py    image vs node (CUDA runtime vs driver, NVIDIA_REQUIRE_* evaluation, platform)
  kernels.py  fatbin coverage per GPU, framework meaning (FlashAttention, torch)
"""

from __future__ import annotations

import importlib
from typing import Any

from gpudoctor.facts import ImageFacts, NodeFacts

_DERIVERS = ("gpudoctor.derive.node", "gpudoctor.derive.image", "gpudoctor.derive.kernels")


def build_context(node: NodeFacts, image: ImageFacts | None = None) -> dict[str, Any]:
    context: dict[str, Any] = node.to_dict()
    context["image"] = image.to_dict() if image is not None else None
    context["derived"] = {}
    for gpu in context["gpus"]:
        gpu["derived"] = {}
    for pair in context["topology"]["pairs"]:
        pair["derived"] = {}
    for module_name in _DERIVERS:
        importlib.import_module(module_name).derive(context, node, image)
    return context
