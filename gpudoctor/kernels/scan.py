"""One file -> BinaryFacts: its fatbin entries, from a path (mmap) or a stream.

Path mode reads (pread) only the ELF section table and the
`.nv_fatbin` section, as cuobjdump does. Stream mode (tar/OCI members, which
are never written to disk) reads the member once, front to back, keeping only
fatbin headers and the few KiB the section table needs; memory stays bounded
whatever the member's size.
"""

from __future__ import annotations

import mmap
import os
from typing import BinaryIO

from gpudoctor.facts import BinaryFacts, FatbinEntry
from gpudoctor.kernels.ar import AR_MAGIC, ArError
from gpudoctor.kernels.ar import members as ar_members
from gpudoctor.kernels.ar import stream_members as ar_members_of_stream
from gpudoctor.kernels.cubin import EM_CUDA, cubin_entry
from gpudoctor.kernels.elf import ELF_MAGIC, ElfError, ElfFile, Section, elf_header_shoff, read_elf_from
from gpudoctor.kernels.fatbin import (
    FATBIN_MAGIC_BYTES,
    KIND_CUBIN,
    FatbinError,
    RawEntry,
    Reader,
    parse_containers_from,
)
from gpudoctor.kernels.ptx import toolkit_for_isa
from gpudoctor.kernels.stream import StreamScan

FATBIN_SECTION = ".nv_fatbin"
# Relocatable device code (-rdc) objects carry their fatbin here until device
# linking; cuobjdump reads it only when there is no .nv_fatbin, and so do we.
RELOCATABLE_FATBIN_SECTION = "__nv_relfatbin"
MAGICS = (ELF_MAGIC, FATBIN_MAGIC_BYTES, AR_MAGIC[:4])
MAX_BARE_CUBIN = 64 << 20


def is_candidate(head: bytes) -> bool:
    """True for ELF files, bare fatbins and ar archives: the only things that hold kernels."""
    return head[:4] in MAGICS


def scan_path(path: str, display_path: str | None = None) -> BinaryFacts | None:
    """Facts for one file; None when it is neither ELF nor fatbin.

    Headers are read with pread, not through a memory map: a map faults in
    (and counts as resident) whole neighbourhoods of pages around each of the
    thousands of scattered entry headers in a library like libtorch_cuda.so.
    """
    shown = display_path or path
    try:
        with open(path, "rb") as handle:
            descriptor = handle.fileno()
            size = os.fstat(descriptor).st_size

            def read(offset: int, length: int) -> bytes:
                if offset < 0 or offset >= size:
                    return b""
                return os.pread(descriptor, min(length, size - offset), offset)

            if not is_candidate(read(0, 4)):
                return None
            entries = _entries_from_reader(read, size)
    except (ElfError, FatbinError, ArError) as exc:
        return BinaryFacts(path=shown, error=str(exc))
    except (OSError, ValueError, OverflowError) as exc:
        return BinaryFacts(path=shown, error=f"cannot read: {exc}")
    return facts_from_entries(shown, entries)


def scan_buffer(buf: bytes | mmap.mmap, display_path: str) -> BinaryFacts | None:
    if not is_candidate(bytes(buf[:4])):
        return None
    try:
        entries = _entries_from_buffer(buf, len(buf))
    except (ElfError, FatbinError, ArError) as exc:
        return BinaryFacts(path=display_path, error=str(exc))
    return facts_from_entries(display_path, entries)


def scan_stream(stream: BinaryIO, display_path: str, head: bytes = b"") -> BinaryFacts | None:
    """Facts for a member read once from `stream`; `head` holds bytes already read."""
    try:
        first = head + stream.read(max(0, 64 - len(head)))
        if not is_candidate(first):
            return None
        return facts_from_entries(display_path, _stream_entries(stream, first, nested=False))
    except (ElfError, FatbinError, ArError) as exc:
        return BinaryFacts(path=display_path, error=str(exc))
    except (OSError, EOFError, ValueError) as exc:
        return BinaryFacts(path=display_path, error=f"cannot read: {exc}")


def _stream_entries(stream: BinaryIO, first: bytes, nested: bool) -> list[RawEntry]:
    if first[:8] == AR_MAGIC and not nested:
        rest = _Prefixed(first[8:], stream)
        entries: list[RawEntry] = []
        for _name, member in ar_members_of_stream(rest):  # type: ignore[arg-type]
            member_head = member.read(64)
            if member_head[:4] in (ELF_MAGIC, FATBIN_MAGIC_BYTES):
                entries.extend(_stream_entries(member, member_head, nested=True))
        return entries
    if first[:4] not in (ELF_MAGIC, FATBIN_MAGIC_BYTES):
        return []
    if first[:4] == ELF_MAGIC and _is_bare_cubin(first):
        data = first + stream.read(MAX_BARE_CUBIN)
        if len(data) > MAX_BARE_CUBIN:
            raise ElfError(f"a bare cubin over {MAX_BARE_CUBIN >> 20} MiB is not plausible")
        return _entries_from_buffer(data, len(data))
    keep = elf_header_shoff(first) if first[:4] == ELF_MAGIC else None
    scan = StreamScan(stream, first, keep_from=keep[0] if keep else None)
    scan.run()
    if first[:4] != ELF_MAGIC or not scan.entries:
        return scan.entries
    try:
        section = _fatbin_section(read_elf_from(scan.read_kept, scan.size))
    except ElfError:
        # The section names lay outside the kept window (unusual layout):
        # every container found is real fatbin data, so report them all.
        return scan.entries
    if section is None:
        return []
    return [e for e, at in zip(scan.entries, scan.container_offsets, strict=True) if _within(section, at)]


def _is_bare_cubin(head: bytes) -> bool:
    if len(head) < 0x14:
        return False
    return int.from_bytes(head[0x12:0x14], "little" if head[5] == 1 else "big") == EM_CUDA


def _fatbin_section(elf: ElfFile) -> Section | None:
    for name in (FATBIN_SECTION, RELOCATABLE_FATBIN_SECTION):
        section = elf.section(name)
        if section is not None and section.size and section.has_file_data:
            return section
    return None


def _within(section: object, offset: int) -> bool:
    return section.offset <= offset < section.end  # type: ignore[attr-defined]


def _entries_from_buffer(buf: bytes | mmap.mmap, size: int) -> list[RawEntry]:
    view = memoryview(buf)
    return _entries_from_reader(lambda offset, length: bytes(view[offset : offset + length]), size)


def _entries_from_reader(read: Reader, size: int, nested: bool = False) -> list[RawEntry]:
    magic = read(0, 8)
    if magic[:4] == FATBIN_MAGIC_BYTES:
        return parse_containers_from(read, 0, size)
    if magic == AR_MAGIC and not nested:
        entries: list[RawEntry] = []
        for _name, offset, length in ar_members(read, size):
            member = _shifted(read, offset, length)
            if member(0, 4) in (ELF_MAGIC, FATBIN_MAGIC_BYTES):
                entries.extend(_entries_from_reader(member, length, nested=True))
        return entries

    def read_exact(offset: int, length: int) -> bytes:
        data = read(offset, length)
        if len(data) != length:
            raise ElfError(f"header at offset {offset} runs past the end of the file")
        return data

    elf = read_elf_from(read_exact, size)
    if elf.machine == EM_CUDA:
        return [cubin_entry(elf, read_exact)]
    section = _fatbin_section(elf)
    if section is None:
        return []
    if section.end > size:
        raise ElfError(f"section {section.name} runs past the end of the file")
    return parse_containers_from(read, section.offset, section.end)


def _shifted(read: Reader, base: int, length: int) -> Reader:
    """A reader over bytes [base, base + length) of `read`, as if they were a file."""

    def member(offset: int, size: int) -> bytes:
        if offset < 0 or offset >= length:
            return b""
        return read(base + offset, min(size, length - offset))

    return member


class _Prefixed:
    """`prefix` then the rest of `stream`: bytes already read, put back."""

    def __init__(self, prefix: bytes, stream: BinaryIO) -> None:
        self._prefix = prefix
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            data, self._prefix = self._prefix + self._stream.read(), b""
            return data
        data, self._prefix = self._prefix[:size], self._prefix[size:]
        if len(data) < size:
            data += self._stream.read(size - len(data))
        return data


def facts_from_entries(path: str, entries: list[RawEntry]) -> BinaryFacts:
    cubins = sorted({e.listed_target for e in entries if e.kind == KIND_CUBIN}, key=target_sort_key)
    ptx = sorted({e.listed_target for e in entries if e.kind != KIND_CUBIN}, key=target_sort_key)
    unique: dict[tuple[str, str, str | None, bool], FatbinEntry] = {}
    for entry in entries:
        kind = "cubin" if entry.kind == KIND_CUBIN else "ptx"
        isa = entry.ptx_isa
        key = (kind, entry.target, isa, entry.compressed)
        if key not in unique:
            unique[key] = FatbinEntry(
                kind=kind,
                target=entry.target,
                ptx_isa=isa,
                toolkit_version=toolkit_for_isa(isa) if isa else None,
                compressed=entry.compressed,
            )
    return BinaryFacts(
        path=path,
        cubins=cubins,
        ptx=ptx,
        compressed=any(e.compressed for e in entries),
        fatbin_entries=list(unique.values()),
    )


def target_sort_key(target: str) -> tuple[int, str]:
    digits = "".join(ch for ch in target[3:] if ch.isdigit())
    return int(digits or 0), target
