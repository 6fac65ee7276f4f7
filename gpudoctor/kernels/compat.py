"""Per compute capability: will this binary's kernels run natively, by PTX JIT, or not at all?

The rules, with their sources (also /work/shared/reference/compat-facts.md §6):
- Cubin (SASS) for sm_XY runs on CC X.Z when the major is equal and Z >= Y
  ("A cubin generated for a certain compute capability is supported to run on
  any GPU with the same major revision and same or higher minor revision",
  Blackwell Compatibility Guide §1.2,
  https://docs.nvidia.com/cuda/blackwell-compatibility-guide/).
- Arch-specific sm_XYa / compute_XYa (CC 9.0 onwards) runs only on exactly
  CC X.Y, cubin and PTX alike (CUDA Programming Guide, "Compute Capability";
  https://developer.nvidia.com/blog/nvidia-blackwell-and-nvidia-cuda-12-9-introduce-family-specific-architecture-features/).
- Family-specific sm_XYf / compute_XYf (CUDA 12.9+) runs on CCs of the same
  family that are >= X.Y; families are {10.0, 10.3, 10.7}, {11.0}, {12.0, 12.1}
  (CUDA Programming Guide, feature availability table; same blog).
- Plain PTX for compute_XY is JIT-compiled by the driver for any CC >= X.Y, if
  the driver understands its PTX ISA (CUDA Compatibility guide,
  https://docs.nvidia.com/deploy/cuda-compatibility/; newer PTX fails with
  CUDA_ERROR_UNSUPPORTED_PTX_VERSION).
- A compatible cubin wins over PTX: JIT only happens when no cubin fits
  (Pascal Compatibility Guide §1.2).
"""

from __future__ import annotations

from collections.abc import Iterable

from gpudoctor.facts import BinaryFacts, FatbinEntry
from gpudoctor.kernels.fatbin import MAX_ARCH
from gpudoctor.kernels.ptx import parse_version, toolkit_tuple_for_isa

NATIVE = "native"
JIT = "jit"
NONE = "none"
# PTX would fit the GPU, but whether the driver's JIT accepts its ISA cannot
# be told (ISA or driver version unknown to this table): never guess "jit".
UNKNOWN = "unknown"

# The compute capabilities gpudoctor reports on when none are asked for.
DEFAULT_CCS = ("7.0", "7.2", "7.5", "8.0", "8.6", "8.7", "8.9", "9.0", "10.0", "10.3", "11.0", "12.0", "12.1")

_FAMILIES: tuple[tuple[int, ...], ...] = ((100, 103, 107), (110,), (120, 121))


def cc_number(cc: str) -> int:
    """'9.0' -> 90, '12.1' -> 121; ValueError for anything else."""
    major, _, minor = cc.strip().partition(".")
    digits = major + minor
    if not (digits.isascii() and digits.isdigit()) or not major or len(minor) != 1:
        raise ValueError(f"not a compute capability: {cc!r} (expected e.g. 9.0 or sm_90)")
    return int(major) * 10 + int(minor)


def targetable(number: int) -> bool:
    """Whether a cubin or PTX target can name this compute capability at all (a fatbin's
    arch field is one byte: gpudoctor.kernels.fatbin.MAX_ARCH)."""
    return 10 <= number <= MAX_ARCH


def cc_from_text(text: str) -> str:
    """'9.0' or 'sm_90' / 'compute_90' (the names the report prints) -> '9.0'; ValueError otherwise."""
    text = original = text.strip()
    body = text.removeprefix("sm_").removeprefix("compute_")
    if body != text:
        if not body.isdigit() or len(body) < 2:
            raise ValueError(f"not a compute capability: {text!r} (expected e.g. 9.0 or sm_90)")
        text = f"{body[:-1]}.{body[-1]}"
    try:
        number = cc_number(text)
    except ValueError:
        number = 0
    if not targetable(number):
        raise ValueError(
            f"not a compute capability: {original!r} (expected e.g. 9.0 or sm_90, up to {MAX_ARCH / 10})"
        )
    return f"{number // 10}.{number % 10}"


def split_target(target: str) -> tuple[int, str]:
    """'sm_90a' -> (90, 'a'); 'sm_100f' -> (100, 'f')."""
    body = target.removeprefix("sm_").removeprefix("compute_")
    variant = body[-1] if body and body[-1] in "af" else ""
    digits = body[:-1] if variant else body
    return int(digits), variant


def _family(number: int) -> tuple[int, ...] | None:
    for family in _FAMILIES:
        if number in family:
            return family
    return None


def target_runs_on(number: int, variant: str, device: int, *, cubin: bool) -> bool:
    """Does code for target `number`+`variant` run on CC `device` (same encoding)?"""
    if variant == "a":
        return number == device
    if variant == "f":
        family = _family(number)
        return family is not None and device in family and device >= number
    if cubin:
        return number // 10 == device // 10 and device % 10 >= number % 10
    return device >= number


def ptx_accepted(entry: FatbinEntry, driver_cuda: str | None) -> bool | None:
    """Can a driver of CUDA version `driver_cuda` JIT this PTX? None: cannot tell."""
    if driver_cuda is None:
        return True  # no node given: the verdict is about the GPU only
    driver = parse_version(driver_cuda)
    isa = parse_version(entry.ptx_isa)
    needed = toolkit_tuple_for_isa(isa) if isa else None
    if driver is None or needed is None:
        return None
    return needed <= driver


def verdict(entries: Iterable[FatbinEntry], cc: str, driver_cuda: str | None = None) -> str:
    device = cc_number(cc)
    if not targetable(device):  # a GPU fact no device code can be built for: not "none"
        return UNKNOWN
    jit_possible: list[bool | None] = []
    for entry in entries:
        number, variant = split_target(entry.target)
        is_cubin = entry.kind == "cubin"
        if not target_runs_on(number, variant, device, cubin=is_cubin):
            continue
        if is_cubin:
            return NATIVE
        jit_possible.append(ptx_accepted(entry, driver_cuda))
    if any(ok is True for ok in jit_possible):
        return JIT
    if any(ok is None for ok in jit_possible):
        return UNKNOWN
    return NONE


def fill_per_gpu(binary: BinaryFacts, ccs: Iterable[str], driver_cuda: str | None = None) -> None:
    """Verdicts for binaries with device code; a host-only library needs no kernel.
    A binary that could not be read is unknown for every GPU, never "none" or ok."""
    if binary.error is not None:
        binary.per_gpu = dict.fromkeys(ccs, UNKNOWN)
        return
    if not binary.fatbin_entries:
        return
    binary.per_gpu = {cc: verdict(binary.fatbin_entries, cc, driver_cuda) for cc in ccs}
