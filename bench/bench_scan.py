"""Startup and scan latency against the environment report people run today.

Prints the median wall time (and CPU time) of, in the same run:
  gpudoctor --version                                   (budget < 150 ms)
  gpudoctor scan --from-nvidia-smi <8-GPU XML> --format json, all rules (budget < 300 ms)
  gpudoctor scan --format json                          (live probe of this machine; no budget)
  python -m torch.utils.collect_env                     (torch 2.13.0 CPU build in bench/out/torch-venv)

The gpudoctor commands run through the installed console script of the venv
(default: the one next to this interpreter), as a user runs them. The budgets are
printed beside the figures, not asserted.

    .venv/bin/python bench/bench_scan.py [--runs 21] [--venv .venv]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out"
XML = REPO / "fixtures" / "nvidia-smi" / "8x-Tesla-V100S-PCIE-32GB_460.73.01.xml"
TORCH_VENV = OUT / "torch-venv"
TORCH_PIN = "torch==2.13.0"
VERSION_BUDGET_MS = 150.0
SCAN_BUDGET_MS = 300.0


def wall_ms(
    argv: list[str], runs: int, ok_codes: tuple[int, ...] = (0, 1, 2, 3)
) -> list[tuple[float, float]]:
    """(wall, CPU) times in ms per run; the first (cold page cache) run is discarded. CPU time
    (user + system of the child) is the steadier figure on a shared machine."""
    times = []
    for _ in range(runs + 1):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        done = subprocess.run(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600, check=False
        )
        elapsed = (time.perf_counter() - started) * 1000
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000
        if done.returncode not in ok_codes:
            raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.decode()[-300:]}")
        times.append((elapsed, cpu))
    return times[1:]


def torch_python() -> tuple[Path | None, str]:
    """The torch venv's interpreter, creating it on first use; (None, why) if it cannot be had."""
    python = TORCH_VENV / "bin" / "python"
    check = [str(python), "-c", "import torch; print(torch.__version__)"]
    if python.exists() and subprocess.run(check, capture_output=True, timeout=300).returncode == 0:
        return python, ""
    OUT.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(
            [sys.executable, "-m", "venv", str(TORCH_VENV)], check=True, timeout=300, capture_output=True
        )
        install = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", TORCH_PIN],
            capture_output=True,
            text=True,
            timeout=1800,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        return None, f"could not create {TORCH_VENV}: {exc}"
    if install.returncode != 0:
        lines = (install.stderr or install.stdout).strip().splitlines()
        return None, f"pip install {TORCH_PIN} failed: {lines[-1] if lines else 'no output'}"
    return python, ""


def report(label: str, times: list[tuple[float, float]], budget: float | None) -> None:
    wall = statistics.median(t[0] for t in times)
    cpu = statistics.median(t[1] for t in times)
    verdict = (
        "" if budget is None else f"  budget < {budget:.0f} ms: " + ("within" if wall < budget else "OVER")
    )
    print(
        f"{label:<58} median {wall:7.1f} ms (CPU {cpu:7.1f} ms)   min {min(t[0] for t in times):7.1f} ms"
        f"   n={len(times)}{verdict}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--torch-runs", type=int, default=5)
    parser.add_argument("--venv", type=Path, default=Path(sys.executable).parent.parent)
    args = parser.parse_args()

    gpudoctor = str(args.venv / "bin" / "gpudoctor")
    if not os.access(gpudoctor, os.X_OK):
        print(f"no gpudoctor console script at {gpudoctor}: pip install . into that venv first")
        return 1
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"gpudoctor: {gpudoctor}   CPUs: {os.cpu_count()}   load average: {load}   runs: {args.runs}")
    report("gpudoctor --version", wall_ms([gpudoctor, "--version"], args.runs), VERSION_BUDGET_MS)
    scan = [gpudoctor, "scan", "--from-nvidia-smi", str(XML), "--format", "json"]
    report(
        f"gpudoctor scan --from-nvidia-smi {XML.name[:8]}... --format json",
        wall_ms(scan, args.runs),
        SCAN_BUDGET_MS,
    )
    report(
        "gpudoctor scan --format json (live, this machine)",
        wall_ms([gpudoctor, "scan", "--format", "json"], args.runs),
        None,
    )

    python, why = torch_python()
    if python is None:
        print(f"python -m torch.utils.collect_env: not measured: {why}")
        return 0
    collect_env = [str(python), "-m", "torch.utils.collect_env"]
    report(
        f"python -m torch.utils.collect_env ({TORCH_PIN})", wall_ms(collect_env, args.torch_runs, (0,)), None
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
