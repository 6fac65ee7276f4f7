"""On a real GPU: do gpudoctor's native/jit/none predictions hold for every fixture?

For each binary in fixtures/fatbins/bin, every fatbin container of its
.nv_fatbin section is written out and loaded with cuModuleLoadData by
./launcher (driver API), once normally and once with CUDA_FORCE_PTX_JIT=1
(the driver then ignores cubins and must JIT the PTX). A prediction of
native/jit must load and launch; none must fail with CUDA_ERROR_NO_BINARY_FOR_GPU
("no kernel image is available for execution on the device") or, for PTX
newer than the driver, CUDA_ERROR_UNSUPPORTED_PTX_VERSION. Executables are
also run directly. Needs only python3 (stdlib) with the repo on PYTHONPATH.

  python3 tools/h200_kernel_check/check.py --launcher PATH --out DIR [--dry-run]
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from gpudoctor.kernels.compat import verdict  # noqa: E402
from gpudoctor.kernels.cubin import EM_CUDA  # noqa: E402
from gpudoctor.kernels.elf import read_elf  # noqa: E402
from gpudoctor.kernels.fatbin import FATBIN_MAGIC_BYTES  # noqa: E402
from gpudoctor.kernels.scan import scan_path  # noqa: E402

BINARIES = REPO / "fixtures" / "fatbins" / "bin"
NO_KERNEL = {"CUDA_ERROR_NO_BINARY_FOR_GPU", "CUDA_ERROR_UNSUPPORTED_PTX_VERSION", "CUDA_ERROR_INVALID_PTX"}
TIMEOUT_S = 120


def containers(path: Path) -> list[bytes]:
    """Loadable images: a bare fatbin or cubin as is, else each .nv_fatbin container
    (static libraries and relocatable objects need linking first: skipped)."""
    data = path.read_bytes()
    if data[:4] == FATBIN_MAGIC_BYTES:
        return [data]
    if data[:4] != b"\x7fELF":
        return []
    elf = read_elf(data)
    if elf.machine == EM_CUDA:
        return [data]
    section = elf.section(".nv_fatbin")
    if section is None:
        return []
    found, offset = [], section.offset
    while offset + 16 <= section.end:
        offset = data.find(FATBIN_MAGIC_BYTES, offset, section.end)
        if offset < 0:
            break
        header_size, body_size = struct.unpack_from("<HQ", data, offset + 6)
        found.append(data[offset : offset + header_size + body_size])
        offset += header_size + body_size
    return found


def launch(launcher: str, files: list[str], force_jit: bool) -> tuple[str, dict[str, tuple[str, str, str]]]:
    env = dict(os.environ)
    env.pop("CUDA_FORCE_PTX_JIT", None)
    if force_jit:
        env["CUDA_FORCE_PTX_JIT"] = "1"
    done = subprocess.run([launcher, *files], capture_output=True, text=True, timeout=TIMEOUT_S, env=env)
    header, results = "", {}
    for line in done.stdout.splitlines():
        if line.startswith("#"):
            header = line
            continue
        name, load, run, kernel = line.split(" ")
        results[name] = (load.split("=", 1)[1], run.split("=", 1)[1], kernel.split("=", 1)[1])
    if done.returncode != 0:
        raise SystemExit(f"launcher failed ({done.returncode}): {done.stderr.strip()}")
    return header, results


def outcome(files: list[str], results: dict[str, tuple[str, str, str]]) -> str:
    """'runs' when some container loads and launches a fixture kernel, else the load errors."""
    errors = set()
    for name in files:
        load, run, kernel = results[name]
        if load == "CUDA_SUCCESS" and run == "CUDA_SUCCESS" and kernel != "-":
            return "runs"
        errors.add(load if load != "CUDA_SUCCESS" else f"launch:{run}")
    return ",".join(sorted(errors)) or "no-containers"


def agrees(prediction: str, observed: str) -> bool:
    if prediction in ("native", "jit"):
        return observed == "runs"
    return observed != "runs" and bool(set(observed.split(",")) & NO_KERNEL)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--launcher", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cc", default="9.0")
    parser.add_argument("--dry-run", action="store_true", help="predictions and extraction only (no GPU)")
    args = parser.parse_args()
    work = args.out / "containers"
    work.mkdir(parents=True, exist_ok=True)
    driver_cuda, header = None, "# dry run"
    if not args.dry_run:
        header, _ = launch(args.launcher, [], False)
        driver_cuda = header.split("driver_cuda=")[1].split()[0]
    rows, mismatches = [], 0
    for binary in sorted(BINARIES.iterdir()):
        facts = scan_path(str(binary))
        files = []
        for index, blob in enumerate(containers(binary)):
            target = work / f"{binary.name}.{index}.fatbin"
            target.write_bytes(blob)
            files.append(str(target))
        ptx_only = [e for e in facts.fatbin_entries if e.kind == "ptx"]
        row = {
            "binary": binary.name,
            "containers": len(files),
            "predicted": verdict(facts.fatbin_entries, args.cc, driver_cuda),
            "predicted_force_jit": verdict(ptx_only, args.cc, driver_cuda),
        }
        if files and not args.dry_run:
            _, normal = launch(args.launcher, files, False)
            _, forced = launch(args.launcher, files, True)
            row["observed"] = outcome(files, normal)
            row["observed_force_jit"] = outcome(files, forced)
            row["agrees"] = agrees(row["predicted"], row["observed"]) and agrees(
                row["predicted_force_jit"], row["observed_force_jit"]
            )
            mismatches += not row["agrees"]
        if os.access(binary, os.X_OK) and not binary.name.endswith(".so") and not args.dry_run:
            ran = subprocess.run([str(binary)], capture_output=True, text=True, timeout=TIMEOUT_S)
            row["executable"] = f"rc={ran.returncode} {ran.stdout.strip() or ran.stderr.strip()}"
        rows.append(row)
        print(json.dumps(row))
    summary = {"device": header, "cc": args.cc, "rows": rows, "mismatches": mismatches}
    (args.out / "h200_kernel_check.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{header}\nmismatches: {mismatches} of {sum('agrees' in r for r in rows)} checked")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
