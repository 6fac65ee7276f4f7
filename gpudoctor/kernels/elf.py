"""ELF section walking over a memory map, with every offset checked.

Only what the fatbin scanner needs: the section table (name, type, flags,
file offset, size, address) and the RELATIVE dynamic relocations. ELF32/ELF64, little- and big-endian. Malformed files raise
ElfError with a one-line reason; nothing is read past the end of the buffer.
Layout: System V ABI / ELF specification (https://refspecs.linuxfoundation.org/elf/gabi4+/ch4.sheader.html).
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Callable
from dataclasses import dataclass

Buffer = bytes | bytearray | memoryview | mmap.mmap
Reader = Callable[[int, int], bytes]  # (offset, length) -> up to length bytes, short at the end

ELF_MAGIC = b"\x7fELF"
# Section names longer than this are not ones we look for; bounding the read
# keeps a string table without terminators from costing a full scan.
_MAX_NAME = 256
# Real toolchains emit well under a hundred sections and a few KiB of names;
# these caps keep hostile headers from costing memory.
_MAX_SECTIONS = 1 << 16
_MAX_NAME_TABLE = 16 << 20


_PT_LOAD = 1
_PF_W = 2
SHT_RELA = 4
SHT_NOBITS = 8
SHT_REL = 9
SHF_ALLOC = 0x2
SHF_EXECINSTR = 0x4
ET_REL = 1
# R_<machine>_RELATIVE: "base address + addend" relocations, the ones a shared
# library's pointers to its own data get (x86-64, AArch64, PPC64 psABIs:
# R_X86_64_RELATIVE 8, R_AARCH64_RELATIVE 1027, R_PPC64_RELATIVE 22).
RELATIVE_TYPES = {62: 8, 183: 1027, 21: 22}
_MAX_RELOCATIONS = 64 << 20  # bytes of relocation records read at most


class ElfError(ValueError):
    """The file is not an ELF file, or its headers point outside it."""


@dataclass(frozen=True)
class Section:
    name: str
    type: int
    addr: int
    offset: int
    size: int
    flags: int = 0

    @property
    def end(self) -> int:
        return self.offset + self.size

    @property
    def has_file_data(self) -> bool:
        # SHT_NOBITS (like .bss) occupies no file bytes: its offset points at
        # whatever follows, which must never be read as the section.
        return self.type != SHT_NOBITS


@dataclass(frozen=True)
class ElfFile:
    is64: bool
    little_endian: bool
    sections: tuple[Section, ...]
    machine: int = 0  # e_machine: 190 (EM_CUDA) for a bare cubin
    kind: int = 0  # e_type: 1 relocatable object, 2 executable, 3 shared object
    flags: int = 0  # e_flags
    abi_version: int = 0  # e_ident[EI_ABIVERSION]

    def section(self, name: str) -> Section | None:
        for section in self.sections:
            if section.name == name:
                return section
        return None

    def file_offset(self, address: int) -> tuple[Section, int] | None:
        """The loaded section holding virtual `address`, and the address's file offset."""
        if self.kind == ET_REL:
            return None  # sections of an object file are not placed yet
        for section in self.sections:
            if (
                section.flags & SHF_ALLOC
                and section.has_file_data
                and section.size
                and section.addr <= address < section.addr + section.size
            ):
                return section, section.offset + address - section.addr
        return None

    @property
    def word(self) -> str:
        return ("<" if self.little_endian else ">") + ("Q" if self.is64 else "I")


def relative_relocations(elf: ElfFile, read: Reader) -> dict[int, int]:
    """{address patched: address stored} for the RELATIVE relocations in the
    loaded relocation sections with explicit addends (SHT_RELA, as x86-64,
    AArch64 and PPC64 use). Addresses are virtual; {} for other machines."""
    wanted = RELATIVE_TYPES.get(elf.machine)
    found: dict[int, int] = {}
    if wanted is None:
        return found
    endian = "<" if elf.little_endian else ">"
    record = struct.Struct(endian + ("QQq" if elf.is64 else "IIi"))
    budget = _MAX_RELOCATIONS
    for section in elf.sections:
        if section.type != SHT_RELA or not section.flags & SHF_ALLOC or not section.has_file_data:
            continue
        length = min(section.size - section.size % record.size, budget)
        budget -= length
        data = read(section.offset, length)
        for where, info, addend in record.iter_unpack(data[: len(data) - len(data) % record.size]):
            kind = info & 0xFFFFFFFF if elf.is64 else info & 0xFF
            if kind == wanted:
                found[where] = addend
    return found


def read_elf(buf: Buffer) -> ElfFile:
    view = memoryview(buf)

    def read(offset: int, length: int) -> bytes:
        if offset < 0 or offset + length > len(view):
            raise ElfError(f"header at offset {offset} runs past the end of the file")
        return bytes(view[offset : offset + length])

    return read_elf_from(read, len(view))


def elf_header_shoff(head: bytes) -> tuple[int, int] | None:
    """(e_shoff, section table size) from the first 64 bytes, or None."""
    try:
        ident = _ident(head)
    except ElfError:
        return None
    is64, endian = ident
    if is64:
        if len(head) < 0x40:
            return None
        shoff = struct.unpack_from(endian + "Q", head, 0x28)[0]
        entsize, num = struct.unpack_from(endian + "HH", head, 0x3A)
    else:
        if len(head) < 0x34:
            return None
        shoff = struct.unpack_from(endian + "I", head, 0x20)[0]
        entsize, num = struct.unpack_from(endian + "HH", head, 0x2E)
    return shoff, entsize * num


def load_segments(head: bytes) -> list[tuple[int, int, bool]]:
    """(file offset, size, writable) of the PT_LOAD segments whose program headers
    lie within `head`. Writable ones hold the fatbin wrappers and pointers; what lies
    past the last one is not loaded (symbol and section name tables)."""
    try:
        is64, endian = _ident(head)
    except ElfError:
        return []
    if is64:
        if len(head) < 0x40:
            return []
        phoff = struct.unpack_from(endian + "Q", head, 0x20)[0]
        entsize, count = struct.unpack_from(endian + "HH", head, 0x36)
        fmt = endian + "IIQQQQ"  # p_type, p_flags, p_offset, p_vaddr, p_paddr, p_filesz
    else:
        if len(head) < 0x34:
            return []
        phoff = struct.unpack_from(endian + "I", head, 0x1C)[0]
        entsize, count = struct.unpack_from(endian + "HH", head, 0x2A)
        fmt = endian + "IIIIII"  # p_type, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz
    found = []
    for index in range(min(count, 256)):
        at = phoff + index * entsize
        if entsize < struct.calcsize(fmt) or at + struct.calcsize(fmt) > len(head):
            break
        fields = struct.unpack_from(fmt, head, at)
        if is64:
            kind, flags, offset, size = fields[0], fields[1], fields[2], fields[5]
        else:
            kind, offset, size = fields[0], fields[1], fields[4]
            flags = struct.unpack_from(endian + "I", head, at + 24)[0] if at + 28 <= len(head) else 0
        if kind == _PT_LOAD:
            found.append((offset, size, bool(flags & _PF_W)))
    return found


def _ident(head: bytes) -> tuple[bool, str]:
    if len(head) < 16 or head[:4] != ELF_MAGIC:
        raise ElfError("not an ELF file")
    ei_class, ei_data = head[4], head[5]
    if ei_class not in (1, 2):
        raise ElfError(f"bad ELF class {ei_class}")
    if ei_data not in (1, 2):
        raise ElfError(f"bad ELF data encoding {ei_data}")
    return ei_class == 2, "<" if ei_data == 1 else ">"


def read_elf_from(read: Reader, size: int) -> ElfFile:
    """Parse the section table through `read`, which may serve only the parts
    of the file a streaming scanner kept (header, section table, name table)."""
    ident = read(0, 16) if size >= 16 else b""
    is64, endian = _ident(ident)
    kind, machine = _unpack(read, endian + "HH", 0x10)
    flags = _unpack(read, endian + "I", 0x30 if is64 else 0x24)[0]
    identity = {"machine": machine, "kind": kind, "flags": flags, "abi_version": ident[8]}
    if is64:
        header = _unpack(read, endian + "Q", 0x28)[0], *_unpack(read, endian + "HHH", 0x3A)
        entry_format, min_entsize = endian + "IIQQQQI", 64
    else:
        header = _unpack(read, endian + "I", 0x20)[0], *_unpack(read, endian + "HHH", 0x2E)
        entry_format, min_entsize = endian + "IIIIIII", 40
    shoff, shentsize, shnum, shstrndx = header
    if shoff == 0:
        return ElfFile(is64, endian == "<", (), **identity)
    if shentsize < min_entsize:
        raise ElfError(f"section header size {shentsize} too small")
    first = _unpack(read, entry_format, shoff)
    if shnum == 0:
        shnum = _field(first, "size")  # extended numbering: count in section 0's sh_size
    if shstrndx == 0xFFFF:
        shstrndx = _field(first, "link")
    if shoff + shnum * shentsize > size:
        raise ElfError(f"section table ({shnum} entries) runs past the end of the file")
    if shnum > _MAX_SECTIONS:
        raise ElfError(f"implausible section count {shnum}")
    raw = [_unpack(read, entry_format, shoff + index * shentsize) for index in range(shnum)]
    if shstrndx >= len(raw):
        raise ElfError(f"section name table index {shstrndx} out of range")
    strtab = raw[shstrndx]
    str_offset, str_size = _field(strtab, "offset"), _field(strtab, "size")
    if str_offset + str_size > size:
        raise ElfError("section name table runs past the end of the file")
    if str_size > _MAX_NAME_TABLE:
        raise ElfError(f"implausible section name table size {str_size}")
    names = read(str_offset, str_size) if str_size else b""
    sections = tuple(
        Section(
            name=_name(names, entry[0]),
            type=entry[1],
            flags=entry[2],
            addr=_field(entry, "addr"),
            offset=_field(entry, "offset"),
            size=_field(entry, "size"),
        )
        for entry in raw
    )
    return ElfFile(is64, endian == "<", sections, **identity)


# Positions of sh_addr/offset/size/link in the unpacked tuple. The 32-bit
# and 64-bit layouts share this order; only the widths differ.
_FIELDS = {"addr": 3, "offset": 4, "size": 5, "link": 6}


def _field(entry: tuple[int, ...], name: str) -> int:
    return entry[_FIELDS[name]]


def _unpack(read: Reader, fmt: str, offset: int) -> tuple[int, ...]:
    return struct.unpack(fmt, read(offset, struct.calcsize(fmt)))


def _name(names: bytes, index: int) -> str:
    if index >= len(names):
        return ""
    return names[index : index + _MAX_NAME].split(b"\0", 1)[0].decode("latin-1")
