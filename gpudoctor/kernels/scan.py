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
from gpudoctor.kernels.elf import ELF_MAGIC, ElfError, elf_header_shoff, read_elf_from
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
MAGICS = (ELF_MAGIC, FATBIN_MAGIC_BYTES)


def is_candidate(head: bytes) -> bool:
    """True for an ELF file or a bare fatbin: the only things that hold kernels."""
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
    except (ElfError, FatbinError) as exc:
        return BinaryFacts(path=shown, error=str(exc))
    except (OSError, ValueError, OverflowError) as exc:
        return BinaryFacts(path=shown, error=f"cannot read: {exc}")
    return facts_from_entries(shown, entries)


def scan_buffer(buf: bytes | mmap.mmap, display_path: str) -> BinaryFacts | None:
    if not is_candidate(bytes(buf[:4])):
        return None
    try:
        entries = _entries_from_buffer(buf, len(buf))
    except (ElfError, FatbinError) as exc:
        return BinaryFacts(path=display_path, error=str(exc))
    return facts_from_entries(display_path, entries)


def scan_stream(stream: BinaryIO, display_path: str, head: bytes = b"") -> BinaryFacts | None:
    """Facts for a member read once from `stream`; `head` holds bytes already read."""
    try:
        first = head + stream.read(max(0, 64 - len(head)))
        if not is_candidate(first):
            return None
        keep = elf_header_shoff(first) if first[:4] == ELF_MAGIC else None
        scan = StreamScan(stream, first, keep_from=keep[0] if keep else None)
        scan.run()
        if first[:4] != ELF_MAGIC:
            return facts_from_entries(display_path, scan.entries)
        if not scan.entries:
            return facts_from_entries(display_path, [])
        try:
            section = read_elf_from(scan.read_kept, scan.size).section(FATBIN_SECTION)
        except ElfError:
            # The section names lay outside the kept window (unusual layout):
            # every container found is real fatbin data, so report them all.
            return facts_from_entries(display_path, scan.entries)
        if section is None:
            return facts_from_entries(display_path, [])
        inside = [
            e for e, at in zip(scan.entries, scan.container_offsets, strict=True) if _within(section, at)
        ]
        return facts_from_entries(display_path, inside)
    except (ElfError, FatbinError) as exc:
        return BinaryFacts(path=display_path, error=str(exc))
    except (OSError, EOFError, ValueError) as exc:
        return BinaryFacts(path=display_path, error=f"cannot read: {exc}")


def _within(section: object, offset: int) -> bool:
    return section.offset <= offset < section.end  # type: ignore[attr-defined]


def _entries_from_buffer(buf: bytes | mmap.mmap, size: int) -> list[RawEntry]:
    view = memoryview(buf)
    return _entries_from_reader(lambda offset, length: bytes(view[offset : offset + length]), size)


def _entries_from_reader(read: Reader, size: int) -> list[RawEntry]:
    if read(0, 4) == FATBIN_MAGIC_BYTES:
        return parse_containers_from(read, 0, size)

    def read_exact(offset: int, length: int) -> bytes:
        data = read(offset, length)
        if len(data) != length:
            raise ElfError(f"header at offset {offset} runs past the end of the file")
        return data

    elf = read_elf_from(read_exact, size)
    section = elf.section(FATBIN_SECTION)
    if section is None or section.size == 0:
        return []
    if section.end > size:
        raise ElfError(f"section {FATBIN_SECTION} runs past the end of the file")
    return parse_containers_from(read, section.offset, section.end)


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
