"""Where the CUDA runtime finds an ELF file's fatbins, and nowhere else.

nvcc's host stub registers each translation unit's device code with
`__cudaRegisterFatBinary(&wrapper)`; the wrapper (`__fatBinC_Wrapper_t` in
CUDA's `fatbinary_section.h`: u32 magic 0x466243b1, u32 version, pointer to
the fatbin data, pointer to prelinked fatbins) lives in `.nvFatBinSegment`,
and its data pointer leads to a container, normally in `.nv_fatbin`. In a
shared library that pointer is written at load time by a RELATIVE
relocation (its addend is the target); in an executable it is stored as is.

So the containers read are:
  1. every container of `.nv_fatbin` (or `__nv_relfatbin` in -rdc objects),
     which must hold nothing else (what cuobjdump lists);
  2. the container each wrapper points to, and the run of containers that
     directly follows it (same section, zero padding only), except the -rdc
     inputs in `__nv_relfatbin` of a device-linked library (their code is
     in `.nv_fatbin`; `__cudaRegisterLinkedBinary` does not load them alone);
  3. in a library with `.nv_fatbin` but no wrapper section (cuFFT: its
     registration code builds the wrappers at run time; its 24,454 containers
     sit in `.ldata`), the containers whose address the library can hand to
     `__cudaRegisterFatBinary`, and the runs that follow them:
     - targets of RELATIVE relocations (GOT entries, tables of pointers);
     - on x86-64, addresses the code computes as GOT + a 64-bit constant
       (`movabs $sym@GOTOFF, %reg; add %got, %reg`: how code of the medium and
       large models reaches `.ldata`, resolved when the library was linked, so
       no relocation is left). cuFFT takes the address of 24,283 of its
       containers this way; 36 of them (a run at the start of `.ldata`) are
       reached in no other way.
A wrapper or pointer that leads to something other than a sound container
is an error: the library's verdict becomes unknown. No magic scan of the
whole file: bytes that merely look like a fatbin are never read as one.
What this does not see: containers reached only through PC-relative code
(`lea sym(%rip)`, AArch64 `adrp`), which small-model code uses for data
within 2 GiB; cuFFT's `.ldata` is not reached that way.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable

from gpudoctor.kernels.elf import SHF_EXECINSTR, ElfFile, Reader, Section, relative_relocations
from gpudoctor.kernels.fatbin import (
    FATBIN_MAGIC_BYTES,
    FatbinError,
    RawEntry,
    read_exact,
    walk_run,
)

WRAPPER_MAGIC = 0x466243B1
FATBIN_SECTION = ".nv_fatbin"
# Relocatable device code (-rdc) objects carry their fatbin here until device
# linking; cuobjdump reads it only when there is no .nv_fatbin, and so do we.
RELOCATABLE_FATBIN_SECTION = "__nv_relfatbin"
WRAPPER_SECTION = ".nvFatBinSegment"
_MAX_WRAPPERS = 1 << 20
EM_X86_64 = 62
# `movabs $imm64, %reg` (REX.W or REX.WB, B8+r): the only x86-64 instruction with a
# 64-bit immediate, which is how GOTOFF64 offsets reach the code. A lookahead, so that
# matches may overlap (a false one must not hide a real one starting inside it).
_MOVABS = re.compile(rb"(?=[\x48\x49][\xb8-\xbf](.{8}))", re.DOTALL)
# Code read for such offsets at most (cuFFT: 5 MB); past this the code is not read
# (the same in file and stream mode: it depends on the section table only).
CODE_SCAN_MAX = 64 << 20

# (offset) -> True when a fatbin container magic is there
MagicProbe = Callable[[int], bool]


def fatbin_section(elf: ElfFile) -> Section | None:
    for name in (FATBIN_SECTION, RELOCATABLE_FATBIN_SECTION):
        section = elf.section(name)
        if section is not None and section.size and section.has_file_data:
            return section
    return None


def located_entries(
    elf: ElfFile, read: Reader, size: int, has_magic: MagicProbe | None = None
) -> list[RawEntry]:
    """The entries of every container the runtime can register, in file order."""
    probe = has_magic or (lambda offset: read(offset, 4) == FATBIN_MAGIC_BYTES)
    found: dict[int, list[RawEntry]] = {}  # container offset -> its entries
    section = fatbin_section(elf)
    if section is not None:
        if section.end > size:
            raise FatbinError(f"section {section.name} runs past the end of the file")
        walk_run(read, section.offset, section.end, found, strict=True)
    if elf.section(WRAPPER_SECTION) is not None:
        anchors = _wrapper_targets(elf, read)
    elif section is not None and section.name == FATBIN_SECTION:
        anchors = _pointer_targets(elf, read, probe)
    else:
        anchors = []
    for offset, host in sorted(anchors):
        if host.name == RELOCATABLE_FATBIN_SECTION and section is not None and host is not section:
            continue  # -rdc inputs already device-linked into .nv_fatbin (not loadable on their own)
        if offset not in found:
            walk_run(read, offset, host.end, found, strict=False)
    return [entry for offset in sorted(found) for entry in found[offset]]


def _wrapper_targets(elf: ElfFile, read: Reader) -> list[tuple[int, Section]]:
    """(file offset, section) of the container each `.nvFatBinSegment` wrapper points to."""
    segment = elf.section(WRAPPER_SECTION)
    assert segment is not None
    if not segment.has_file_data or elf.file_offset(segment.addr) is None:
        return []  # an object file: wrappers are resolved only when linked
    word = struct.Struct(elf.word)
    endian = elf.word[0]
    wrapper_size = 8 + 2 * word.size
    count = min(segment.size // wrapper_size, _MAX_WRAPPERS)
    data = read_exact(read, segment.offset, count * wrapper_size, f"{WRAPPER_SECTION} section")
    relocations: dict[int, int] | None = None
    targets = []
    for index in range(count):
        at = index * wrapper_size
        magic = struct.unpack_from(endian + "I", data, at)[0]
        if magic != WRAPPER_MAGIC:
            if not any(data[at : at + wrapper_size]):
                continue  # zero padding after the last wrapper
            raise FatbinError(f"no fatbin wrapper magic at {segment.offset + at:#x}")
        pointer = word.unpack_from(data, at + 8)[0]
        if not pointer:
            if relocations is None:
                relocations = relative_relocations(elf, read)
            pointer = relocations.get(segment.addr + at + 8, 0)
        target = elf.file_offset(pointer)
        if target is None:
            raise FatbinError(
                f"fatbin wrapper at {segment.offset + at:#x} points outside the file ({pointer:#x})"
            )
        targets.append((target[1], target[0]))
    return targets


def _pointer_targets(elf: ElfFile, read: Reader, has_magic: MagicProbe) -> list[tuple[int, Section]]:
    """Containers whose address RELATIVE relocations or GOT-relative code give, outside
    code and `.nv_fatbin`."""
    addresses = set(relative_relocations(elf, read).values()) | _got_relative_addresses(elf, read)
    targets = []
    for address in sorted(addresses):
        if address % 8:
            continue  # containers are 8-byte aligned
        located = elf.file_offset(address)
        if located is None:
            continue
        section, offset = located
        if section.flags & SHF_EXECINSTR or section.name == FATBIN_SECTION:
            continue
        if has_magic(offset):
            targets.append((offset, section))
    return targets


def _got_relative_addresses(elf: ElfFile, read: Reader) -> set[int]:
    """x86-64: GOT + every 64-bit immediate in the code (most are not addresses at all;
    the caller keeps those that land on a container)."""
    code = [section for section in elf.sections if section.flags & SHF_EXECINSTR and section.has_file_data]
    # _GLOBAL_OFFSET_TABLE_, the base of GOTOFF64, is the start of .got.plt (of .got without one).
    got = elf.section(".got.plt") or elf.section(".got")
    if elf.machine != EM_X86_64 or not code or got is None:
        return set()
    start, end = min(section.offset for section in code), max(section.end for section in code)
    if end - start > CODE_SCAN_MAX:
        return set()
    data = read(start, end - start)
    word = struct.Struct("<q")
    return {got.addr + word.unpack(match.group(1))[0] for match in _MOVABS.finditer(data)}
