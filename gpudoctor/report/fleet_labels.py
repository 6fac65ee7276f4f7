"""Short labels for node classes and images in the human fleet views (terminal and HTML).

A class key ("1x NVIDIA A800-SXM4-80GB | driver 535 (CUDA 12.2) | unknown | single") is exact
but long; the label keeps what tells classes apart at a glance: "1x A800-SXM4-80GB R535".
Topology and kernel module are added only where they are known, and a number where two
classes would still read the same.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

_UNSAID = ("unknown", "single")


def class_labels(classes: list[dict[str, Any]]) -> dict[str, str]:
    """class key -> short label, unique within the document."""
    labels = {}
    for row in classes:
        label = f"{row['gpu_models'].replace('NVIDIA ', '')} R{row['driver_branch']}"
        extras = [row[k] for k in ("kernel_module", "topology") if row.get(k) not in _UNSAID]
        labels[row["key"]] = " ".join([label, *extras])
    counts = Counter(labels.values())
    seen: Counter[str] = Counter()
    for key, label in labels.items():
        if counts[label] > 1:
            seen[label] += 1
            labels[key] = f"{label} #{seen[label]}"
    return labels


def image_labels(references: list[str]) -> dict[str, str]:
    """reference -> its last path component with tag ('vllm-openai:v0.23.0'), unique."""
    labels = {}
    for reference in references:
        labels[reference] = reference.rsplit("/", 1)[-1] or reference
    counts = Counter(labels.values())
    return {ref: (label if counts[label] == 1 else ref) for ref, label in labels.items()}
