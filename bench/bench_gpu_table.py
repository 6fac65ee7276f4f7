"""Scan time of a saved 8-GPU nvidia-smi XML with the generated device table, against before it.

Prints the median wall and CPU time, in the same run, of
  python -m gpudoctor scan --from-nvidia-smi <8-GPU XML> --format json
from this checkout (device table: rules/matrix/gpu_devices.tsv) and from the tree
before the table came in (`git archive` of BEFORE into bench/out/, default: the
parent of the commit that added the table), and the growth of the CPU time (the wall
time of a 2-core machine shared with other jobs swings by more than the target). Target:
at most +20 %.

    .venv/bin/python bench/bench_gpu_table.py [--runs 21] [--before REF] [--xml PATH]
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
TABLE = "rules/matrix/gpu_devices.tsv"
MAX_GROWTH = 0.20


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()


def before_ref() -> str:
    added = git("log", "--diff-filter=A", "--format=%H", "--", TABLE).splitlines()
    if not added:
        raise SystemExit(f"bench_gpu_table: {TABLE} is not in this checkout's history; pass --before")
    return added[-1] + "^"


def tree_of(ref: str) -> Path:
    commit = git("rev-parse", "--verify", ref + "^{commit}")
    tree = OUT / f"tree-{commit[:12]}"
    if not (tree / "gpudoctor").is_dir():
        tree.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", commit], cwd=REPO, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return tree


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def scan_ms(tree: Path, xml: Path) -> tuple[float, float]:
    """(wall, CPU) ms of one scan from `tree`. CPU time (user + system of the child) is the
    steadier figure on a machine shared with other jobs."""
    argv = [sys.executable, "-m", "gpudoctor", "scan", "--from-nvidia-smi", str(xml), "--format", "json"]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cpu_before, started = _children_cpu_s(), time.perf_counter()
    done = subprocess.run(argv, cwd=tree, env=env, capture_output=True, timeout=120, check=False)
    wall, cpu = (time.perf_counter() - started) * 1000, (_children_cpu_s() - cpu_before) * 1000
    if done.returncode not in (0, 1, 2, 3):
        raise SystemExit(f"scan from {tree} exited {done.returncode}: {done.stderr.decode()[-300:]}")
    return wall, cpu


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--before", help="git ref without the device table (default: parent of its commit)")
    parser.add_argument("--xml", type=Path, default=XML)
    args = parser.parse_args()
    before = args.before or before_ref()
    trees = [("before (no device table, " + before + ")", tree_of(before)), ("with the device table", REPO)]
    # interleave the two trees run by run so load on this shared machine hits both alike;
    # one discarded warm-up run each
    for _, tree in trees:
        scan_ms(tree, args.xml)
    results: dict[str, list[tuple[float, float]]] = {label: [] for label, _ in trees}
    for _ in range(args.runs):
        for label, tree in trees:
            results[label].append(scan_ms(tree, args.xml))
    print(f"gpudoctor scan --from-nvidia-smi {args.xml.name} --format json, {args.runs} runs each:")
    cpu_medians = []
    for label, _ in trees:
        walls, cpus = [w for w, _ in results[label]], [c for _, c in results[label]]
        cpu_medians.append(statistics.median(cpus))
        print(
            f"  {label:<52} wall median {statistics.median(walls):7.1f} ms (min {min(walls):6.1f})"
            f"   CPU median {cpu_medians[-1]:7.1f} ms (min {min(cpus):6.1f})"
        )
    growth = cpu_medians[1] / cpu_medians[0] - 1
    verdict = "PASS" if growth <= MAX_GROWTH else "FAIL"
    print(f"  CPU-time growth {growth * 100:+.1f} %   target <= +{MAX_GROWTH * 100:.0f} %: {verdict}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
