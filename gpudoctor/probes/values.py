"""Small value conversions shared by the NVML, nvidia-smi XML and sysfs probes."""

from __future__ import annotations

# Counts, sizes and versions in any input fit in 18 digits; int() of a longer string is
# slow, and past 4300 digits Python refuses it (ValueError).
MAX_DIGITS = 18


def count_from(text: str | None) -> int | None:
    """A non-negative integer written in ASCII digits ("²" and "٣" are digits to isdigit),
    at most MAX_DIGITS long; None for anything else."""
    if not text or len(text) > MAX_DIGITS or not (text.isascii() and text.isdigit()):
        return None
    return int(text)


def branch_of(version: str | None) -> int | None:
    """580 from "580.65.06": the branch is the first component of a driver version."""
    if not version:
        return None
    return count_from(version.split(".")[0])


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
