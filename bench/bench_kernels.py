"""Benchmark: gpudoctor's fatbin scan against `cuobjdump` and `unzip`, in the same run.

  python bench/bench_kernels.py [--lib PATH] [--wheel PATH] [--fetch] [--repeat N]

1. libtorch_cuda.so (torch 2.14.1, 503 MB): `gpudoctor`'s scan_path against
   `cuobjdump --list-elf` (target: >= 30x faster, < 200 MiB).
2. A ~550 MB wheel (default: the torch 2.14.1 wheel, the size of sgl-kernel's): `gpudoctor
   kernels WHEEL` against `unzip -q` alone and `unzip -q` + `cuobjdump --list-elf` on every
   extracted ELF file (target: >= 2x faster than `unzip -q` alone).
3. The inflate implementations on that wheel's ELF members, one thread, in this process:
   zlib (stdlib), ISA-L (python-isal, what gpudoctor uses) and zlib-ng (if installed).

--fetch downloads the torch wheel (`pip download --no-deps torch==2.14.1`) into bench/out/
and extracts libtorch_cuda.so. Every tool runs as a child process of this one invocation,
so wall times and peak RSS (ru_maxrss of that child, via wait4) are comparable.
"""

from __future__ import annotations

import argparse
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out"
DEFAULT_LIB = OUT / "torch" / "lib" / "libtorch_cuda.so"
MEMBER = "torch/lib/libtorch_cuda.so"
CUOBJDUMP = Path(sys.prefix) / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
CUOBJDUMP = CUOBJDUMP / "site-packages" / "nvidia" / "cu13" / "bin" / "cuobjdump"
SCAN = "import sys; from gpudoctor.kernels.scan import scan_path; b = scan_path(sys.argv[1]); print(len(b.cubins), b.error)"
ELF_MAGIC = b"\x7fELF"


def fetch() -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    wheels = list(OUT.glob("torch-2.14.1-*.whl"))
    if not wheels:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "torch==2.14.1", "-d", str(OUT)]
        subprocess.run(command, check=True, timeout=1800)
        wheels = list(OUT.glob("torch-2.14.1-*.whl"))
    with zipfile.ZipFile(wheels[0]) as wheel:
        wheel.extract(MEMBER, OUT)
    return OUT / MEMBER


def timed_child(command: list[str], check: bool = True) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MiB of exactly this child, stdout)."""
    started = time.perf_counter()
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as child:
        stdout = child.stdout.read() if child.stdout else b""
        # wait4 gives this child's own rusage (RUSAGE_CHILDREN would be the max
        # over every child so far, pip included).
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.perf_counter() - started
    if check and child.returncode not in (0, 1, 2, 3):
        raise SystemExit(f"{command[0]} failed with exit code {child.returncode}")
    return elapsed, usage.ru_maxrss / 1024, stdout.decode(errors="replace")


def bench_library(lib: Path, repeat: int) -> None:
    size_mb = lib.stat().st_size / 1e6
    ours = [timed_child([sys.executable, "-c", SCAN, str(lib)]) for _ in range(repeat)]
    ours_time = min(t for t, _, _ in ours)
    ours_peak = max(peak for _, peak, _ in ours)
    theirs_time, theirs_peak, listing = timed_child([str(CUOBJDUMP), "--list-elf", str(lib)])
    print(f"library:      {lib} ({size_mb:.0f} MB)")
    print(
        f"gpudoctor:    {ours_time:.3f} s (best of {repeat}, whole process incl. Python start), peak RSS {ours_peak:.0f} MiB"
    )
    print(
        f"cuobjdump:    {theirs_time:.3f} s (--list-elf, {len(listing.splitlines())} cubins listed), peak RSS {theirs_peak:.0f} MiB"
    )
    print(
        f"speed-up:     {theirs_time / ours_time:.0f}x (target >= 30x); memory target < 200 MiB: {'met' if ours_peak < 200 else 'MISSED'}"
    )


def bench_wheel(path: Path, repeat: int) -> None:
    size_mb = path.stat().st_size / 1e6
    print(f"\nwheel:        {path.name} ({size_mb:.0f} MB)")
    command = [sys.executable, "-m", "gpudoctor", "kernels", str(path), "--format", "json"]
    ours = [timed_child(command) for _ in range(repeat)]
    ours_time = min(t for t, _, _ in ours)
    ours_peak = max(peak for _, peak, _ in ours)
    print(
        f"gpudoctor:    {ours_time:.2f} s (kernels WHEEL, best of {repeat}, whole process), peak RSS {ours_peak:.0f} MiB"
    )
    with tempfile.TemporaryDirectory(prefix="bench-unzip-") as scratch:
        unzip_times = []
        for _ in range(repeat):
            shutil.rmtree(Path(scratch) / "x", ignore_errors=True)
            unzip_times.append(
                timed_child(["unzip", "-q", "-o", str(path), "-d", str(Path(scratch) / "x")])[0]
            )
        unzip_time = min(unzip_times)
        print(f"unzip -q:     {unzip_time:.2f} s (best of {repeat}, extraction only)")
        elves = [p for p in (Path(scratch) / "x").rglob("*") if p.is_file() and _head(p) == ELF_MAGIC]
        started = time.perf_counter()
        listed = sum(
            len(timed_child([str(CUOBJDUMP), "--list-elf", str(p)], check=False)[2].splitlines())
            for p in elves
        )
        dump_time = time.perf_counter() - started
    print(
        f"cuobjdump:    {dump_time:.2f} s (--list-elf on the {len(elves)} extracted ELF files, {listed} cubins); "
        f"unzip + cuobjdump {unzip_time + dump_time:.2f} s"
    )
    print(
        f"speed-up:     {unzip_time / ours_time:.1f}x vs unzip -q alone (target >= 2x), "
        f"{(unzip_time + dump_time) / ours_time:.1f}x vs unzip + cuobjdump"
    )


def bench_inflate(path: Path) -> None:
    """Raw deflate of the wheel's ELF members, one thread: the numbers behind the choice of ISA-L."""
    codecs: list[tuple[str, object]] = [("zlib", zlib)]
    try:
        from isal import isal_zlib

        codecs.append(("isal", isal_zlib))
    except ImportError:
        pass
    try:
        from zlib_ng import zlib_ng

        codecs.append(("zlib-ng", zlib_ng))
    except ImportError:
        print("(zlib-ng not installed: pip install zlib-ng to compare it too)")
    with zipfile.ZipFile(path) as archive, open(path, "rb") as raw:
        members = [
            i for i in archive.infolist() if i.compress_type == zipfile.ZIP_DEFLATED and i.file_size > 1 << 20
        ]
        streams = []
        for info in members:
            raw.seek(info.header_offset)
            name_length, extra_length = struct.unpack("<HH", raw.read(30)[26:30])
            streams.append((info.header_offset + 30 + name_length + extra_length, info.compress_size))
        total = sum(i.file_size for i in members)
        print(f"\ninflate, one thread, the {len(members)} members over 1 MiB ({total / 1e6:.0f} MB out):")
        for name, module in codecs:
            started = time.perf_counter()
            for offset, size in streams:
                inflate = module.decompressobj(-15)  # type: ignore[attr-defined]
                left = size
                raw.seek(offset)
                while left:
                    chunk = raw.read(min(left, 1 << 20))
                    left -= len(chunk)
                    inflate.decompress(chunk)
            elapsed = time.perf_counter() - started
            print(f"  {name:8s} {elapsed:6.2f} s  {total / elapsed / 1e6:6.0f} MB/s")


def _head(path: Path) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(4)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--lib", type=Path, default=Path(os.environ.get("GPUDOCTOR_TORCH_CUDA_LIB", DEFAULT_LIB))
    )
    parser.add_argument("--wheel", type=Path, help="default: the torch 2.14.1 wheel in bench/out/")
    parser.add_argument("--fetch", action="store_true")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    lib: Path = fetch() if args.fetch else args.lib
    if not lib.exists():
        print(f"{lib} not found: run with --fetch", file=sys.stderr)
        return 66
    if not CUOBJDUMP.exists():
        print(f"{CUOBJDUMP} not found: pip install nvidia-cuda-cuobjdump", file=sys.stderr)
        return 69
    bench_library(lib, args.repeat)
    wheels = [args.wheel] if args.wheel else sorted(OUT.glob("torch-2.14.1-*.whl"))
    if wheels:
        bench_wheel(wheels[0], args.repeat)
        bench_inflate(wheels[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
