"""Hostile inputs to the ELF and fatbin parsers: a per-file error, never a crash or hang."""

from __future__ import annotations

import io
import re
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpudoctor.kernels.fatbin import FATBIN_MAGIC, FatbinError, parse_containers
from gpudoctor.kernels.scan import scan_buffer, scan_stream
from tests.kernels_support import FATBINS

SEED = (FATBINS / "bin" / "multi_cubin_ptx.so").read_bytes()
FATBIN_AT = SEED.find(struct.pack("<I", FATBIN_MAGIC))

fuzz = settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])


def check_both(data: bytes) -> None:
    """No crash or hang, and file and stream modes agree exactly, error texts included."""
    mapped = scan_buffer(data, "x.so")
    streamed = scan_stream(io.BytesIO(data), "x.so", reopen=lambda: io.BytesIO(data))
    for facts in (mapped, streamed):
        assert facts is None or facts.error is None or facts.error.strip()
    assert (mapped is None) == (streamed is None)
    if mapped is not None and streamed is not None:
        assert (mapped.error, mapped.cubins, mapped.ptx) == (streamed.error, streamed.cubins, streamed.ptx)
        for offset in re.findall(r"0x[0-9a-f]+", mapped.error or ""):
            assert int(offset, 16) <= len(data), mapped.error


@fuzz
@given(st.integers(min_value=0, max_value=len(SEED)))
def test_truncated_files(cut: int) -> None:
    check_both(SEED[:cut])


@fuzz
@given(st.lists(st.tuples(st.integers(0, len(SEED) - 8), st.binary(min_size=1, max_size=8)), max_size=8))
def test_corrupted_bytes(patches: list[tuple[int, bytes]]) -> None:
    data = bytearray(SEED)
    for offset, value in patches:
        data[offset : offset + len(value)] = value
    check_both(bytes(data))


@fuzz
@given(st.integers(0, 2**64 - 1), st.integers(0, 2**16 - 1))
def test_fatbin_sizes_past_the_end_or_zero(body_size: int, header_size: int) -> None:
    data = bytearray(SEED)
    struct.pack_into("<HQ", data, FATBIN_AT + 6, header_size, body_size)
    check_both(bytes(data))


@fuzz
@given(st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1))
def test_entry_sizes_zero_or_looping(entry_header: int, payload: int) -> None:
    data = bytearray(SEED)
    struct.pack_into("<IQ", data, FATBIN_AT + 16 + 4, entry_header, payload)
    check_both(bytes(data))


@fuzz
@given(st.integers(0, 2**16 - 1), st.integers(0, 2**64 - 1), st.integers(0, 2**16 - 1))
def test_elf_section_table_huge_counts(shnum: int, shoff: int, shstrndx: int) -> None:
    data = bytearray(SEED)
    struct.pack_into("<Q", data, 0x28, shoff)
    struct.pack_into("<HH", data, 0x3C, shnum, shstrndx)
    check_both(bytes(data))


@fuzz
@given(st.binary(max_size=4096))
def test_random_bytes_after_elf_magic(tail: bytes) -> None:
    check_both(b"\x7fELF" + tail)


def test_non_elf_named_so_is_skipped_by_the_parser() -> None:
    assert scan_buffer(b"this is text, not ELF", "libfoo.so") is None


def test_zero_header_entry_raises_instead_of_looping() -> None:
    container = (
        struct.pack("<IHHQ", FATBIN_MAGIC, 1, 16, 64) + struct.pack("<HHIQ", 2, 0x101, 0, 0) + bytes(48)
    )
    try:
        parse_containers(container)
    except FatbinError as exc:
        assert "header size 0" in str(exc)
    else:
        raise AssertionError("a zero-size entry header must be rejected")


class _LazyStream:
    """`size` bytes: `head`, then zeros produced on demand (nothing held in memory)."""

    def __init__(self, head: bytes, size: int) -> None:
        self._head, self._size, self._pos = head, size, 0

    def read(self, n: int = -1) -> bytes:
        n = self._size - self._pos if n < 0 else min(n, self._size - self._pos)
        start, self._pos = self._pos, self._pos + n
        prefix = self._head[start : start + n]
        return prefix + bytes(n - len(prefix))


def test_streamed_member_memory_is_bounded() -> None:
    import tracemalloc

    size = 256 << 20
    body = 200 << 20
    container = struct.pack("<IHHQ", FATBIN_MAGIC, 1, 16, body)
    entry = struct.pack("<HHIQ", 2, 0x101, 64, body - 64) + bytes(48)
    stream = _LazyStream(SEED[:64] + container + entry, size)
    tracemalloc.start()
    facts = scan_stream(stream, "big.so")  # type: ignore[arg-type]
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert facts is not None
    assert peak < 24 << 20, f"peak {peak / 2**20:.1f} MiB for a {size >> 20} MiB member"


AR_SEED = (FATBINS / "bin" / "libstatic_sm89.a").read_bytes()
CUBIN_SEED = (FATBINS / "bin" / "bare_sm90a.cubin").read_bytes()


@fuzz
@given(
    st.integers(0, len(AR_SEED)),
    st.lists(st.tuples(st.integers(0, len(AR_SEED) - 8), st.binary(min_size=1, max_size=8)), max_size=6),
)
def test_static_library_truncated_or_corrupted(cut: int, patches: list[tuple[int, bytes]]) -> None:
    data = bytearray(AR_SEED[:cut])
    for offset, value in patches:
        data[offset : offset + len(value)] = value
    check_both(bytes(data))


@fuzz
@given(
    st.integers(0, len(CUBIN_SEED)), st.binary(min_size=1, max_size=16), st.integers(0, len(CUBIN_SEED) - 1)
)
def test_bare_cubin_truncated_or_corrupted(cut: int, patch: bytes, at: int) -> None:
    data = bytearray(CUBIN_SEED)
    data[at : at + len(patch)] = patch
    check_both(bytes(data[:cut]))


def _with_nobits_fatbin(data: bytes) -> bytes:
    """The same ELF64 LE file with its .nv_fatbin section header retyped SHT_NOBITS."""
    shoff, shentsize, shnum, shstrndx = (
        struct.unpack_from("<Q", data, 0x28)[0],
        *struct.unpack_from("<HHH", data, 0x3A),
    )
    strtab_offset = struct.unpack_from("<Q", data, shoff + shstrndx * shentsize + 0x18)[0]
    patched = bytearray(data)
    for index in range(shnum):
        header = shoff + index * shentsize
        name_at = strtab_offset + struct.unpack_from("<I", data, header)[0]
        if data[name_at : data.index(b"\0", name_at)] == b".nv_fatbin":
            struct.pack_into("<I", patched, header + 4, 8)  # sh_type = SHT_NOBITS
            return bytes(patched)
    raise AssertionError("fixture has no .nv_fatbin")


def test_nobits_fatbin_section_is_never_read_as_device_code() -> None:
    data = (FATBINS / "bin" / "plain_sm80.so").read_bytes()
    assert scan_buffer(data, "plain_sm80.so").cubins == ["sm_80"]
    patched = _with_nobits_fatbin(data)
    for facts in (scan_buffer(patched, "x.so"), scan_stream(io.BytesIO(patched), "x.so")):
        assert facts is None or facts.cubins == [] and facts.ptx == []
