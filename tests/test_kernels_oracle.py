"""gpudoctor lists exactly the cubin and PTX targets cuobjdump lists, on every fixture."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from gpudoctor.kernels.scan import scan_path, scan_stream
from tests.conftest import require_service
from tests.kernels_support import BINARIES, cuobjdump, parse_listing, recorded

NAMES = [path.name for path in BINARIES]


@pytest.mark.parametrize("path", BINARIES, ids=NAMES)
def test_mmap_scan_matches_recorded_cuobjdump(path: Path) -> None:
    facts = scan_path(str(path))
    assert facts is not None and facts.error is None
    assert set(facts.cubins) == recorded(path.name, "elf")
    assert set(facts.ptx) == recorded(path.name, "ptx")


@pytest.mark.parametrize("path", BINARIES, ids=NAMES)
def test_stream_scan_equals_mmap_scan(path: Path) -> None:
    with path.open("rb") as handle:
        streamed = scan_stream(handle, path.name)
    mapped = scan_path(str(path), path.name)
    assert streamed == mapped


def test_fixture_set_covers_the_variants() -> None:
    every_cubin = set().union(*(recorded(p.name, "elf") for p in BINARIES))
    every_ptx = set().union(*(recorded(p.name, "ptx") for p in BINARIES))
    assert {"sm_90a", "sm_100a", "sm_110a", "sm_103", "sm_121"} <= every_cubin
    assert {"sm_103f", "sm_100a", "sm_75", "sm_120"} <= every_ptx


def test_compression_flag_follows_the_build() -> None:
    facts = {p.name: scan_path(str(p)) for p in BINARIES}
    assert facts["compressed_all.so"].compressed is True
    assert facts["uncompressed.so"].compressed is False
    assert all(e.compressed for e in facts["compressed_all.so"].fatbin_entries)


def test_ptx_entries_carry_isa_and_toolkit() -> None:
    facts = scan_path(str(BINARIES[0].parent / "ptx_only_75.so"))
    (entry,) = facts.fatbin_entries
    assert (entry.kind, entry.target, entry.ptx_isa, entry.toolkit_version) == ("ptx", "sm_75", "9.0", "13.0")


def test_family_cubins_keep_their_variant_in_entries() -> None:
    facts = scan_path(str(BINARIES[0].parent / "family_103f_ptx.so"))
    assert facts.cubins == ["sm_103"]  # cuobjdump's name
    assert {e.target for e in facts.fatbin_entries} == {"sm_103f"}


def test_host_only_library_has_no_device_code() -> None:
    facts = scan_path(str(BINARIES[0].parent / "hostonly.so"))
    assert facts is not None and facts.fatbin_entries == [] and facts.error is None


@pytest.mark.parametrize("path", BINARIES, ids=NAMES)
def test_live_cuobjdump_agrees(path: Path) -> None:
    tool = cuobjdump()
    if tool is None:
        pytest.skip("cuobjdump not installed")
    elf = subprocess.run([tool, "--list-elf", str(path)], capture_output=True, text=True, timeout=60)
    ptx = subprocess.run([tool, "--list-ptx", str(path)], capture_output=True, text=True, timeout=60)
    facts = scan_path(str(path))
    assert set(facts.cubins) == parse_listing(elf.stdout)
    assert set(facts.ptx) == parse_listing(ptx.stdout)


TORCH_LIB = os.environ.get("GPUDOCTOR_TORCH_CUDA_LIB", "/tmp/torchwheel/x/torch/lib/libtorch_cuda.so")


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("GPUDOCTOR_SLOW") != "1", reason="opt-in: GPUDOCTOR_SLOW=1")
def test_libtorch_cuda_matches_cuobjdump() -> None:
    tool = cuobjdump()
    require_service(
        tool is not None and os.path.exists(TORCH_LIB),
        "cuobjdump and libtorch_cuda.so (GPUDOCTOR_TORCH_CUDA_LIB; .ci/run or bench/bench_kernels.py --fetch)",
    )
    assert tool is not None
    started = time.perf_counter()
    facts = scan_path(TORCH_LIB)
    ours = time.perf_counter() - started
    elf = subprocess.run([tool, "--list-elf", TORCH_LIB], capture_output=True, text=True, timeout=600)
    ptx = subprocess.run([tool, "--list-ptx", TORCH_LIB], capture_output=True, text=True, timeout=600)
    assert set(facts.cubins) == parse_listing(elf.stdout)
    assert set(facts.ptx) == parse_listing(ptx.stdout)
    assert ours < 5.0


EXTERNAL = Path(__file__).resolve().parent.parent / "fixtures" / "fatbins" / "external"


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("GPUDOCTOR_SLOW") != "1", reason="opt-in: GPUDOCTOR_SLOW=1")
def test_cuda12_library_in_a_wheel_matches_recorded_cuobjdump(tmp_path: Path) -> None:
    """A CUDA 12.9 build (LZ4-compressed PTX, flag 0x2000), streamed from its wheel."""
    import sys

    from gpudoctor.kernels.sources import scan_targets

    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "nvidia-curand-cu12==10.3.10.19",
            "-d",
            str(tmp_path),
        ],
        check=True,
        timeout=600,
    )
    (wheel,) = tmp_path.glob("*.whl")
    (lib,) = [b for b in scan_targets([str(wheel)]).binaries if b.path.endswith("libcurand.so.10")]
    name = "libcurand.so.10-cu12-10.3.10.19"
    assert set(lib.cubins) == parse_listing((EXTERNAL / f"{name}.elf.txt").read_text())
    assert set(lib.ptx) == parse_listing((EXTERNAL / f"{name}.ptx.txt").read_text())
    assert lib.compressed and {e.toolkit_version for e in lib.fatbin_entries if e.kind == "ptx"} == {"12.9"}
