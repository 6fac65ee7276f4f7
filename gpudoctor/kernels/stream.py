"""A member read once, front to back, keeping only the bytes the fatbin
locator can ask for, in bounded memory.

Archive members (wheel, tar, image layer) are never written to disk, and
cannot be read twice cheaply, so one pass keeps:
  - the head of the file (ELF header, program headers, the dynamic
    relocations that sit right after the dynamic symbols) and the tail from
    shortly before the section table (section names, section table);
  - at every fatbin container magic met: the container header, each entry
    header (hopping over payloads as they stream past) and the bytes that
    follow the container (padding, the next magic);
  - the writable segments (program headers), where `.nvFatBinSegment`
    wrappers live, when they are not huge.
The locator then runs on a `SparseReader` over those bytes, exactly as it
runs on a file: same checks, same error texts. A read of bytes that were not
kept raises NotKept; the caller can stream the member again keeping them.
"""

from __future__ import annotations

import bisect
from typing import BinaryIO

from gpudoctor.kernels.fatbin import (
    FATBIN_MAGIC_BYTES,
    MAX_PADDING,
    FatbinError,
    container_body,
    walk_entries,
)

# Bytes inflated and scanned at a time. Small on purpose: glibc's malloc raises its mmap
# threshold to the size of each large block freed (up to 32 MiB), after which
# 1 MiB chunks freed by several threads come from per-thread arenas and fragment
# them (the torch wheel scan peaked at 156 MiB RSS with 1 MiB chunks, 67 MiB with
# 256 KiB, at the same speed; bench/bench_kernels.py).
CHUNK = 1 << 18
HEAD_KEEP = 8 << 20
# Around a ".shstrtab" name met while streaming: the table starts a few names
# before it and real tables are a few KiB.
_SHSTRTAB_NAME = b".shstrtab\0"
NAMES_BEHIND = 4 << 10
NAMES_AHEAD = 60 << 10
_MAX_WINDOWS = 16
SEGMENT_KEEP = 16 << 20
# .shstrtab usually precedes the section table; this window before e_shoff holds
# it unless .strtab lies between (then the name search below keeps it).
KEEP_BEFORE_TABLE = 64 << 10
KEEP_MAX = 64 << 20
# A member with more headers than this is not a real library (cuFFT, the
# largest known, has about 100,000).
MAX_PIECES = 4 << 20


class NotKept(ValueError):
    """The locator asked for bytes the streaming pass did not keep."""

    def __init__(self, offset: int, length: int) -> None:
        super().__init__(f"bytes {offset:#x}..{offset + length:#x} were not kept while streaming")
        self.offset, self.length = offset, length


class StreamScan:
    def __init__(
        self, stream: BinaryIO, first: bytes, windows: list[tuple[int, int]], names_from: int | None = None
    ) -> None:
        """`windows`: absolute [start, end) ranges to keep whole; `names_from`: also keep
        what looks like the section name table, met at or after this offset."""
        self._stream = stream
        self._buf = bytearray(first)
        self._base = 0  # absolute offset of _buf[0]
        self._eof = False
        self._windows = sorted(windows)
        self._kept: dict[int, bytearray] = {}  # window start -> bytes kept so far
        self.pieces: dict[int, bytes] = {}  # offset -> header bytes kept
        self.magics: set[int] = set()  # offsets of container magics met
        self.size = 0
        self._names_from = names_from
        self._recent = b""  # the end of the previous chunk, for a look behind
        self._capture(bytes(first), 0)

    def run(self) -> SparseReader:
        while True:
            found = self._find_magic()
            if found is None:
                break
            at = found
            self.magics.add(at)
            try:
                self._walk_container(at)
            except FatbinError:
                self._drop_before(at + 4)  # what it is decides the locator, with these bytes
        self._drain()
        return SparseReader(self._kept, self.pieces, self.size)

    # --- buffer management -------------------------------------------------

    def _fill(self, absolute_end: int) -> bool:
        """Read until the buffer covers absolute_end; False at end of stream."""
        while self._base + len(self._buf) < absolute_end:
            if self._eof:
                return False
            chunk = self._stream.read(CHUNK)
            if not chunk:
                self._eof = True
                return False
            self._capture(chunk, self._base + len(self._buf))
            self._buf += chunk
        return True

    def _drop_before(self, absolute: int) -> None:
        """Forget bytes before `absolute`, reading past them when needed."""
        while self._base + len(self._buf) < absolute:
            self._base += len(self._buf)
            self._buf.clear()
            if not self._fill(min(absolute, self._base + CHUNK)):
                break
        cut = min(max(0, absolute - self._base), len(self._buf))
        del self._buf[:cut]
        self._base += cut

    def _drain(self) -> None:
        while not self._eof:
            self._base += len(self._buf)
            self._buf.clear()
            self._fill(self._base + CHUNK)
        self.size = self._base + len(self._buf)

    def _capture(self, chunk: bytes, at: int) -> None:
        if self._names_from is not None and at + len(chunk) > self._names_from:
            self._keep_section_names(chunk, at)
        end = at + len(chunk)
        for start, stop in self._windows:
            if stop <= at or start >= end:
                continue
            kept = self._kept.setdefault(start, bytearray())
            begin = max(at, start + len(kept))
            kept += chunk[begin - at : min(end, stop) - at]

    def _keep_section_names(self, chunk: bytes, at: int) -> None:
        """.shstrtab names itself: keep a window around each ".shstrtab\0" met (a few at most).

        Linkers that keep .symtab put .shstrtab before .strtab, which can be tens of MB
        long, so the table need not be near the section headers at the end."""
        joined = self._recent + chunk
        base = at - len(self._recent)
        start = max(0, len(self._recent) - len(_SHSTRTAB_NAME) + 1)  # hits wholly in _recent were seen
        while len(self._windows) < _MAX_WINDOWS:
            found = joined.find(_SHSTRTAB_NAME, max(start, self._names_from - base))  # type: ignore[operator]
            if found < 0:
                break
            begin = base + max(0, found - NAMES_BEHIND)
            self._windows.append((begin, base + found + NAMES_AHEAD))
            self._kept[begin] = bytearray(joined[begin - base :])[: NAMES_BEHIND + NAMES_AHEAD]
            start = found + len(_SHSTRTAB_NAME)
        self._recent = chunk[-NAMES_BEHIND:]

    def _keep(self, at: int, length: int) -> bytes:
        """The bytes at [at, at + length) (fewer at the end), kept as a piece."""
        self._fill(at + length)
        data = bytes(self._buf[at - self._base : at - self._base + length])
        if len(data) > len(self.pieces.get(at, b"")):
            if len(self.pieces) >= MAX_PIECES:
                raise FatbinError(f"more than {MAX_PIECES} fatbin headers: not a real library")
            self.pieces[at] = data
        return data

    # --- the walk ----------------------------------------------------------

    def _find_magic(self) -> int | None:
        while True:
            index = self._buf.find(FATBIN_MAGIC_BYTES)
            if index >= 0:
                return self._base + index
            # keep 3 bytes: a magic may straddle two chunks
            self._drop_before(self._base + max(0, len(self._buf) - 3))
            if not self._fill(self._base + len(self._buf) + 1):
                return None

    def _header(self, at: int, length: int, what: str) -> bytes:
        self._drop_before(at)
        data = self._keep(at, length)
        if len(data) != length:
            raise FatbinError(f"{what} at {at:#x} is truncated")
        return data

    def _walk_container(self, at: int) -> None:
        _body, body_end = container_body(self._header, at)
        for _entry in walk_entries(self._header, _body, body_end):
            pass
        self._drop_before(body_end)
        self._keep(body_end, MAX_PADDING + 4)


class SparseReader:
    """Reads served from the kept bytes; short at the end of the member, like a file."""

    def __init__(self, windows: dict[int, bytearray], pieces: dict[int, bytes], size: int) -> None:
        self._windows = windows
        self._pieces = pieces
        self._starts = sorted(pieces)
        self.size = size

    def __call__(self, offset: int, length: int) -> bytes:
        if offset < 0 or offset >= self.size:
            return b""
        length = min(length, self.size - offset)
        for start, data in self._windows.items():
            if start <= offset and offset + length <= start + len(data):
                return bytes(data[offset - start : offset - start + length])
        out = bytearray()
        index = bisect.bisect_right(self._starts, offset) - 1
        while len(out) < length:
            cursor = offset + len(out)
            if index < 0 or index >= len(self._starts):
                raise NotKept(offset, length)
            start = self._starts[index]
            piece = self._pieces[start]
            if not start <= cursor < start + len(piece):
                raise NotKept(offset, length)
            out += piece[cursor - start : cursor - start + length - len(out)]
            index += 1
        return bytes(out)
