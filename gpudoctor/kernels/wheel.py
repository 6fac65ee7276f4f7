"""Zip archives (wheels): members read straight from the file, inflated in
parallel, only those that can hold device code.

The central directory comes from `zipfile`; member data is read with pread
from one descriptor (safe across threads) and inflated with ISA-L
(python-isal), which is about twice as fast as zlib on CUDA wheels
(bench/bench_kernels.py prints both); inflation releases the GIL, so members
inflate in parallel. Each member's CRC-32 and size are checked at its end:
a damaged member is an error for that member, never silently short.
"""

from __future__ import annotations

import os
import stat
import struct
import zipfile
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from isal import isal_zlib

from gpudoctor.kernels.stream import CHUNK, HEAD_KEEP

# Bounds on what one archive (wheel, tar, layer) may cost: a zip's declared
# sizes are checked before any inflation and no member may inflate past its
# declared size; tar streams count as they go. The largest real CUDA image
# layers hold under 100,000 files; Python's tarfile reads ~20,000 headers/s.
MAX_MEMBERS = 250_000
MAX_INFLATED = 64 << 30
_LOCAL_HEADER = struct.Struct("<IHHHHHIIIHH")
_LOCAL_MAGIC = 0x04034B50
_DEFLATED = 8
_STORED = 0
Item = TypeVar("Item")
Result = TypeVar("Result")
INFLATE_ERRORS = (zlib.error, isal_zlib.error, zipfile.BadZipFile, EOFError)


class MemberError(ValueError):
    """A member whose data is damaged, or stored in a way this reader does not inflate."""


def members(archive: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise MemberError(f"{len(infos)} members, more than the {MAX_MEMBERS} allowed")
    regular = [info for info in infos if not info.is_dir() and not stat.S_ISLNK(info.external_attr >> 16)]
    if sum(info.file_size for info in regular) > MAX_INFLATED:
        raise MemberError(f"members would inflate to more than {MAX_INFLATED >> 30} GiB")
    return regular


class MemberStream:
    """The inflated bytes of one member, read front to back."""

    def __init__(self, descriptor: int, info: zipfile.ZipInfo) -> None:
        if info.flag_bits & 0x1:
            raise MemberError("encrypted member")
        if info.compress_type not in (_DEFLATED, _STORED):
            raise MemberError(f"compression method {info.compress_type} is not supported")
        header = os.pread(descriptor, _LOCAL_HEADER.size, info.header_offset)
        if len(header) != _LOCAL_HEADER.size or _LOCAL_HEADER.unpack(header)[0] != _LOCAL_MAGIC:
            raise MemberError(f"bad local header at {info.header_offset:#x}")
        name_length, extra_length = _LOCAL_HEADER.unpack(header)[-2:]
        self._fd = descriptor
        self._at = info.header_offset + _LOCAL_HEADER.size + name_length + extra_length
        self._left = info.compress_size  # compressed bytes not yet read
        self._expected = info.file_size
        self._crc_expected = info.CRC
        self._crc = 0
        self._produced = 0
        self._inflate = isal_zlib.decompressobj(-15) if info.compress_type == _DEFLATED else None
        self._pending = b""  # compressed input not yet inflated
        self._read_size = 1 << 12  # small first: most members are only sniffed

    def read(self, size: int = -1) -> bytes:
        size = CHUNK if size < 0 else size
        out = b""
        while not out and size and self._produced < self._expected:
            out = self._next(size)
        if len(out) + self._produced > self._expected:
            raise MemberError("member inflates past its declared size")
        self._produced += len(out)
        self._crc = isal_zlib.crc32(out, self._crc)
        if self._produced == self._expected:
            self._finish()
        return out

    def _next(self, size: int) -> bytes:
        if not self._pending and self._left:
            self._pending = os.pread(self._fd, min(self._left, self._read_size), self._at)
            self._read_size = CHUNK
            if not self._pending:
                raise MemberError("member data cut short")
            self._at += len(self._pending)
            self._left -= len(self._pending)
        if self._inflate is None:
            out, self._pending = self._pending[:size], self._pending[size:]
            return out
        source = self._inflate.unconsumed_tail
        if not source:
            source, self._pending = self._pending, b""
        out = self._inflate.decompress(source, size)
        if not out and not source and not self._left:
            raise MemberError("member data cut short")
        return out

    def read_all(self, limit: int) -> bytes:
        """Up to `limit` bytes from the start (metadata files)."""
        parts, total = [], 0
        while total < limit:
            part = self.read(limit - total)
            if not part:
                break
            parts.append(part)
            total += len(part)
        return b"".join(parts)

    def _finish(self) -> None:
        if self._crc != self._crc_expected:
            raise MemberError("CRC-32 mismatch: member damaged")


class MemberOpener:
    """Opens members of the zip at `path` over one shared descriptor."""

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_RDONLY)

    def __call__(self, info: zipfile.ZipInfo) -> MemberStream:
        return MemberStream(self._fd, info)

    def head(self, info: zipfile.ZipInfo, size: int = 64) -> bytes:
        """The first `size` bytes of a member, from one small read: deciding
        which of a wheel's ten thousand members to inflate costs microseconds each."""
        span = _LOCAL_HEADER.size + len(info.filename.encode()) + 1024 + 2 * size
        raw = os.pread(self._fd, span, info.header_offset)
        if len(raw) < _LOCAL_HEADER.size or _LOCAL_HEADER.unpack_from(raw)[0] != _LOCAL_MAGIC:
            raise MemberError(f"bad local header at {info.header_offset:#x}")
        name_length, extra_length = _LOCAL_HEADER.unpack_from(raw)[-2:]
        data = raw[_LOCAL_HEADER.size + name_length + extra_length :][: info.compress_size]
        if info.compress_type == _STORED:
            return data[:size]
        if info.compress_type != _DEFLATED or info.flag_bits & 0x1:
            return self(info).read_all(size)  # raises the reason
        head = isal_zlib.decompressobj(-15).decompress(data, size)
        return head if len(head) >= min(size, info.file_size) else self(info).read_all(size)

    def __enter__(self) -> MemberOpener:
        return self

    def __exit__(self, *_exc: object) -> None:
        os.close(self._fd)


# What one member being scanned may hold in memory at once (stream.py's kept head,
# writable segments and headers, a few chunks in flight), and the most all members
# in flight together may hold: small members scan many at a time, large ones two
# or three, whatever the number of CPUs.
MEMBER_COST_MAX = HEAD_KEEP + 16 * CHUNK
IN_FLIGHT_BUDGET = 64 << 20


def member_cost(info: zipfile.ZipInfo) -> int:
    return min(info.file_size, MEMBER_COST_MAX) + 2 * CHUNK


def parallel(
    work: Callable[[Item], Result],
    items: list[Item],
    cost: Callable[[Item], int],
    budget: int = IN_FLIGHT_BUDGET,
) -> Iterator[Result]:
    """work(item) for each item (a member to scan), several at once; results in order.

    An item starts while its cost (member_cost) fits in `budget` beside those in
    flight (one at least), and at most two per worker wait: memory stays bounded on
    any machine and any wheel, where submitting every member at once would not."""
    workers = max(1, min(8, len(os.sched_getaffinity(0))))
    if workers == 1 or len(items) < 2:
        yield from map(work, items)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        waiting: deque[tuple[Future[Result], int]] = deque()
        in_flight = 0
        for item in items:
            needed = cost(item)
            while waiting and (in_flight + needed > budget or len(waiting) >= 2 * workers):
                future, done = waiting.popleft()
                in_flight -= done
                yield future.result()
            waiting.append((pool.submit(work, item), needed))
            in_flight += needed
        while waiting:
            yield waiting.popleft()[0].result()
