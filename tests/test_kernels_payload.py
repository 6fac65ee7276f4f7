"""Held-out audit (issue 15): a fatbin entry whose payload is not what its header says is an error.

The loader reads the payload the header points to, so a damaged one does not run; before these
checks gpudoctor read headers only and called such libraries native, or, when the only entry's
kind was damaged, host-only and ok. Every binary is built here by nvcc 13 (once per module) and
damaged byte by byte; payloads are never inflated (fatbin.py docstring).
"""

from __future__ import annotations

import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from gpudoctor.kernels.scan import scan_buffer, scan_stream
from tests import kernels_support
from tests.test_kernels_corrupt import both_modes, containers, run, write_tar, write_wheel

KERNEL = "__global__ void scale(float *x, float a) { x[threadIdx.x] *= a; }\n"
SHAPES = {
    # name: nvcc arguments (output file is the name)
    "plain_sm80.fatbin": ["-fatbin", "--compress-mode=none", "-gencode", "arch=compute_80,code=sm_80"],
    "ptx80.fatbin": ["-fatbin", "--compress-mode=none", "-gencode", "arch=compute_80,code=compute_80"],
    "zstd_sm80_ptx.fatbin": [
        "-fatbin",
        "--compress-mode=size",
        "-Xfatbin",
        "-compress-all",
        "-gencode",
        "arch=compute_80,code=[sm_80,compute_80]",
    ],
    "libsm86.so": [
        "-shared",
        "-Xcompiler",
        "-fPIC",
        "-cudart",
        "shared",
        "--compress-mode=none",
        "-gencode",
        "arch=compute_86,code=sm_86",
    ],
}
# Entry header: kind, _, header size, payload size, stored size, _, minor, major, arch, _, _,
# flags, _, uncompressed size (gpudoctor/kernels/fatbin.py).
ENTRY = struct.Struct("<HHIQIIHHIIIQQQ")
PAYLOAD = -1  # as a field offset: the payload's first byte, after the entry header


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    nvcc = kernels_support.nvcc()
    work = tmp_path_factory.mktemp("payload")
    (work / "k.cu").write_text(KERNEL)
    for name, args in SHAPES.items():
        subprocess.run([nvcc, *args, "k.cu", "-o", name], cwd=work, check=True, timeout=300)
    return {name: (work / name).read_bytes() for name in SHAPES}


def first_entry(data: bytes) -> int:
    """Offset of the first entry header of the first container (a .fatbin file or a library)."""
    return (0 if data[:4] == struct.pack("<I", 0xBA55ED50) else containers(data)[0]) + 16


def patched(data: bytes, at: int, fmt: str, value: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, at, value)
    return bytes(out)


def scanned(data: bytes, name: str) -> tuple[str | None, str | None]:
    """The error of the file scan and of the stream scan (a tar or wheel member)."""
    from io import BytesIO

    mapped, streamed = scan_buffer(data, name), scan_stream(BytesIO(data), name)
    assert mapped is not None and streamed is not None
    assert mapped.cubins == mapped.ptx == []
    return mapped.error, streamed.error


def test_intact_builds_have_no_error(built: dict[str, bytes]) -> None:
    for name, data in built.items():
        for facts in both_modes(data, name):
            assert facts is not None and facts.error is None and facts.fatbin_entries, name
    entry = ENTRY.unpack_from(built["zstd_sm80_ptx.fatbin"], first_entry(built["zstd_sm80_ptx.fatbin"]))
    assert entry[11] & 0x8000  # the zstd cases below test what they claim


@pytest.mark.parametrize(
    ("shape", "field", "fmt", "change", "problem"),
    [
        # the cubin's own e_flags say sm_80: the header's sm_86 was a silent "native on 8.6"
        ("plain_sm80.fatbin", 28, "<I", lambda v: 86, "payload is a cubin for sm_80, the header says sm_86"),
        (
            "plain_sm80.fatbin",
            PAYLOAD,
            "<B",
            lambda v: v ^ 0xFF,
            "payload is not a 64-bit little-endian ELF cubin",
        ),
        ("plain_sm80.fatbin", 40, "<Q", lambda v: v | 0x8000, "payload is not a Zstandard frame"),
        ("plain_sm80.fatbin", 40, "<Q", lambda v: v | 0x300000, "is flagged both arch- and family-specific"),
        # the only entry's kind damaged: before, "no device code" and verdict ok
        ("plain_sm80.fatbin", 0, "<H", lambda v: 7, "has unknown kind 7"),
        ("plain_sm80.fatbin", 0, "<H", lambda v: 1, "payload is not PTX text"),
        ("ptx80.fatbin", PAYLOAD, "<B", lambda v: 0xF5, "payload is not PTX text"),
        ("zstd_sm80_ptx.fatbin", PAYLOAD, "<B", lambda v: v ^ 0x01, "payload is not a Zstandard frame"),
        ("zstd_sm80_ptx.fatbin", 56, "<Q", lambda v: v + 1, "bytes, the header says"),
        ("zstd_sm80_ptx.fatbin", 16, "<I", lambda v: v + 64, "bytes in a"),
        # compressed payloads are not inflated, but nvcc refuses compute_80a and compute_90f:
        # "a" targets begin at 9.0 and "f" at 10.0, so these flags are damage
        (
            "zstd_sm80_ptx.fatbin",
            40,
            "<Q",
            lambda v: v | 0x100000,
            "names sm_80a, a target that does not exist",
        ),
        (
            "zstd_sm80_ptx.fatbin",
            40,
            "<Q",
            lambda v: v | 0x200000,
            "names sm_80f, a target that does not exist",
        ),
        ("libsm86.so", 28, "<I", lambda v: 89, "payload is a cubin for sm_86, the header says sm_89"),
    ],
)
def test_payload_unlike_its_header_is_an_error(
    built: dict[str, bytes], shape: str, field: int, fmt: str, change: Callable[[int], int], problem: str
) -> None:
    data = built[shape]
    at = first_entry(data)
    if field == PAYLOAD:
        field = ENTRY.unpack_from(data, at)[2]
    value = struct.unpack_from(fmt, data, at + field)[0]
    mapped, streamed = scanned(patched(data, at + field, fmt, change(value)), shape)
    assert mapped == streamed and mapped is not None and mapped.startswith(f"fatbin entry at {at:#x}")
    assert problem in mapped


def test_damaged_payload_is_unknown_in_every_mode(built: dict[str, bytes], tmp_path: Path) -> None:
    data = built["libsm86.so"]
    at = first_entry(data)
    damaged = patched(data, at, "<H", 7)  # the library's only entry
    (tmp_path / "lib.so").write_bytes(damaged)
    write_wheel(tmp_path / "x-1.0-py3-none-any.whl", {"x/lib.so": damaged})
    write_tar(tmp_path / "layer.tar.gz", {"x/lib.so": damaged})
    for target in ("lib.so", "x-1.0-py3-none-any.whl", "layer.tar.gz"):
        code, report = run(str(tmp_path / target), "--gpu", "8.6,sm_90")
        (binary,) = report["binaries"]
        assert binary["error"] == f"fatbin entry at {at:#x} has unknown kind 7", target
        assert binary["per_gpu"] == {"8.6": "unknown", "9.0": "unknown"}
        assert report["verdict"] == "unknown" and code == 3, target


@pytest.mark.parametrize("name", ["kernels.fatbin", "kernels.cubin"])
def test_damaged_device_code_file_is_unknown_in_every_mode(
    built: dict[str, bytes], tmp_path: Path, name: str
) -> None:
    """A .fatbin / .cubin (what nvcc -fatbin / -cubin write) whose magic is gone was an error
    given as a file but silently skipped inside a directory, tar or wheel (verdict ok); the
    same error in every mode."""
    damaged = b"\0\0\0\0" + built["plain_sm80.fatbin"][4:]
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / name).write_bytes(damaged)
    write_wheel(tmp_path / "x-1.0-py3-none-any.whl", {f"x/{name}": damaged})
    write_tar(tmp_path / "layer.tar.gz", {f"x/{name}": damaged})
    for target in (f"tree/{name}", "tree", "x-1.0-py3-none-any.whl", "layer.tar.gz"):
        code, report = run(str(tmp_path / target), "--gpu", "8.0")
        (binary,) = report["binaries"]
        assert binary["error"] == "named like a cubin or fatbin but neither", target
        assert binary["per_gpu"] == {"8.0": "unknown"}
        assert report["verdict"] == "unknown" and code == 3, target
