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
  3. in a library with `.nv_fatbin` but no wrappers (cuFFT: its registration
     code builds them at run time, its 24,454 containers sit in `.ldata`),
     the containers that RELATIVE relocations point to (GOT entries and data
     pointers the code loads), and the runs that follow them.
A wrapper or pointer that leads to something other than a sound container
is an error: the library's verdict becomes unknown. No magic scan of the
whole file: bytes that merely look like a fatbin are never read as one.
What this does not see: containers that code reaches only by PC-relative
arithmetic with no relocation (cuFFT has 37 such out of 24,454).
"""

from __future__ import annotations

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
    """Containers that RELATIVE relocations point to, outside code and `.nv_fatbin`."""
    targets = []
    for address in sorted(set(relative_relocations(elf, read).values())):
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
