"""OCI platforms: parsing `--platform os/arch[/variant]` and choosing one from an index."""

from __future__ import annotations

import os
from collections.abc import Sequence

from gpudoctor.errors import UsageError
from gpudoctor.facts import Platform

# uname -m / common aliases -> OCI architecture names
_ARCH_ALIASES = {
    "x86_64": "amd64",
    "x86-64": "amd64",
    "aarch64": "arm64",
    "armhf": "arm",
    "armel": "arm",
    "i386": "386",
    "i686": "386",
}


def normalise_arch(arch: str) -> str:
    arch = arch.lower()
    return _ARCH_ALIASES.get(arch, arch)


def parse_platform(text: str) -> Platform:
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise UsageError(f"invalid platform {text!r}: expected OS/ARCH or OS/ARCH/VARIANT")
    variant = parts[2] if len(parts) == 3 else None
    return Platform(os=parts[0].lower(), architecture=normalise_arch(parts[1]), variant=variant)


def platform_for_cpu(cpu_arch: str | None) -> Platform | None:
    """The Linux platform a node with this `uname -m` runs natively."""
    return Platform(os="linux", architecture=normalise_arch(cpu_arch)) if cpu_arch else None


def host_platform() -> Platform:
    return Platform(os="linux", architecture=normalise_arch(os.uname().machine))


def _matches(offered: Platform, wanted: Platform) -> bool:
    if offered.os != wanted.os or offered.architecture != wanted.architecture:
        return False
    return wanted.variant is None or offered.variant == wanted.variant


def choose(offered: Sequence[Platform], wanted: Platform) -> int | None:
    """Index of the entry to use for `wanted`, None when the index has no match.

    Attestation entries (unknown/unknown) never match a real platform.
    """
    for i, candidate in enumerate(offered):
        if _matches(candidate, wanted):
            return i
    return None
