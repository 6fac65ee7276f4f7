"""Time `gpudoctor fleet` on 10,000 node reports (1% corrupted) with one image on a loopback registry.

1. Node reports: `gpudoctor scan --from-nvidia-smi X --format json` on every XML in
   fixtures/fleets/nvidia-smi/ (real captures of mixed generations, plus the DERIVED
   H800/B200/A800), replicated to --nodes files with varied hostnames; every 100th
   file is cut in half (truncated JSON).
2. A real distribution registry (Debian `docker-registry`) on 127.0.0.1 with one
   image: an OCI manifest whose config carries the environment of the real
   vllm/vllm-openai:v0.23.0 image (fixtures/facts/images/, CUDA 13.0).
3. `gpudoctor fleet DIR --image REF --insecure-registry HOST:PORT --format json`:
   wall time and peak RSS of that process (wait4), and checks that every valid node
   is counted and exactly the corrupted files are listed.
4. The same with `--what-if driver=650.12 --what-if cuda-compat=13.0@class~A800 --plan`
   (every class re-evaluated on rewritten facts, plus the rollout plan), checking that
   GD-DRV-006 appears on the A800 class. No peer tool answers what-if; the baseline is
   run 3, the same fleet without it.

    .venv/bin/python bench/bench_fleet.py [--nodes 10000] [--keep DIR]
Targets on 2 cores: run 3 under 5 s and 500 MB; run 4 (what-if) under 10 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.fleet_registry import push_fixture_image, running_registry  # noqa: E402

XMLS = REPO / "fixtures" / "fleets" / "nvidia-smi"
IMAGE = "vllm-openai_v0.23.0-cuda13.0.2_amd64"  # fixtures/facts/images/: the real vLLM image environment
GPUDOCTOR = [sys.executable, "-m", "gpudoctor"]
CORRUPT_EVERY = 100
FLEET_TIMEOUT_S = 300


def scan_reports() -> list[dict[str, Any]]:
    import importlib.util

    if importlib.util.find_spec("gpudoctor.commands.scan") is None:
        # Before the scan command exists: the same path it takes (load_node + diagnose), in process.
        from gpudoctor.nodeinput import load_node
        from gpudoctor.pipeline import diagnose

        print("note: gpudoctor scan not built; reports made with nodeinput.load_node + pipeline.diagnose")
        return [diagnose(load_node(xml)) for xml in sorted(XMLS.glob("*.xml"))]
    reports = []
    for xml in sorted(XMLS.glob("*.xml")):
        result = subprocess.run(
            [*GPUDOCTOR, "scan", "--from-nvidia-smi", str(xml), "--format", "json"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode > 3:
            raise SystemExit(f"gpudoctor scan failed on {xml.name}: {result.stderr.strip()}")
        reports.append(json.loads(result.stdout))
    return reports


def write_fleet(directory: Path, reports: list[dict[str, Any]], count: int) -> set[str]:
    """count report files; returns the paths of the corrupted ones."""
    corrupted = set()
    for number in range(count):
        report = reports[number % len(reports)]
        hostname = f"gpu-{number:05d}"
        report["node"]["host"]["hostname"] = hostname
        text = json.dumps(report, indent=2)
        path = directory / f"{hostname}.json"
        if number % CORRUPT_EVERY == CORRUPT_EVERY - 1:
            text = text[: len(text) // 2]
            corrupted.add(str(path))
        path.write_text(text, encoding="utf-8")
    return corrupted


def run_fleet(args: list[str]) -> tuple[float, int, int]:
    """(wall seconds, peak RSS bytes, exit code) of one gpudoctor fleet process."""
    start = time.perf_counter()
    process = subprocess.Popen(
        [*GPUDOCTOR, "fleet", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    # wait4 gives this process's own peak RSS; the timer keeps a hung run from hanging the bench.
    watchdog = threading.Timer(FLEET_TIMEOUT_S, process.kill)
    watchdog.start()
    try:
        _, status, usage = os.wait4(process.pid, 0)
    finally:
        watchdog.cancel()
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    stderr = process.stderr.read().decode() if process.stderr else ""
    if process.returncode > 3:
        raise SystemExit(f"gpudoctor fleet failed (exit {process.returncode}): {stderr.strip()}")
    return wall, usage.ru_maxrss * 1024, process.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--keep", type=Path, help="keep the generated fleet in this directory")
    options = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="gpudoctor-bench-fleet-"))
    try:
        fleet = options.keep or workdir / "fleet"
        fleet.mkdir(parents=True, exist_ok=True)
        reports = scan_reports()
        corrupted = write_fleet(fleet, reports, options.nodes)
        size = sum(p.stat().st_size for p in fleet.iterdir())
        print(
            f"fleet: {options.nodes} report files ({size / 1e6:.1f} MB) from {len(reports)} real/derived XMLs, "
            f"{len(corrupted)} corrupted"
        )
        out = workdir / "fleet.json"
        with running_registry() as registry:
            host = registry.host
            image = push_fixture_image(registry, "bench/vllm-openai", "v0.23.0", IMAGE)
            wall, rss, code = run_fleet(
                [
                    str(fleet),
                    "--image",
                    image,
                    "--insecure-registry",
                    host,
                    "--format",
                    "json",
                    "--output",
                    str(out),
                ]
            )
            what_if_out = workdir / "what-if.json"
            what_if_wall, what_if_rss, _ = run_fleet(
                [str(fleet), "--image", image, "--insecure-registry", host, "--what-if", "driver=650.12",
                 "--what-if", "cuda-compat=13.0@class~A800", "--plan", "--format", "json",
                 "--output", str(what_if_out)]
            )  # fmt: skip
        what_if = json.loads(what_if_out.read_text(encoding="utf-8"))["what_if"]
        a800 = [row for row in what_if["classes"] if "A800" in row["class"]]
        what_if_ok = bool(a800) and all(
            "GD-DRV-006" in row["after"]["findings"] and "GD-DRV-006" not in row["before"]["findings"]
            for row in a800
        )
        document = json.loads(out.read_text(encoding="utf-8"))
        listed = {item["path"] for item in document["invalid_reports"]}
        valid = options.nodes - len(corrupted)
        image_errors = [i["error"] for i in document.get("images", []) if i["error"]]
        ok = document["nodes_total"] == valid and listed == corrupted and not image_errors
        matrix = {row["class"]: row["verdict"] for row in document.get("matrix", [])}
        print(
            f"gpudoctor fleet --image {image}: wall {wall:.2f} s, peak RSS {rss / 2**20:.0f} MB, exit {code}"
        )
        print(
            f"nodes_total {document['nodes_total']} (expected {valid}), invalid listed {len(listed)} "
            f"(expected {len(corrupted)}, exact match: {listed == corrupted}), classes {len(document['classes'])}"
        )
        for key, verdict in matrix.items():
            print(f"  {verdict:8} {key}")
        if image_errors:
            print(f"image errors: {image_errors}")
        print(
            "targets: wall < 5 s, peak RSS < 500 MB:",
            "MET" if wall < 5 and rss < 500 * 2**20 and ok else "NOT MET",
        )
        print(
            f"gpudoctor fleet --what-if driver=650.12 --what-if cuda-compat=13.0@class~A800 --plan: "
            f"wall {what_if_wall:.2f} s, peak RSS {what_if_rss / 2**20:.0f} MB "
            f"(baseline without --what-if: {wall:.2f} s; no peer tool answers what-if); "
            f"GD-DRV-006 appears on the A800 class: {what_if_ok}"
        )
        print("target: what-if wall < 10 s:", "MET" if what_if_wall < 10 and what_if_ok else "NOT MET")
        if not ok or not what_if_ok:
            raise SystemExit(1)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
