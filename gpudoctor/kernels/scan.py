"""One file -> BinaryFacts: its fatbin entries, from a path (mmap) or a stream.

Path mode reads (pread) only the headers the locator asks for (section
table, relocations, wrappers, fatbin headers: gpudoctor/kernels/locate.py).
Stream mode (wheel/tar/OCI members, which are never written to disk) reads the
member once, front to back, keeping those same bytes (stream.py), then runs
the same locator over them: same results, same error texts, bounded memory.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable
from typing import BinaryIO

from gpudoctor.facts import BinaryFacts, FatbinEntry
from gpudoctor.kernels.ar import AR_MAGIC, ArError
from gpudoctor.kernels.ar import members as ar_members
from gpudoctor.kernels.ar import stream_members as ar_members_of_stream
from gpudoctor.kernels.cubin import cubin_entry
from gpudoctor.kernels.elf import ELF_MAGIC, ElfError, elf_header_shoff, load_segments, read_elf_from
from gpudoctor.kernels.fatbin import (
    EM_CUDA,
    FATBIN_MAGIC_BYTES,
    KIND_CUBIN,
    FatbinError,
    RawEntry,
    Reader,
    parse_containers_from,
)
from gpudoctor.kernels.locate import MagicProbe, located_entries
from gpudoctor.kernels.ptx import toolkit_for_isa
from gpudoctor.kernels.stream import (
    HEAD_KEEP,
    KEEP_BEFORE_TABLE,
    KEEP_MAX,
    SEGMENT_KEEP,
    NotKept,
    StreamScan,
)

MAGICS = (ELF_MAGIC, FATBIN_MAGIC_BYTES, AR_MAGIC[:4])
MAX_BARE_CUBIN = 64 << 20
# Streaming passes over one member: the first keeps the usual windows, a
# second (when the member can be read again) keeps what the first missed.
MAX_PASSES = 2
_PROGRAM_HEADERS = 4096  # bytes read first: program headers follow the ELF header

# () -> a fresh stream over the same member, from its first byte
Reopen = Callable[[], "BinaryIO"]


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


def scan_stream(
    stream: BinaryIO, display_path: str, head: bytes = b"", reopen: Reopen | None = None
) -> BinaryFacts | None:
    """Facts for a member read once from `stream`; `head` holds bytes already read.

    `reopen`, where the member can be read again (a zip member), lets a
    second pass fetch bytes the first did not keep (an unusual layout);
    without it such a member is an error, never a guess.
    """
    try:
        first = head + stream.read(max(0, 64 - len(head)))
        if not is_candidate(first):
            return None
        extra: dict[int, list[tuple[int, int]]] = {}  # ar member index (-1: none) -> ranges
        for attempt in range(MAX_PASSES):
            if attempt:
                stream = reopen()  # type: ignore[misc]
                first = stream.read(64)
            try:
                return facts_from_entries(display_path, _stream_entries(stream, first, extra))
            except NotKept as missing:
                if reopen is None or attempt + 1 == MAX_PASSES:
                    raise ElfError(f"{missing} (an unusual layout; scan the extracted file)") from None
                ranges = extra.setdefault(getattr(missing, "member", -1), [])
                ranges.append((missing.offset, missing.offset + missing.length))
    except (ElfError, FatbinError, ArError) as exc:
        return BinaryFacts(path=display_path, error=str(exc))
    except (OSError, EOFError, ValueError) as exc:
        return BinaryFacts(path=display_path, error=f"cannot read: {exc}")
    return None


def _stream_entries(
    stream: BinaryIO, first: bytes, extra: dict[int, list[tuple[int, int]]]
) -> list[RawEntry]:
    if first[:8] != AR_MAGIC:
        return _stream_object(stream, first, extra.get(-1, []))
    rest = _Prefixed(first[8:], stream)
    entries: list[RawEntry] = []
    for index, (_name, member) in enumerate(ar_members_of_stream(rest)):  # type: ignore[arg-type]
        member_head = member.read(64)
        if member_head[:4] in (ELF_MAGIC, FATBIN_MAGIC_BYTES):
            try:
                entries.extend(_stream_object(member, member_head, extra.get(index, [])))
            except NotKept as missing:
                missing.member = index  # type: ignore[attr-defined]
                raise
    return entries


def _stream_object(stream: BinaryIO, first: bytes, extra: list[tuple[int, int]]) -> list[RawEntry]:
    """One ELF file or bare fatbin, streamed."""
    if first[:4] not in (ELF_MAGIC, FATBIN_MAGIC_BYTES):
        raise ElfError("not an ELF file")  # as read_elf says in file mode
    if first[:4] == ELF_MAGIC and _is_bare_cubin(first):
        data = first + stream.read(MAX_BARE_CUBIN)
        if len(data) > MAX_BARE_CUBIN:
            raise ElfError(f"a bare cubin over {MAX_BARE_CUBIN >> 20} MiB is not plausible")
        return _entries_from_buffer(data, len(data))
    windows = list(extra)
    names_from = 0
    if first[:4] == ELF_MAGIC:
        first += stream.read(_PROGRAM_HEADERS - len(first))
        windows.append((0, HEAD_KEEP))
        segments = load_segments(first)
        windows += [(at, at + size) for at, size, writable in segments if writable and size <= SEGMENT_KEEP]
        # The host's section names lie past what is loaded; cubins inside fatbins have their own.
        names_from = max((at + size for at, size, _ in segments), default=0)
        table = elf_header_shoff(first)
        if table is not None:
            shoff, table_size = table
            windows.append((max(0, shoff - KEEP_BEFORE_TABLE), min(shoff + table_size, shoff + KEEP_MAX)))
    scan = StreamScan(stream, first, windows, names_from if first[:4] == ELF_MAGIC else None)
    reader = scan.run()
    return _entries_from_reader(reader, reader.size, has_magic=scan.magics.__contains__)


def _is_bare_cubin(head: bytes) -> bool:
    if len(head) < 0x14:
        return False
    return int.from_bytes(head[0x12:0x14], "little" if head[5] == 1 else "big") == EM_CUDA


def _entries_from_buffer(buf: bytes | mmap.mmap, size: int) -> list[RawEntry]:
    view = memoryview(buf)
    return _entries_from_reader(lambda offset, length: bytes(view[offset : offset + length]), size)


def _entries_from_reader(
    read: Reader, size: int, nested: bool = False, has_magic: MagicProbe | None = None
) -> list[RawEntry]:
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
    return located_entries(elf, read, size, has_magic)


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
