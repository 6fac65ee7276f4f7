"""NVIDIA Fabric Manager: service state and version, best effort.

NVSwitch systems (HGX/DGX) need it running with the driver's exact version,
or CUDA fails with error 802 "system not yet initialized".
"""

from __future__ import annotations

import re

from gpudoctor.probes import runcmd

UNIT = "nvidia-fabricmanager"
_UNIT_STATES = ("active", "inactive", "failed", "activating", "deactivating", "reloading", "unknown")
_VERSION = re.compile(r"version is\s*:\s*(\S+)|(\d+\.\d+\.\d+)")


def parse_version(text: str) -> str | None:
    match = _VERSION.search(text)
    return (match.group(1) or match.group(2)) if match else None


def probe_fabric_manager() -> tuple[bool | None, str | None, dict[str, str]]:
    """(running, version, unknown reasons)."""
    unknown: dict[str, str] = {}
    running: bool | None = None
    state = runcmd.run_outcome(["systemctl", "is-active", UNIT], timeout_s=3)
    # is-active prints the unit state even when it exits non-zero; anything else
    # (no systemd as PID 1, no D-Bus) leaves the state unknown.
    answer = state.stdout.strip()
    if answer in _UNIT_STATES:
        running = answer == "active"
    else:
        unknown["fabric_manager_running"] = state.reason or f"systemctl is-active {UNIT}: {answer!r}"
    version_out, version_reason = runcmd.run(["nv-fabricmanager", "--version"], timeout_s=3)
    version = parse_version(version_out) if version_out else None
    if version is None:
        unknown["fabric_manager_version"] = version_reason or "nv-fabricmanager --version not understood"
    return running, version, unknown
