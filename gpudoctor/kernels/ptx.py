"""PTX ISA version <-> CUDA toolkit release.

NVIDIA's table "PTX ISA <-> CUDA Release" (PTX ISA docs, release notes section:
https://docs.nvidia.com/cuda/parallel-thread-execution/#release-notes), as
mirrored in NVIDIA/cuda-python `cuda/bindings/utils/_ptx_utils.py`: for 7.x/8.x
the CUDA major is the PTX major + 4 with the same minor, except 8.6 -> 12.7,
8.7 -> 12.8, 8.8 -> 12.9 (12.6 shipped 8.5); 9.x -> 13.x.
A driver can JIT only PTX whose ISA it knows, i.e. from a toolkit <= the
driver's CUDA version (CUDA Compatibility guide, minor version compatibility:
https://docs.nvidia.com/deploy/cuda-compatibility/).
"""

from __future__ import annotations

_EXCEPTIONS = {(8, 6): (12, 7), (8, 7): (12, 8), (8, 8): (12, 9)}


def parse_version(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    parts = text.strip().split(".")
    try:
        return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        return None


def toolkit_tuple_for_isa(isa: tuple[int, int]) -> tuple[int, int] | None:
    """The first CUDA release whose toolchain emits this PTX ISA; None if unknown."""
    if isa in _EXCEPTIONS:
        return _EXCEPTIONS[isa]
    major, minor = isa
    if major in (7, 8):
        return major + 4, minor
    if major == 9:
        return 13, minor
    return None


def toolkit_for_isa(isa: str | None) -> str | None:
    parsed = parse_version(isa)
    found = toolkit_tuple_for_isa(parsed) if parsed else None
    return f"{found[0]}.{found[1]}" if found else None
