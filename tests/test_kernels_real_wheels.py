"""Real CUDA wheels from the package index (opt-in: GPUDOCTOR_SLOW=1; ~500 MB downloaded).

- triton 3.9.0: host code only (its fatbin-looking bytes are not device code): no errors,
  no kernels, as the unzipped tree and cuobjdump say.
- nvidia-cufft-cu12 11.4.1.4: libcufft.so.11 keeps its kernels in `.ldata` (its `.nv_fatbin`
  is a 432-byte sm_52 stub, all cuobjdump lists). The oracle is computed here independently:
  every container magic in `.ldata` walked with struct, cubin targets collected.
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from gpudoctor.kernels.sources import scan_targets

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("GPUDOCTOR_SLOW") != "1", reason="opt-in: GPUDOCTOR_SLOW=1"),
]


def download(requirement: str, where: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", requirement, "-d", str(where)],
        check=True,
        timeout=1200,
    )
    (wheel,) = where.glob("*.whl")
    return wheel


def test_triton_wheel_has_no_device_code_and_no_errors(tmp_path: Path) -> None:
    scan = scan_targets([str(download("triton==3.9.0", tmp_path))])
    assert scan.errors == [] and scan.binaries == []


def ldata_cubin_targets(library: bytes) -> set[str]:
    """sm_XY of every cubin entry of every container magic in .ldata (a plain magic scan)."""
    shoff = struct.unpack_from("<Q", library, 0x28)[0]
    entsize, count, names_index = struct.unpack_from("<HHH", library, 0x3A)
    names_at = struct.unpack_from("<Q", library, shoff + names_index * entsize + 0x18)[0]
    for index in range(count):
        header = shoff + index * entsize
        name_at = names_at + struct.unpack_from("<I", library, header)[0]
        if library[name_at : name_at + 7] == b".ldata\0":
            offset, size = struct.unpack_from("<QQ", library, header + 0x18)
            break
    else:
        raise AssertionError("no .ldata")
    targets = set()
    for match in re.finditer(re.escape(struct.pack("<I", 0xBA55ED50)), library[offset : offset + size]):
        at = offset + match.start()
        header_size, body = struct.unpack_from("<HQ", library, at + 6)
        cursor, end = at + header_size, at + header_size + body
        while cursor < end:
            kind, _v, entry_header, payload = struct.unpack_from("<HHIQ", library, cursor)
            if kind == 2:
                targets.add(f"sm_{struct.unpack_from('<I', library, cursor + 28)[0]}")
            cursor += entry_header + payload
    return targets


def test_cufft_kernels_in_ldata_are_found(tmp_path: Path) -> None:
    wheel = download("nvidia-cufft-cu12==11.4.1.4", tmp_path)
    scan = scan_targets([str(wheel)])
    (cufft,) = [b for b in scan.binaries if b.path.endswith("libcufft.so.11")]
    with zipfile.ZipFile(wheel) as archive:
        expected = ldata_cubin_targets(archive.read("nvidia/cufft/lib/libcufft.so.11"))
    assert cufft.error is None and cufft.package == "nvidia-cufft-cu12"
    assert set(cufft.cubins) == expected | {"sm_52"}  # plus the .nv_fatbin stub
    assert {"sm_80", "sm_90", "sm_100", "sm_120"} <= set(cufft.cubins)
