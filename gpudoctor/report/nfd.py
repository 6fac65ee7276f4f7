"""Scan report -> node-feature-discovery local feature file (features.d).

NFD's local source reads `key=value` lines from
/etc/kubernetes/node-feature-discovery/features.d/ and turns them into node
labels; files whose names start with a dot are ignored, which is what makes
write_atomic's rename safe here. Labels live under
`gpudoctor.feature.node.kubernetes.io/`: a sub-namespace of
feature.node.kubernetes.io, which nfd-master accepts without `-extra-label-ns`.
Names and values follow Kubernetes label syntax (name <= 63 chars, value <= 63
chars, alphanumerics and `-_.`, alphanumeric at both ends); anything else is
replaced, never passed through. Unknown facts are labelled "unknown".
https://kubernetes-sigs.github.io/node-feature-discovery/stable/usage/customization-guide
https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#syntax-and-character-set
"""

from __future__ import annotations

import re
from typing import Any

PREFIX = "gpudoctor.feature.node.kubernetes.io/"
MAX_LENGTH = 63
_INVALID = re.compile(r"[^A-Za-z0-9._-]+")
_EDGES = re.compile(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$")


def label_value(value: Any) -> str:
    """Any fact -> a valid label value ('NVIDIA H100 80GB HBM3' -> 'NVIDIA-H100-80GB-HBM3')."""
    if value is None or value == "":
        return "unknown"
    text = _INVALID.sub("-", str(value))[:MAX_LENGTH]
    return _EDGES.sub("", text) or "unknown"


def _name(name: str) -> str:
    return PREFIX + label_value(name)


def render(report: dict[str, Any]) -> str:
    node = report.get("node") or {}
    driver = node.get("driver") or {}
    gpus = node.get("gpus") or []
    models = sorted({str(gpu.get("name") or "unknown") for gpu in gpus})
    capabilities = sorted(
        {str(gpu.get("compute_capability")) for gpu in gpus if gpu.get("compute_capability")}
    )
    labels: dict[str, str] = {
        "verdict": report["verdict"],
        "driver-version": label_value(driver.get("version")),
        "driver-branch": label_value(driver.get("branch")),
        "driver-cuda": label_value(driver.get("cuda_version")),
        "kernel-module": label_value(driver.get("kernel_module")),
        "gpu-count": str(len(gpus)),
        "gpu-model": label_value(models[0]) if len(models) == 1 else ("mixed" if models else "none"),
    }
    if any(not gpu.get("compute_capability") for gpu in gpus):
        labels["compute-capabilities-complete"] = "false"
    # One flag per model and per compute capability, so node affinity can use `Exists`
    # on mixed nodes too (a single value would have to pick one of them).
    for model in models:
        labels[f"gpu-model.{label_value(model)}"] = "true"
    for capability in capabilities:
        labels[f"cc.{label_value(capability)}"] = "true"
    for finding in report.get("findings") or []:
        if finding["severity"] in ("warn", "fail", "unknown"):
            labels.setdefault(f"rule.{label_value(finding['rule_id'])}", finding["severity"])
    lines = ["# gpudoctor scan --format nfd: node-feature-discovery local feature file"]
    lines.extend(f"{_name(name)}={label_value(value)}" for name, value in labels.items())
    return "\n".join(lines) + "\n"
