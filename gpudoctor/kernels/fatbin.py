"""The CUDA fatbin container: headers only, payloads are never decompressed.

NVIDIA does not document the container; the layout below is what nvcc emits
(checked against cuobjdump on every fixture in fixtures/fatbins/) and matches
the public `fatbinary_section.h` / `__cudaFatCudaBinary2` description:

  container header (16 bytes): u32 magic 0xBA55ED50, u16 version, u16 header
      size, u64 size of the entries that follow
  entry header (>= 64 bytes): u16 kind (1 PTX, 2 ELF cubin), u16 version,
      u32 header size, u64 payload size, u32 compressed size, u32 option offset,
      u16 minor, u16 major (PTX ISA for PTX entries), u32 arch (90 = sm_90),
      u32 name offset, u32 name length, u64 flags, ...

Flags used here: 0x2000 / 0x8000 payload compressed (older LZ4 and newer
codecs), 0x100000 arch-specific ("a") target, 0x200000 family ("f") target.
A .nv_fatbin section holds one or more containers back to back (zero
padding at most between them).

Payloads are never decompressed, but their first bytes must be what the
header says (the loader reads the payload, so a damaged one does not run):
an uncompressed cubin is an EM_CUDA ELF of the header's architecture, an
uncompressed PTX is text ("Source modules are ASCII text", PTX ISA §4.1),
a 0x8000 payload is a Zstandard frame (nvcc 13 output; magic and frame
header: RFC 8878 §3.1.1) whose recorded content size is the u64 at entry
offset 56. The compressed length (u32 at 16) fits in the payload. Entries
flagged 0x10000 (nvcc writes it on LTO IR, which cuobjdump calls
obfuscated) and LZ4 payloads (no frame magic) are not checked.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

from gpudoctor.kernels.elf import ELF_MAGIC, Buffer, Reader

FATBIN_MAGIC = 0xBA55ED50
FATBIN_MAGIC_BYTES = struct.pack("<I", FATBIN_MAGIC)

KIND_PTX = 1
KIND_CUBIN = 2
# LTO IR (nvcc -gencode code=lto_XY): the loader cannot run it, gpudoctor skips it.
KIND_LTO_IR = 8
# The only kinds in nvcc 13.0 output and in 17 NVIDIA libraries (cuBLAS, cuDNN, cuFFT,
# cuSPARSE, NCCL, libtorch_cuda: 45,000 entries); any other kind is a damaged header.
KNOWN_KINDS = (KIND_PTX, KIND_CUBIN, KIND_LTO_IR)
FLAG_COMPRESSED_LZ4 = 0x2000
FLAG_COMPRESSED = 0x8000
FLAG_ARCH_SPECIFIC = 0x100000
FLAG_FAMILY = 0x200000

_CONTAINER = struct.Struct("<IHHQ")
_ENTRY = struct.Struct("<HHIQIIHHIIIQQQ")  # through the uncompressed size: 64 bytes
_MIN_ENTRY_HEADER = _ENTRY.size
FLAG_OBFUSCATED = 0x10000
# Payload bytes read to check it: an ELF64 header (64), a Zstandard frame header (<= 18).
_PAYLOAD_HEAD = 64
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
EM_CUDA = 190
# CUDA ELF ABI version from which e_flags keep the SM in bits 8-15 (cubin.py).
CUDA_ABI_V8 = 8

# (offset, length, what) -> exactly `length` bytes, or FatbinError naming `what` as truncated
HeaderReader = Callable[[int, int, str], bytes]


class FatbinError(ValueError):
    """A fatbin header that is inconsistent or points outside its section."""


@dataclass(frozen=True)
class RawEntry:
    kind: int  # KIND_PTX | KIND_CUBIN
    arch: int  # 90 for sm_90
    variant: str  # "" | "a" | "f"
    version_major: int
    version_minor: int
    compressed: bool
    payload_offset: int  # inside the buffer given to parse_containers
    payload_size: int

    @property
    def target(self) -> str:
        """Exact target, variant included: sm_90a, sm_100f."""
        return f"sm_{self.arch}{self.variant}"

    @property
    def listed_target(self) -> str:
        """The name cuobjdump lists: it drops the family suffix on cubins only."""
        if self.kind == KIND_CUBIN and self.variant == "f":
            return f"sm_{self.arch}"
        return self.target

    @property
    def ptx_isa(self) -> str | None:
        return f"{self.version_major}.{self.version_minor}" if self.kind == KIND_PTX else None


# Containers follow each other directly; at most this many zero bytes of
# alignment padding lie between two (none in nvcc's .nv_fatbin, up to 24 in
# cuFFT's .ldata).
MAX_PADDING = 64
# The first SM of each target variant: arch-specific "a" targets begin with compute
# capability 9.0, family-specific "f" ones with 10.0 (CUDA 12.9) (CUDA Programming Guide,
# "Feature Set Compiler Targets"; compat-facts.md B4, B5). sm_80a is a damaged header.
_FIRST_ARCH = {"a": 90, "f": 100}
# Arch fields are major * 10 + minor, one byte in a cubin's e_flags (CUDA ELF
# ABI 8); a larger number is a corrupt header, not a GPU.
MAX_ARCH = 255


def parse_containers(buf: Buffer, start: int = 0, end: int | None = None) -> list[RawEntry]:
    """Every entry of the containers that fill buf[start:end], back to back."""
    view = memoryview(buf)
    limit = len(view) if end is None else min(end, len(view))
    return parse_containers_from(lambda offset, length: bytes(view[offset : offset + length]), start, limit)


def parse_containers_from(read: Reader, start: int, end: int) -> list[RawEntry]:
    """Every entry of the containers that fill [start, end), read through `read`.

    The region must hold nothing but containers and zero padding: anything
    else where a container should start is an error, never skipped (a
    container with a damaged header would otherwise vanish from the verdict).
    """
    found: dict[int, list[RawEntry]] = {}
    walk_run(read, start, end, found, strict=True)
    return [entry for offset in sorted(found) for entry in found[offset]]


def walk_run(read: Reader, start: int, limit: int, found: dict[int, list[RawEntry]], *, strict: bool) -> None:
    """Record in `found` (offset -> entries) the run of containers from `start`.

    The first container must be sound. With `strict` (a region that holds only
    containers) so must everything up to `limit`; otherwise the run ends at the
    first thing that is not a container.
    """
    read_header = partial(read_exact, read)
    offset: int | None = start
    while offset is not None and offset not in found:
        entries: list[RawEntry] = []
        try:
            end = read_container(read_header, offset, limit, entries)
        except FatbinError:
            if strict or offset == start:
                raise
            return
        found[offset] = entries
        offset = next_container(read, end, limit, strict=strict)


def read_container(read_header: HeaderReader, at: int, limit: int, entries: list[RawEntry]) -> int:
    """Append the entries of the container at `at`, which must end by `limit`; its end."""
    if at + _CONTAINER.size > limit:
        raise FatbinError(f"fatbin header at {at:#x} is truncated")
    body, body_end = container_body(read_header, at)
    if body_end > limit:
        raise FatbinError(f"fatbin at {at:#x} claims {body_end - body} bytes, past the end of its section")
    entries.extend(walk_entries(read_header, body, body_end))
    return body_end


def next_container(read: Reader, end: int, limit: int, *, strict: bool) -> int | None:
    """Where the container after the one ending at `end` starts, or None.

    Only zero padding (up to MAX_PADDING bytes) may come first. None at
    `limit` or after padding that runs to `limit`; anything else is an error
    when `strict` (a region known to hold only containers), else the end of
    the run.
    """
    window = read(end, min(MAX_PADDING + 4, max(0, limit - end)))
    padding = len(window) - len(window.lstrip(b"\0"))
    if padding == len(window) and (end + padding >= limit or not strict):
        return None  # zeros to the end of the region
    if window[padding : padding + 4] == FATBIN_MAGIC_BYTES:
        return end + padding
    if strict:
        raise FatbinError(f"no fatbin magic at {end + padding:#x}")
    return None


def read_exact(read: Reader, offset: int, length: int, what: str) -> bytes:
    data = read(offset, length)
    if len(data) != length:
        raise FatbinError(f"{what} at {offset:#x} is truncated")
    return data


def container_body(read_header: HeaderReader, at: int) -> tuple[int, int]:
    """Where the entries of the container whose header is at `at` start and end."""
    magic, _version, header_size, body_size = _CONTAINER.unpack(
        read_header(at, _CONTAINER.size, "fatbin header")
    )
    if magic != FATBIN_MAGIC:
        raise FatbinError(f"no fatbin magic at {at:#x}")
    if header_size < _CONTAINER.size:
        raise FatbinError(f"fatbin header size {header_size} at {at:#x} is too small")
    body = at + header_size
    return body, body + body_size


def walk_entries(read_header: HeaderReader, body: int, body_end: int) -> Iterator[RawEntry]:
    """The PTX and cubin entries between body and body_end, in order, headers read as needed."""
    cursor = body
    while cursor < body_end:
        if cursor + _ENTRY.size > body_end:
            raise FatbinError(f"fatbin entry header at {cursor:#x} is truncated")
        fields = _ENTRY.unpack(read_header(cursor, _ENTRY.size, "fatbin entry header"))
        kind, entry_header, payload = fields[0], fields[2], fields[3]
        # A header smaller than the fixed fields would make the walk stand still
        # or go backwards; reject it instead of looping.
        if entry_header < _MIN_ENTRY_HEADER:
            raise FatbinError(f"fatbin entry at {cursor:#x} has header size {entry_header}")
        next_entry = cursor + entry_header + payload
        if next_entry > body_end:
            raise FatbinError(f"fatbin entry at {cursor:#x} runs past the end of its container")
        if kind not in KNOWN_KINDS:
            raise FatbinError(f"fatbin entry at {cursor:#x} has unknown kind {kind}")
        if kind in (KIND_PTX, KIND_CUBIN):
            entry = entry_from_header(fields, cursor)
            check_payload(read_header, fields, entry)
            yield entry
        cursor = next_entry


def entry_from_header(fields: tuple[int, ...], at: int) -> RawEntry:
    """RawEntry from the unpacked _ENTRY fields of the header at `at`."""
    kind, _ev, entry_header, payload, _csize, _opt, minor, major, arch, _no, _nl, flags, _r, _us = fields
    if not 0 < arch <= MAX_ARCH:
        raise FatbinError(f"fatbin entry at {at:#x} names an impossible architecture ({arch})")
    if flags & FLAG_ARCH_SPECIFIC and flags & FLAG_FAMILY:
        raise FatbinError(f"fatbin entry at {at:#x} is flagged both arch- and family-specific")
    variant = _variant(flags)
    if arch < _FIRST_ARCH.get(variant, 0):
        raise FatbinError(f"fatbin entry at {at:#x} names sm_{arch}{variant}, a target that does not exist")
    return RawEntry(
        kind=kind,
        arch=arch,
        variant=variant,
        version_major=major,
        version_minor=minor,
        compressed=bool(flags & (FLAG_COMPRESSED | FLAG_COMPRESSED_LZ4)),
        payload_offset=at + entry_header,
        payload_size=payload,
    )


def check_payload(read_header: HeaderReader, fields: tuple[int, ...], entry: RawEntry) -> None:
    """FatbinError unless the payload starts as the entry header says (module docstring)."""
    stored, flags, uncompressed = fields[4], fields[11], fields[13]
    at = entry.payload_offset - fields[2]
    if stored > entry.payload_size:
        raise FatbinError(
            f"fatbin entry at {at:#x} stores {stored} bytes in a {entry.payload_size}-byte payload"
        )
    if flags & (FLAG_OBFUSCATED | FLAG_COMPRESSED_LZ4):
        return
    head = read_header(entry.payload_offset, min(_PAYLOAD_HEAD, entry.payload_size), "fatbin payload")
    if flags & FLAG_COMPRESSED:
        problem = _zstd_problem(head, uncompressed)
    elif entry.kind == KIND_CUBIN:
        problem = _cubin_problem(head, entry.arch)
    else:
        problem = None if _is_text(head) else "is not PTX text"
    if problem:
        raise FatbinError(f"fatbin entry at {at:#x}: payload {problem}")


def cubin_arch(abi_version: int, e_flags: int) -> int:
    """The SM number in a cubin's e_flags: bits 0-7 up to CUDA ELF ABI 7, bits 8-15 from ABI 8."""
    return (e_flags >> 8) & 0xFF if abi_version >= CUDA_ABI_V8 else e_flags & 0xFF


def _cubin_problem(head: bytes, arch: int) -> str | None:
    # ELF64 little-endian, as nvcc writes cubins: e_machine at 18, e_flags at 48.
    if len(head) < _PAYLOAD_HEAD or head[:4] != ELF_MAGIC or head[4] != 2 or head[5] != 1:
        return "is not a 64-bit little-endian ELF cubin"
    machine, e_flags = struct.unpack_from("<H", head, 18)[0], struct.unpack_from("<I", head, 48)[0]
    if machine != EM_CUDA:
        return f"is an ELF for machine {machine}, not CUDA"
    found = cubin_arch(head[8], e_flags)
    return None if found == arch else f"is a cubin for sm_{found}, the header says sm_{arch}"


def _is_text(head: bytes) -> bool:
    """ASCII with no NUL before the zero padding that may follow a short text."""
    text = head.rstrip(b"\0")
    return bool(text) and text.isascii() and b"\0" not in text


def _zstd_problem(head: bytes, uncompressed: int) -> str | None:
    """Check a Zstandard frame header (RFC 8878 §3.1.1.1) against the entry's uncompressed size."""
    if len(head) < 6 or head[:4] != _ZSTD_MAGIC:
        return "is not a Zstandard frame"
    descriptor = head[4]
    if descriptor & 0x08:
        return "has a Zstandard frame header with the reserved bit set"
    single_segment = descriptor >> 5 & 1
    start = 5 + (1 - single_segment) + (0, 1, 2, 4)[descriptor & 3]
    width = (single_segment, 2, 4, 8)[descriptor >> 6]
    if not width:
        return None  # the frame does not record its content size
    if start + width > len(head):
        return "ends inside its Zstandard frame header"
    recorded = int.from_bytes(head[start : start + width], "little") + (256 if width == 2 else 0)
    if recorded != uncompressed:
        return f"inflates to {recorded} bytes, the header says {uncompressed}"
    return None


def _variant(flags: int) -> str:
    if flags & FLAG_ARCH_SPECIFIC:
        return "a"
    if flags & FLAG_FAMILY:
        return "f"
    return ""
