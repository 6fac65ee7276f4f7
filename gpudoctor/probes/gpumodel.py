"""Compute capability and architecture of a GPU from the knowledge base.

Neither NVML on old drivers nor nvidia-smi XML (any version) always states the
compute capability, so it is looked up by PCI device id in the generated device
table (rules/matrix/gpu_devices.tsv, from pci.ids), by product name only where
no device id is known (gpudoctor.knowledge.gpu_identity). A GPU neither
identifies keeps both facts unknown, with the reason.
"""

from __future__ import annotations

from gpudoctor.facts import GpuFacts, mark_failed

# nvidia-smi's <product_architecture> words -> the fact model's names.
_ARCHITECTURE_WORDS = {"ada lovelace": "ada"}


def architecture_name(text: str | None) -> str | None:
    if not text:
        return None
    lowered = text.strip().lower()
    return _ARCHITECTURE_WORDS.get(lowered, lowered)


def fill_model_facts(gpu: GpuFacts, reported_cc: str | None, reported_architecture: str | None) -> None:
    """Set compute_capability and architecture: what the source reported wins over the tables."""
    from gpudoctor.knowledge import matrix
    from gpudoctor.knowledge.gpu_identity import identify

    identity = identify(gpu.pci_device_id, gpu.name)
    cc = reported_cc or identity.compute_capability
    architecture = architecture_name(reported_architecture)
    if architecture is None and not reported_cc:
        architecture = identity.architecture
    if architecture is None and cc is not None:
        row = matrix.compute_capability(cc)
        architecture = row.architecture if row else None
    gpu.compute_capability = cc
    gpu.architecture = architecture
    reason = identity.unknown_reason or "GPU not identified and not reported by the source"
    for name, value in (("compute_capability", cc), ("architecture", architecture)):
        if value is not None:
            # From the table; a failed query stays in `failed`: it still counts (facts.py).
            gpu.unknown.pop(name, None)
        elif failed := [f for f in ("compute_capability", "pci_device_id", "name") if f in gpu.failed]:
            # Not identified because a query that would have told failed: a failure.
            mark_failed(gpu, name, gpu.unknown[failed[0]])
        else:
            gpu.unknown[name] = reason


def table_says(gpu: GpuFacts, column: str, words: str) -> str | None:
    """ "gpudoctor's GPU table says <board> <words>" when the GPU's product row in
    rules/matrix/gpus.yaml (sourced: see its refs) has `column` true; None where not known."""
    from gpudoctor.knowledge.gpu_identity import identify

    model = identify(gpu.pci_device_id, gpu.name).model
    if model is None or not getattr(model, column):
        return None
    return f"gpudoctor's GPU table says {gpu.name or model.names[0]} {words}"


def expected_memory_facts(gpu: GpuFacts, vgpu_guest: bool = False) -> dict[str, str]:
    """The memory-health facts this GPU must report, each with why: ECC mode on a board the GPU
    table says has ECC memory (its `ecc` column); with ECC not disabled, the uncorrectable
    counters (nvml.h: "Requires ECC Mode to be enabled"), the volatile one not under MIG (N/A in
    a real A100 MIG nvidia-smi -q, fixtures/nvidia-smi/A100-SXM4-40GB-MIG_510.47.03.xml), and
    page retirement before Ampere (row remapping replaces it from Ampere on, NVIDIA's memory
    error management note). Where the table says nothing, none: a board's "no ECC" stands; nor
    in a vGPU guest, whose ECC is N/A in a real one's nvidia-smi -q (fixtures/nvidia-smi/
    GRID-P4-1Q-vGPU_513.46.xml): the board's memory is the host's to report."""
    board = table_says(gpu, "ecc", "has ECC memory")
    if board is None or vgpu_guest:
        return {}
    expected = {"ecc_mode": board}
    if gpu.ecc_mode != "disabled":
        expected["ecc_errors_uncorrectable_aggregate"] = board
        if gpu.mig_mode != "enabled":
            expected["ecc_errors_uncorrectable_volatile"] = board
        major = (gpu.compute_capability or "").split(".")[0]
        if major.isdigit() and int(major) < 8:
            expected["retired_pages_pending"] = f"{board}, retiring pages before Ampere"
    return expected
