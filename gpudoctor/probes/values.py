"""Small value conversions shared by the NVML, nvidia-smi XML and sysfs probes."""

from __future__ import annotations

# The bounded integer readers live with the versions (derive, fleet and explain use them
# too); the probes import them from here.
from gpudoctor.versions import MAX_DIGITS as MAX_DIGITS
from gpudoctor.versions import branch_of as branch_of
from gpudoctor.versions import count_from as count_from


def mib_from(text: str) -> int | None:
    """81920 from "81920 MiB"; None for anything else ("N/A", "81920 KiB")."""
    stripped = text.strip()
    if not stripped.endswith("MiB"):
        return None
    return count_from(stripped[:-3].rstrip())


def yes_no(text: str) -> bool | None:
    lowered = text.strip().lower()
    if lowered == "yes":
        return True
    if lowered == "no":
        return False
    return None


_FABRIC_STATES = {
    "not supported": "not_supported",
    "not started": "not_started",
    "in progress": "in_progress",
}


def fabric_state_name(text: str) -> str | None:
    """nvidia-smi's fabric state words -> the fact model's names."""
    lowered = text.strip().lower()
    if lowered == "completed":
        return "completed"
    return _FABRIC_STATES.get(lowered)


def cuda_version_from_int(value: int) -> str:
    """NVML/CUDA encode versions as 1000*major + 10*minor: 13000 -> "13.0"."""
    return f"{value // 1000}.{(value % 1000) // 10}"
