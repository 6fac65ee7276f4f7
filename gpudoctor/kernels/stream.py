"""Fatbin headers from a stream read once, front to back, in bounded memory.

The walk is fatbin's own (container_body, walk_entries), fed from a sliding
buffer: search for the container magic, read the container header, then hop
from entry header to entry header, discarding payloads as they stream past. The
ELF section table lies at e_shoff (known from the first 64 bytes), with the
section name table just before it, so that tail is kept for the caller to
check which containers sit inside `.nv_fatbin`.
"""

from __future__ import annotations

from typing import BinaryIO

from gpudoctor.kernels.elf import ElfError
from gpudoctor.kernels.fatbin import FATBIN_MAGIC_BYTES, FatbinError, RawEntry, container_body, walk_entries

CHUNK = 1 << 20
# .shstrtab precedes the section table in GNU ld and lld output; a window of
# this size before e_shoff holds it with ample margin.
KEEP_BEFORE_TABLE = 1 << 20
KEEP_MAX = 8 << 20


class StreamScan:
    def __init__(self, stream: BinaryIO, first: bytes, keep_from: int | None) -> None:
        self._stream = stream
        self._buf = bytearray(first)
        self._base = 0  # absolute offset of _buf[0]
        self._eof = False
        self._head = bytes(first[:64])
        self._keep_start = max(0, keep_from - KEEP_BEFORE_TABLE) if keep_from else None
        self._kept = bytearray()
        self._kept_at = 0
        self._captured_to = 0  # absolute offset up to which bytes went through _capture
        self._capture(bytes(first), 0)
        self.entries: list[RawEntry] = []
        self.container_offsets: list[int] = []
        self.size = 0

    def run(self) -> None:
        while True:
            found = self._find_magic()
            if found is None:
                break
            self._walk_container(found)
        self._drain()

    def read_kept(self, offset: int, length: int) -> bytes:
        if offset + length <= len(self._head):
            return self._head[offset : offset + length]
        start = offset - self._kept_at
        if start < 0 or start + length > len(self._kept):
            raise ElfError(f"bytes {offset}..{offset + length} were not kept while streaming")
        return bytes(self._kept[start : start + length])

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
        if self._keep_start is None:
            return
        end = at + len(chunk)
        if end <= self._keep_start or len(self._kept) >= KEEP_MAX:
            return
        start = max(at, self._keep_start)
        if not self._kept:
            self._kept_at = start
        self._kept += chunk[start - at : start - at + KEEP_MAX - len(self._kept)]

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
        if not self._fill(at + length):
            raise FatbinError(f"{what} at {at:#x} is truncated")
        return bytes(self._buf[at - self._base : at - self._base + length])

    def _walk_container(self, at: int) -> None:
        body, body_end = container_body(self._header, at)
        for entry in walk_entries(self._header, body, body_end):
            self.entries.append(entry)
            self.container_offsets.append(at)
        self._drop_before(body_end)
