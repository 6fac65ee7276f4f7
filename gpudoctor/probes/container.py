"""Container runtime: NVIDIA Container Toolkit version, Docker's runtimes, CDI specs."""

from __future__ import annotations

import json
import re

from gpudoctor.facts import ContainerRuntimeFacts
from gpudoctor.probes import runcmd
from gpudoctor.probes.fsroot import FsRoot

CDI_DIRS = ("/etc/cdi", "/var/run/cdi")
# "NVIDIA Container Toolkit CLI version 1.17.8" / "cli-version: 1.17.8"
_TOOLKIT_VERSION = re.compile(r"(?:CLI version|cli-version:)\s*v?(\d+\.\d+\.\d+\S*)", re.IGNORECASE)


def parse_toolkit_version(text: str) -> str | None:
    match = _TOOLKIT_VERSION.search(text)
    return match.group(1) if match else None


def probe_container_runtime(fs: FsRoot) -> ContainerRuntimeFacts:
    facts = ContainerRuntimeFacts()
    _toolkit(fs, facts)
    _docker(fs, facts)
    for directory in CDI_DIRS:
        facts.cdi_specs.extend(p for p in fs.glob(f"{directory}/*") if p.endswith((".yaml", ".yml", ".json")))
    return facts


def _toolkit(fs: FsRoot, facts: ContainerRuntimeFacts) -> None:
    if not fs.is_host:
        facts.unknown["toolkit_version"] = "binaries are not run under --sysfs-root"
        return
    reasons = []
    for argv in (["nvidia-ctk", "--version"], ["nvidia-container-cli", "--version"]):
        output, reason = runcmd.run(argv)
        version = parse_toolkit_version(output) if output else None
        if version:
            facts.toolkit_version = version
            return
        reasons.append(reason or f"{argv[0]}: version not understood")
    facts.unknown["toolkit_version"] = "; ".join(reasons)


def _docker(fs: FsRoot, facts: ContainerRuntimeFacts) -> None:
    text = fs.read_text("/etc/docker/daemon.json")
    if text is None:
        reason = "/etc/docker/daemon.json absent"
        facts.docker_nvidia_runtime = False if fs.exists("/etc/docker") else None
        if facts.docker_nvidia_runtime is None:
            facts.unknown["docker_nvidia_runtime"] = reason
        facts.unknown["docker_default_runtime"] = reason
        return
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        reason = f"/etc/docker/daemon.json is not valid JSON: {exc}"
        facts.unknown["docker_nvidia_runtime"] = reason
        facts.unknown["docker_default_runtime"] = reason
        return
    runtimes = config.get("runtimes") if isinstance(config, dict) else None
    facts.docker_nvidia_runtime = isinstance(runtimes, dict) and "nvidia" in runtimes
    default = config.get("default-runtime") if isinstance(config, dict) else None
    # Docker's own default when daemon.json does not name one.
    facts.docker_default_runtime = default if isinstance(default, str) else "runc"
