"""Compute capability and architecture of a GPU from the knowledge base.

Neither NVML on old drivers nor nvidia-smi XML (any version) always states the
compute capability, so it is looked up in the sourced GPU table
(rules/matrix/gpus.yaml, owned by the knowledge base) by product name, then by
PCI device id. A GPU the table does not know keeps both facts unknown.
"""

from __future__ import annotations

from gpudoctor.facts import GpuFacts, mark_failed

NOT_IN_TABLE = "GPU not in gpudoctor's GPU table (rules/matrix/gpus.yaml) and not reported by the source"

# nvidia-smi's <product_architecture> words -> the fact model's names.
_ARCHITECTURE_WORDS = {"ada lovelace": "ada"}


def architecture_name(text: str | None) -> str | None:
    if not text:
        return None
    lowered = text.strip().lower()
    return _ARCHITECTURE_WORDS.get(lowered, lowered)


def fill_model_facts(gpu: GpuFacts, reported_cc: str | None, reported_architecture: str | None) -> None:
    """Set compute_capability and architecture: what the source reported wins over the table."""
    from gpudoctor.knowledge import matrix

    model = matrix.gpu_by_name(gpu.name) or matrix.gpu_by_pci_id(gpu.pci_device_id)
    cc = reported_cc or (model.compute_capability if model else None)
    architecture = architecture_name(reported_architecture)
    if architecture is None and model is not None:
        architecture = model.architecture
    if architecture is None and cc is not None:
        row = matrix.compute_capability(cc)
        architecture = row.architecture if row else None
    gpu.compute_capability = cc
    gpu.architecture = architecture
    for name, value in (("compute_capability", cc), ("architecture", architecture)):
        if value is not None:
            # From the table; a failed query stays in `failed`: it still counts (facts.py).
            gpu.unknown.pop(name, None)
        elif {"compute_capability", "name"} & set(gpu.failed):
            # Not in the table because the query that would have told failed: a failure.
            cause = "compute_capability" if "compute_capability" in gpu.failed else "name"
            mark_failed(gpu, name, gpu.unknown[cause])
        else:
            gpu.unknown[name] = NOT_IN_TABLE
