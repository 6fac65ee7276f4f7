"""Benchmark: gpudoctor's fatbin scan vs `cuobjdump --list-elf` on libtorch_cuda.so.

  python bench/bench_kernels.py [--lib PATH] [--fetch] [--repeat N]

--fetch downloads the torch 2.14.1 wheel (`pip download --no-deps`, ~550 MB)
into bench/out/ and extracts only torch/lib/libtorch_cuda.so. Both tools run
in this same invocation as child processes, so the wall times and peak RSS
(ru_maxrss of the child) are comparable. Targets: >= 30x faster, < 200 MB.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out"
DEFAULT_LIB = OUT / "torch" / "lib" / "libtorch_cuda.so"
MEMBER = "torch/lib/libtorch_cuda.so"
CUOBJDUMP = REPO / ".venv/lib/python3.11/site-packages/nvidia/cu13/bin/cuobjdump"
SCAN = "import sys; from gpudoctor.kernels.scan import scan_path; b = scan_path(sys.argv[1]); print(len(b.cubins), b.error)"


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


def timed_child(command: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MiB of exactly this child, stdout)."""
    started = time.perf_counter()
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as child:
        stdout = child.stdout.read() if child.stdout else b""
        # wait4 gives this child's own rusage (RUSAGE_CHILDREN would be the max
        # over every child so far, pip included).
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.perf_counter() - started
    if child.returncode != 0:
        raise SystemExit(f"{command[0]} failed with exit code {child.returncode}")
    return elapsed, usage.ru_maxrss / 1024, stdout.decode(errors="replace")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--lib", type=Path, default=Path(os.environ.get("GPUDOCTOR_TORCH_CUDA_LIB", DEFAULT_LIB))
    )
    parser.add_argument("--fetch", action="store_true")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    lib: Path = fetch() if args.fetch else args.lib
    if not lib.exists():
        print(f"{lib} not found: run with --fetch", file=sys.stderr)
        return 66
    size_mb = lib.stat().st_size / 1e6
    ours = [timed_child([sys.executable, "-c", SCAN, str(lib)]) for _ in range(args.repeat)]
    ours_time = min(t for t, _, _ in ours)
    ours_peak = max(peak for _, peak, _ in ours)
    theirs_time, theirs_peak, listing = timed_child([str(CUOBJDUMP), "--list-elf", str(lib)])
    print(f"library:      {lib} ({size_mb:.0f} MB)")
    print(
        f"gpudoctor:    {ours_time:.3f} s (best of {args.repeat}, whole process incl. Python start), peak RSS {ours_peak:.0f} MiB"
    )
    print(
        f"cuobjdump:    {theirs_time:.3f} s (--list-elf, {len(listing.splitlines())} cubins listed), peak RSS {theirs_peak:.0f} MiB"
    )
    print(
        f"speed-up:     {theirs_time / ours_time:.0f}x (target >= 30x); memory target < 200 MiB: {'met' if ours_peak < 200 else 'MISSED'}"
    )
    wheels = sorted(OUT.glob("torch-2.14.1-*.whl"))
    if wheels:
        command = [sys.executable, "-m", "gpudoctor", "kernels", str(wheels[0]), "--format", "json"]
        wheel_time, wheel_peak, _ = timed_child(command)
        print(
            f"whole wheel:  {wheel_time:.1f} s, peak RSS {wheel_peak:.0f} MiB (gpudoctor kernels on the {wheels[0].stat().st_size / 1e6:.0f} MB wheel, deflate-streamed)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
