"""Builds a realistic site-packages tree from committed fixtures for the kernels tests.

Binaries are the nvcc-built fixtures placed where the real libraries live;
torch's METADATA (headers) and version.py come from the torch 2.14.1 wheel,
nvidia-cuda-runtime's METADATA from its 13.5.37 wheel (fixtures/SOURCES.md).
flash_attn_3's METADATA is constructed (Core Metadata 2.1 headers only).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.kernels_support import FATBINS

SITE = FATBINS.parent / "kernels" / "site-packages"

LAYOUT = {
    "torch/lib/libtorch_cuda.so": "multi_cubin_ptx.so",  # sm_75..sm_90 + PTX sm_90
    "flash_attn_3/_C.abi3.so": "arch_90a.so",  # FA3 "hopper": sm_90a only
    "nvidia/cu13/lib/libcudart.so.13": "hostonly.so",
    "bin/tool": "exe_sm89_ptx",
}


def build_site_packages(root: Path) -> Path:
    shutil.copytree(SITE, root)
    for target, fixture in LAYOUT.items():
        destination = root / target
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(FATBINS / "bin" / fixture, destination)
    meta = root / "flash_attn_3-3.0.0b1.dist-info" / "METADATA"
    meta.parent.mkdir()
    meta.write_text("Metadata-Version: 2.1\nName: flash_attn_3\nVersion: 3.0.0b1\n\nFlashAttention-3\n")
    (root / "flash_attn_interface.py").write_text("# FA3 interface module\n")
    (root / "README.txt").write_text("not a binary\n")
    (root / "broken.so").write_bytes(b"this is not ELF")
    return root
