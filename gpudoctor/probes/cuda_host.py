"""CUDA toolkits and libcudart copies installed on the host.

A host toolkit does not decide what a container can run (the driver does),
but a stray old libcudart on the library path is a classic cause of "CUDA
driver version is insufficient" outside containers.
"""

from __future__ import annotations

import re

from gpudoctor.errors import BadInput
from gpudoctor.facts import CudaHostFacts, CudartFacts, CudaToolkitFacts, mark_failed
from gpudoctor.inputs import parse_json
from gpudoctor.probes.fsroot import FsRoot, SourceUnreadable

LIB_DIRS = (
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/usr/local/lib",
    "/usr/local/cuda*/lib64",
    "/usr/local/cuda*/targets/*/lib",
)
_CUDART = re.compile(r"libcudart\.so\.(\d+(?:\.\d+)*)$")
_VERSION_TXT = re.compile(r"CUDA Version\s+(\d+(?:\.\d+)*)")


def toolkit_version(fs: FsRoot, toolkit: str) -> str | None:
    """From version.json, else version.txt; SourceUnreadable when the file that is there cannot be read."""
    text = fs.read_source(f"{toolkit}/version.json")
    if text is not None:
        try:
            version = parse_json(text, "version.json").get("cuda", {}).get("version")
        except (BadInput, AttributeError):
            version = None
        if isinstance(version, str):
            return version
    # CUDA <= 10.x ship version.txt: "CUDA Version 10.1.243".
    match = _VERSION_TXT.search(fs.read_source(f"{toolkit}/version.txt") or "")
    return match.group(1) if match else None


def probe_cuda_host(fs: FsRoot) -> CudaHostFacts:
    facts = CudaHostFacts()
    for toolkit in fs.glob("/usr/local/cuda*"):
        if fs.path(toolkit).is_symlink() or not fs.path(toolkit).is_dir():
            continue  # /usr/local/cuda -> cuda-12.4 is the same toolkit
        name = f"toolkits[{len(facts.toolkits)}].version"
        facts.toolkits.append(CudaToolkitFacts(path=toolkit))
        try:
            facts.toolkits[-1].version = toolkit_version(fs, toolkit)
        except SourceUnreadable as exc:
            mark_failed(facts, name, str(exc))  # this toolkit's version only; the others stand
            continue
        if facts.toolkits[-1].version is None:
            facts.unknown[name] = f"{toolkit}: no version.json or version.txt"
    seen: set[str] = set()
    for directory in LIB_DIRS:
        for path in fs.glob(f"{directory}/libcudart.so.*"):
            real = fs.realpath(path) or path
            if real in seen:
                continue
            seen.add(real)
            # The real file carries the full version: libcudart.so.12.4.127.
            match = _CUDART.search(real.rsplit("/", 1)[-1]) or _CUDART.search(path.rsplit("/", 1)[-1])
            facts.cudart.append(CudartFacts(path=path, version=match.group(1) if match else None))
    return facts
