"""Hostile input files: wall time, peak RSS and exit code of gpudoctor on each.

Every case must end within its deadline, under 1 GiB RSS, with a one-line error and a
documented exit code (65 bad data, 66 unreadable), or, for `fleet`, the bad file as one
`invalid_reports` entry. The cases are the ones issue 18 reported (FIFO and /dev/zero
symlink in a fleet directory, files symlinked to each other, a 1 MB nvidia-smi XML of
empty <gpu/> elements, a YAML alias bomb in a rule, an oversized report).

    .venv/bin/python bench/bench_hostile_inputs.py [--venv .venv] [--big-mib 200]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEADLINE_S = 60.0
RSS_LIMIT_MIB = 1024

ALIAS_BOMB = """kind: rules
rules:
  - id: GD-TST-001
    title: alias bomb
    severity: info
    applies_to: node
    message: m
    fix: f
    source: field report
    when: &a {driver.branch: 1}
    notes: [&b {any: [*a, *a, *a, *a, *a, *a, *a, *a, *a]}, &c {any: [*b, *b, *b, *b, *b, *b, *b, *b, *b]},
      &d {any: [*c, *c, *c, *c, *c, *c, *c, *c, *c]}, &e {any: [*d, *d, *d, *d, *d, *d, *d, *d, *d]},
      &f {any: [*e, *e, *e, *e, *e, *e, *e, *e, *e]}, &g {any: [*f, *f, *f, *f, *f, *f, *f, *f, *f]}]
    test: {any: [*g, *g, *g, *g, *g, *g, *g, *g, *g]}
"""


def cases(work: Path, big_mib: int) -> list[tuple[str, list[str]]]:
    fifo_dir = work / "fleet-fifo"
    fifo_dir.mkdir()
    (fifo_dir / "a.xml").write_bytes((REPO / "fixtures/nvidia-smi/Tesla-T4_515.105.01.xml").read_bytes())
    os.mkfifo(fifo_dir / "hang.json")
    zero_dir = work / "fleet-zero"
    zero_dir.mkdir()
    (zero_dir / "zero.json").symlink_to("/dev/zero")
    loop_dir = work / "fleet-loop"
    loop_dir.mkdir()
    (loop_dir / "a.json").symlink_to(loop_dir / "b.json")
    (loop_dir / "b.json").symlink_to(loop_dir / "a.json")
    gpus = work / "empty-gpus.xml"
    body = b"<gpu/>" * ((1024 * 1024) // 6)
    gpus.write_bytes(
        b"<?xml version='1.0'?><nvidia_smi_log><driver_version>580.65.06</driver_version>"
        + body
        + b"</nvidia_smi_log>"
    )
    bomb = work / "bomb.yaml"
    bomb.write_text(ALIAS_BOMB)
    big = work / "big.json"
    with open(big, "wb") as handle:
        handle.write(b'{"node": {"driver": {}}, "pad": "')
        handle.truncate(big_mib * 1024 * 1024)
    return [
        ("fleet: FIFO named *.json", ["fleet", str(fifo_dir), "--format", "json"]),
        ("fleet: *.json -> /dev/zero", ["fleet", str(zero_dir), "--format", "json"]),
        ("fleet: two files symlinked to each other", ["fleet", str(loop_dir), "--format", "json"]),
        (
            "scan --from-nvidia-smi: 1 MB of <gpu/>",
            ["scan", "--from-nvidia-smi", str(gpus), "--format", "json"],
        ),
        ("scan --from-nvidia-smi: FIFO", ["scan", "--from-nvidia-smi", str(fifo_dir / "hang.json")]),
        ("explain: FIFO log", ["explain", str(fifo_dir / "hang.json")]),
        (f"rules lint: YAML alias bomb ({len(ALIAS_BOMB)} B)", ["rules", "lint", str(bomb)]),
        (f"scan --node: {big_mib} MiB report", ["scan", "--from-nvidia-smi", str(big)]),
        (f"fleet: {big_mib} MiB report", ["fleet", str(big), "--format", "json"]),
    ]


def run(binary: str, args: list[str]) -> tuple[float, float, int | str, str]:
    """Wall time, peak RSS (MiB) of this run alone (wait4), exit code, last stderr line."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        child = subprocess.Popen(
            [binary, *args],
            stdout=out,
            stderr=err,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30)),
        )
        code: int | str
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                code = os.waitstatus_to_exitcode(status)
                child.returncode = code
                break
            if time.perf_counter() - started > DEADLINE_S:
                child.kill()
                _, status, usage = os.wait4(child.pid, 0)
                child.returncode = -9
                code = "timeout"
                break
            time.sleep(0.02)
        elapsed = time.perf_counter() - started
        err.seek(0)
        lines = err.read().decode(errors="replace").strip().splitlines()
        out.seek(0)
        detail = lines[-1] if lines else out.read(400).decode(errors="replace").replace("\n", " ")
    if code == "timeout":
        detail = f"killed after {DEADLINE_S:g} s"
    return elapsed, usage.ru_maxrss / 1024, code, detail.strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", default=str(Path(sys.executable).parent.parent))
    parser.add_argument("--big-mib", type=int, default=200)
    args = parser.parse_args()
    binary = str(Path(args.venv) / "bin" / "gpudoctor")
    bad = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name, argv in cases(Path(tmp), args.big_mib):
            elapsed, rss, code, detail = run(binary, argv)
            worse = code in ("timeout", 70) or elapsed > DEADLINE_S or rss > RSS_LIMIT_MIB
            bad += worse
            print(
                f"{'BAD ' if worse else 'ok  '}{name:42s} {elapsed:6.2f} s {rss:6.0f} MiB  exit {code}: {detail[:140]}"
            )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
