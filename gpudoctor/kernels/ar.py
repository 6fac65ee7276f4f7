"""Unix `ar` archives (static libraries, `.a`): the members, never extracted.

Format: "!<arch>\\n", then per member a 60-byte header (name[16], mtime[12],
uid[6], gid[6], mode[8], size[10], "`\\n") and the data, padded to an even
offset (System V / GNU ar, https://man7.org/linux/man-pages/man5/ar.5.html).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from gpudoctor.kernels.elf import Reader

AR_MAGIC = b"!<arch>\n"
_HEADER = 60
# Real static libraries hold thousands of objects (libcupti_static.a: ~2,000).
MAX_MEMBERS = 1 << 17


class ArError(ValueError):
    """A member header that is malformed or points past the end of the archive."""


def _parse_header(header: bytes, at: int) -> tuple[str, int]:
    if len(header) < _HEADER or header[58:60] != b"`\n":
        raise ArError(f"ar member header at {at:#x} is malformed or truncated")
    field = header[48:58].strip(b" ")
    # Decimal digits only: int() would also take "-60" (a walk that steps
    # backwards forever), "+6" or "1_0".
    if not field.isdigit():
        raise ArError(f"ar member header at {at:#x} has a bad size {field[:10]!r}")
    length = int(field)
    return header[:16].decode("latin-1").rstrip(), length


def _count(seen: int) -> int:
    if seen >= MAX_MEMBERS:
        raise ArError(f"more than {MAX_MEMBERS} ar members")
    return seen + 1


def members(read: Reader, size: int) -> Iterator[tuple[str, int, int]]:
    """(name, data offset, length) for each member."""
    offset = len(AR_MAGIC)
    count = 0
    while offset < size:
        count = _count(count)
        name, length = _parse_header(read(offset, _HEADER), offset)
        data = offset + _HEADER
        if data + length > size:
            raise ArError(f"ar member {name!r} runs past the end of the archive")
        yield name, data, length
        offset = data + length + (length & 1)


def stream_members(stream: BinaryIO) -> Iterator[tuple[str, BinaryIO]]:
    """Members of an archive whose magic was already read from `stream`, in order."""
    count = 0
    offset = len(AR_MAGIC)
    while True:
        header = stream.read(_HEADER)
        if not header:
            return
        count = _count(count)
        name, length = _parse_header(header, offset)
        member = _Bounded(stream, length, name)
        yield name, member  # type: ignore[misc]
        member.skip_rest()
        if length & 1:
            stream.read(1)
        offset += _HEADER + length + (length & 1)


class _Bounded:
    """At most `length` bytes of `stream`; the rest is skipped by the caller."""

    def __init__(self, stream: BinaryIO, length: int, name: str) -> None:
        self._stream = stream
        self._left = length
        self._name = name

    def read(self, size: int = -1) -> bytes:
        size = self._left if size < 0 else min(size, self._left)
        data = self._stream.read(size) if size else b""
        self._left -= len(data)
        if size and not data:
            raise ArError(f"ar member {self._name!r} runs past the end of the archive")
        return data

    def skip_rest(self) -> None:
        while self._left:
            self.read(1 << 20)
