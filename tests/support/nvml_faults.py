"""NVML fault injection over the recorded snapshots (fixtures/nvml/): every recorded call,
one at a time, answers an NVML error instead of its recorded value, and the node is
diagnosed as `gpudoctor scan` would. Used by tests/test_probe_nvml.py (a deterministic
sample) and tools/nvml_fault_sweep.py (the whole product)."""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gpudoctor.probes.nvml_api import ReplayNvml
from tests.support.nvml_replay import NVML_FIXTURES, snapshot

SYSFS_NO_DRIVER = Path(__file__).resolve().parent.parent.parent / "fixtures" / "sysfs" / "no-driver"

# NVML errors that mean "this call failed" (nvmlReturn_t, as pynvml names its classes).
# NotSupported is in the list although NVML also uses it to say a board lacks a feature:
# where the probe takes it as that answer (ECC on GeForce), the sweep shows what it gives.
FAULT_CLASSES = ("Unknown", "GpuIsLost", "NoPermission", "Timeout", "Uninitialized", "NotSupported")

SNAPSHOTS_WITH_GPUS = ("8x-v100s-pcie", "a100-mig", "geforce-not-supported", "gpu-lost")


def recorded_calls(name: str) -> list[str]:
    """The calls of a snapshot that answered a value (the ones a fault can change), sorted;
    not nvmlShutdown, which runs after every fact is in and changes none."""
    calls = snapshot(name)["calls"]
    return sorted(key for key, entry in calls.items() if "value" in entry and key != "nvmlShutdown")


# The ECC fact each ECC call answers, to ask whether the board must report it.
_ECC_FACTS = {
    "nvmlDeviceGetEccMode": "ecc_mode",
    "nvmlDeviceGetRetiredPagesPendingStatus": "retired_pages_pending",
    "nvmlDeviceGetTotalEccErrors": "ecc_errors_uncorrectable_{2}",
}


def documented_answer(name: str, key: str, error: str) -> bool:
    """NotSupported where NVML documents it as "this board lacks the feature" (the probe's
    is_answer) and nothing known of the board says otherwise: not for NVLink past link 0
    (earlier links showed NVLink is there), nor for an ECC fact the board must report
    (gpumodel.expected_memory_facts, judged on the snapshot as recorded). The node then reads
    as a board without the feature, which may be healthy."""
    from gpudoctor.probes.gpumodel import expected_memory_facts
    from gpudoctor.probes.nvml_api import NvmlError
    from gpudoctor.probes.nvml_probe import is_answer

    function, *args = key.split("|")
    if function == "nvmlDeviceGetNvLinkState" and args[1] != "0":
        return False
    fact = _ECC_FACTS.get(function)
    if fact is not None and fact.format(*args) in expected_memory_facts(_recorded_gpu(name, int(args[0]))):
        return False
    return is_answer(function, NvmlError(error))


@functools.lru_cache(maxsize=64)
def _recorded_gpu(name: str, index: int) -> Any:
    from gpudoctor.probes.nvml_probe import probe_nvml

    return probe_nvml(ReplayNvml(snapshot(name))).gpus[index]


def fault_cases(names: tuple[str, ...] = SNAPSHOTS_WITH_GPUS) -> Iterator[tuple[str, str, str]]:
    for name in names:
        for key in recorded_calls(name):
            for error in FAULT_CLASSES:
                yield name, key, error


def with_fault(name: str, key: str, error: str) -> ReplayNvml:
    data: dict[str, Any] = copy.deepcopy(snapshot(name))
    data["calls"][key] = {"error": error}
    return ReplayNvml(data)


def diagnose_with_fault(name: str, key: str, error: str) -> dict[str, Any]:
    """The scan report of a snapshot with one call failing."""
    from gpudoctor.pipeline import diagnose
    from gpudoctor.probes.collect import collect_node

    node = collect_node(sysfs_root=str(SYSFS_NO_DRIVER), nvml=with_fault(name, key, error))
    return diagnose(node)


__all__ = [
    "NVML_FIXTURES",
    "FAULT_CLASSES",
    "fault_cases",
    "diagnose_with_fault",
    "documented_answer",
    "recorded_calls",
]
