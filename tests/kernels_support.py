"""Shared helpers for the kernels tests: fixture paths and cuobjdump's listings."""

from __future__ import annotations

import io
import os
import re
import shutil
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FATBINS = REPO / "fixtures" / "fatbins"
BINARIES = sorted((FATBINS / "bin").iterdir())
CUOBJDUMP_CANDIDATES = (
    os.environ.get("CUOBJDUMP", ""),
    str(REPO / ".venv/lib/python3.11/site-packages/nvidia/cu13/bin/cuobjdump"),
    shutil.which("cuobjdump") or "",
)

# "ELF file    1: name.1.sm_90a.cubin"; static libraries prefix "member lib.a:x.o: ".
_LISTED = re.compile(r"^(?:member \S+: )?(ELF|PTX) file\s+\d+: .*\.(sm_\w+)\.(cubin|ptx)$")


def parse_listing(text: str) -> set[str]:
    """Targets named in `cuobjdump --list-elf` / `--list-ptx` output."""
    targets = set()
    for line in text.splitlines():
        match = _LISTED.match(line.strip())
        if match:
            targets.add(match.group(2))
    return targets


def recorded(name: str, kind: str) -> set[str]:
    return parse_listing((FATBINS / "listings" / f"{name}.{kind}.txt").read_text())


def cuobjdump() -> str | None:
    for candidate in CUOBJDUMP_CANDIDATES:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def nvcc() -> str:
    """The nvcc to build test binaries with; skips the test where there is none."""
    import pytest

    found = shutil.which("nvcc") or ("/usr/local/bin/nvcc" if Path("/usr/local/bin/nvcc").exists() else None)
    if found is None:
        pytest.skip("nvcc not installed")
    return found


def write_tar(path: Path, members: dict[str, bytes], mode: str = "w") -> Path:
    """A tar archive of regular files (mode "w:gz" for a gzipped one)."""
    with tarfile.open(path, mode) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path
