"""The container stack of a node: NVIDIA container toolkit and libnvidia-container versions,
the runtime's configured and resolved mode, Docker's and containerd's GPU settings, CDI specs.

Files are read through the FsRoot (this machine, a host mounted under --host-root, or a
recorded tree). The tools themselves (`nvidia-ctk --version`, `nvidia-container-cli
--version`) are run only when the files are this machine's own: under a root they would be
the container's binaries, not the host's. Versions then come from the package databases
(dpkg, rpm) or, for libnvidia-container, the versioned library file name.

`finish_mode(node)` resolves `mode = "auto"` once the GPU facts are in (the toolkit's
platform detection looks at NVML and the GPU names), see gpudoctor/runtime_mode.py.
"""

from __future__ import annotations

import re
from typing import Any

from gpudoctor.errors import BadInput
from gpudoctor.facts import CdiSpecFacts, ContainerRuntimeFacts, NodeFacts, mark_all, mark_failed
from gpudoctor.inputs import parse_toml
from gpudoctor.probes import runcmd
from gpudoctor.probes.cdi import DEFAULT_SPEC_DIRS, read_spec, spec_paths
from gpudoctor.probes.engines import probe_containerd, probe_docker
from gpudoctor.probes.fsroot import FsRoot, SourceUnreadable
from gpudoctor.probes.pkgdb import installed_versions
from gpudoctor.runtime_mode import refresh_mode

CDI_DIRS = DEFAULT_SPEC_DIRS
# The packaged config, then where the GPU Operator's toolkit container installs it
# (nvidia-ctk-installer: <toolkit root>/.config/nvidia-container-runtime/config.toml).
CONFIG_PATHS = (
    "/etc/nvidia-container-runtime/config.toml",
    "/usr/local/nvidia/toolkit/.config/nvidia-container-runtime/config.toml",
)
TOOLKIT_PACKAGES = ("nvidia-container-toolkit-base", "nvidia-container-toolkit")
LIBRARY_PACKAGES = ("libnvidia-container1", "libnvidia-container-tools")
LIBRARY_GLOBS = (
    "/usr/lib/x86_64-linux-gnu/libnvidia-container.so.*.*",
    "/usr/lib/aarch64-linux-gnu/libnvidia-container.so.*.*",
    "/usr/lib64/libnvidia-container.so.*.*",
    "/usr/local/nvidia/toolkit/libnvidia-container.so.*.*",
)
# go-nvlib HasTegraFiles / HasDXCore (WSL2 ships libdxcore.so under /usr/lib/wsl/lib).
TEGRA_RELEASE, TEGRA_FAMILY, WSL_DXCORE = (
    "/etc/nv_tegra_release",
    "/sys/devices/soc0/family",
    "/usr/lib/wsl/lib/libdxcore.so",
)
# "NVIDIA Container Toolkit CLI version 1.17.8" / "cli-version: 1.17.8"
_TOOLKIT_VERSION = re.compile(r"(?:CLI version|cli-version:)\s*v?(\d+\.\d+\.\d+\S*)", re.IGNORECASE)
_LIB_VERSION = re.compile(r"lib-version:\s*v?(\d+\.\d+\.\d+\S*)", re.IGNORECASE)
_LIBRARY_FILE = re.compile(r"libnvidia-container\.so\.(\d+\.\d+\.\d+)$")
_INTEGRATED_GPU_NAMES = ("(nvgpu)", "NVIDIA Thor")  # go-nvlib IsIntegratedGPUName


def parse_toolkit_version(text: str) -> str | None:
    match = _TOOLKIT_VERSION.search(text)
    return match.group(1) if match else None


def parse_lib_version(text: str) -> str | None:
    match = _LIB_VERSION.search(text)
    return match.group(1) if match else None


def probe_container_runtime(fs: FsRoot) -> ContainerRuntimeFacts:
    facts = ContainerRuntimeFacts()
    _versions(fs, facts)
    spec_dirs = _toolkit_config(fs, facts)
    probe_docker(fs, facts)
    probe_containerd(fs, facts)
    facts.cdi_specs = spec_paths(fs, spec_dirs)
    for path in facts.cdi_specs:
        try:
            facts.cdi_spec_details.append(read_spec(fs, path))
        except SourceUnreadable as exc:
            facts.cdi_spec_details.append(CdiSpecFacts(path=path, error=str(exc)))
            mark_failed(facts, "cdi_spec_details", str(exc))
    try:
        facts.platform = _files_platform(fs)
    except SourceUnreadable as exc:
        mark_failed(facts, "platform", str(exc))
    return facts


def finish_mode(node: NodeFacts) -> None:
    """Resolve the runtime mode with the toolkit's platform detection, now that NVML and the GPUs are known."""
    runtime = node.container_runtime
    if runtime.platform is None:  # no Tegra files and no WSL: NVML or integrated GPUs decide
        names = [gpu.name or "" for gpu in node.gpus]
        if any(marker in name for name in names for marker in _INTEGRATED_GPU_NAMES):
            runtime.platform = "tegra"
        elif node.driver.present:
            runtime.platform = "nvml"
        else:
            # PlatformUnknown: "auto" resolves exactly as on an NVML platform.
            runtime.platform = "unknown"
    elif runtime.platform == "tegra-files":
        # Tegra files count only without NVML (go-nvlib: hasTegraFiles && !hasNVML).
        runtime.platform = "nvml" if node.driver.present else "tegra"
    refresh_mode(runtime)


def _files_platform(fs: FsRoot) -> str | None:
    if fs.exists(WSL_DXCORE):
        return "wsl"
    family = fs.read_source(TEGRA_FAMILY) or ""
    if fs.exists(TEGRA_RELEASE) or family.lower().startswith("tegra"):
        return "tegra-files"
    return None


def _versions(fs: FsRoot, facts: ContainerRuntimeFacts) -> None:
    reasons: dict[str, list[str]] = {"toolkit_version": [], "libnvidia_container_version": []}
    if fs.is_host:
        for argv, parse, name in (
            (["nvidia-ctk", "--version"], parse_toolkit_version, "toolkit_version"),
            (["nvidia-container-cli", "--version"], parse_lib_version, "libnvidia_container_version"),
        ):
            output, reason = runcmd.run(argv)
            version = parse(output) if output else None
            if version:
                setattr(facts, name, version)
                setattr(facts, f"{name}_source", " ".join(argv))
            else:
                reasons[name].append(reason or f"{argv[0]}: version not understood")
    packages, problems, errors = installed_versions(fs, TOOLKIT_PACKAGES + LIBRARY_PACKAGES)
    for name, candidates in (
        ("toolkit_version", TOOLKIT_PACKAGES),
        ("libnvidia_container_version", LIBRARY_PACKAGES),
    ):
        if getattr(facts, name) is not None:
            continue
        found = next((packages[p] for p in candidates if p in packages), None)
        if found is not None:
            setattr(facts, name, found[0])
            setattr(facts, f"{name}_source", found[1])
            continue
        if name == "libnvidia_container_version" and _library_file_version(fs, facts):
            continue
        where = "the package databases" if not problems + errors else "; ".join(problems + errors)
        reasons[name].append(f"no {' or '.join(candidates)} package in {where}")
        if not fs.is_host:
            reasons[name].append("the tools are not run under a root (they would not be the host's)")
        if errors:  # a database that is there could not be read: the version may be in it
            mark_failed(facts, name, "; ".join(reasons[name]))
        else:
            facts.unknown[name] = "; ".join(reasons[name])


def _library_file_version(fs: FsRoot, facts: ContainerRuntimeFacts) -> bool:
    for pattern in LIBRARY_GLOBS:
        for path in fs.glob(pattern):
            match = _LIBRARY_FILE.search(path)
            if match:
                facts.libnvidia_container_version, facts.libnvidia_container_version_source = (
                    match.group(1),
                    path,
                )
                return True
    return False


def _toolkit_config(fs: FsRoot, facts: ContainerRuntimeFacts) -> tuple[str, ...]:
    """Read config.toml into facts; the CDI spec directories it names."""
    path = next((p for p in CONFIG_PATHS if fs.exists(p)), None)
    names = ("mode_configured", "disable_require", "cuda_compat_mode")
    try:
        text = fs.read_source(path) if path is not None else None
    except SourceUnreadable as exc:
        mark_all(facts, names, str(exc))
        return CDI_DIRS
    if path is None or text is None:
        if facts.toolkit_version is not None:
            # The toolkit runs on its built-in defaults (config.GetDefault): mode auto, checks on.
            facts.mode_configured, facts.disable_require = "auto", False
            facts.unknown["cuda_compat_mode"] = "no config.toml: the toolkit's built-in default"
        else:
            for name in names:
                facts.unknown[name] = (
                    "no NVIDIA container toolkit config.toml (" + ", ".join(CONFIG_PATHS) + ")"
                )
        return CDI_DIRS
    try:
        config = parse_toml(text, path)
    except BadInput as exc:
        mark_all(facts, names, str(exc))
        return CDI_DIRS
    runtime = _table(config, "nvidia-container-runtime")
    modes = _table(runtime, "modes")
    mode = runtime.get("mode", "auto")  # config.GetDefault: "auto"
    if isinstance(mode, str):
        facts.mode_configured = mode
    else:
        mark_failed(facts, "mode_configured", f"{path}: mode is not a string")
    disable = config.get("disable-require", False)
    if isinstance(disable, bool):
        facts.disable_require = disable
    else:
        mark_failed(facts, "disable_require", f"{path}: disable-require is not a boolean")
    compat = _table(modes, "legacy").get("cuda-compat-mode")
    if isinstance(compat, str):
        facts.cuda_compat_mode = compat
    else:
        facts.unknown["cuda_compat_mode"] = f"not set in {path} (toolkit v1.18+ default: ldconfig)"
    dirs = _table(modes, "cdi").get("spec-dirs")
    if isinstance(dirs, list) and all(isinstance(d, str) for d in dirs):
        return tuple(dirs)
    return CDI_DIRS


def _table(parent: dict[str, Any], key: str) -> dict[str, Any]:
    value = parent.get(key)
    return value if isinstance(value, dict) else {}
