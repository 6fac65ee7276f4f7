"""Small value conversions shared by the NVML, nvidia-smi XML and sysfs probes."""

from __future__ import annotations


def branch_of(version: str | None) -> int | None:
    """580 from "580.65.06": the branch is the first component of a driver version."""
    if not version:
        return None
    head = version.split(".")[0]
    return int(head) if head.isdigit() else None


def mib_from(text: str) -> int | None:
    """81920 from "81920 MiB"; None for anything else ("N/A", "81920 KiB")."""
    stripped = text.strip()
    if not stripped.endswith("MiB"):
        return None
    number = stripped[:-3].rstrip()
    return int(number) if number.isdecimal() else None


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
