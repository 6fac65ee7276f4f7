"""Container-stack derived facts: stale CDI specs, the ways a GPU container can get GPUs,
and the toolkit release the CVE rules compare.

  derived.cdi_nvidia_specs     NVIDIA CDI specs (kind nvidia.com/*) read without error
  derived.cdi_stale_specs      those naming another driver version than the installed one,
                               as "path (driver X)"; None when the installed version is unknown
  derived.gpu_container_engines  engines configured on the node ("docker", "containerd")
  derived.gpu_container_paths  how a GPU container gets GPUs here (nvidia runtime of an engine,
                               a CDI spec, Docker's --gpus through the toolkit's hook); None
                               when none is found but a fact that could add one is unknown
  derived.toolkit_release      the toolkit version, else libnvidia-container's: the toolkit
                               ships both at one version (versions.mk LIB_VERSION, one
                               release note per version listing all four packages)
"""

from __future__ import annotations

from typing import Any

from gpudoctor.facts import ImageFacts, NodeFacts

_RUNTIME = "container_runtime."
_ENGINES = (_RUNTIME + "docker_default_runtime", _RUNTIME + "containerd_default_runtime")

# What each derived fact is computed from (gpudoctor.derive.inputs).
INPUTS = {
    "derived.cdi_nvidia_specs": (_RUNTIME + "cdi_spec_details",),
    "derived.cdi_stale_specs": ("driver.version", _RUNTIME + "cdi_spec_details"),
    "derived.gpu_container_engines": _ENGINES,
    "derived.gpu_container_paths": (
        *_ENGINES,
        _RUNTIME + "docker_nvidia_runtime",
        _RUNTIME + "containerd_nvidia_runtime",
        _RUNTIME + "cdi_spec_details",
        f"{_RUNTIME}toolkit_version|{_RUNTIME}mode_configured",
    ),
    "derived.toolkit_release": (f"{_RUNTIME}toolkit_version|{_RUNTIME}libnvidia_container_version",),
    "derived.toolkit_release_source": (f"{_RUNTIME}toolkit_version|{_RUNTIME}libnvidia_container_version",),
}


def derive(context: dict[str, Any], node: NodeFacts, image: ImageFacts | None) -> None:
    derived = context["derived"]
    unknown = derived.setdefault("unknown", {})
    runtime = node.container_runtime
    specs = [
        s for s in runtime.cdi_spec_details if s.error is None and (s.kind or "").startswith("nvidia.com/")
    ]
    derived["cdi_nvidia_specs"] = [s.path for s in specs]
    installed = node.driver.version
    if installed is None:
        derived["cdi_stale_specs"] = None
        unknown["cdi_stale_specs"] = node.driver.unknown.get("version", "driver version unknown")
    else:
        derived["cdi_stale_specs"] = [
            f"{s.path} (driver {s.driver_version})"
            for s in specs
            if s.driver_version and s.driver_version != installed
        ]
    _paths(derived, unknown, runtime, specs)
    if runtime.toolkit_version:
        derived["toolkit_release"] = runtime.toolkit_version
        derived["toolkit_release_source"] = runtime.toolkit_version_source or "nvidia-container-toolkit"
    elif runtime.libnvidia_container_version:
        derived["toolkit_release"] = runtime.libnvidia_container_version
        derived["toolkit_release_source"] = (
            f"libnvidia-container {runtime.libnvidia_container_version} "
            f"({runtime.libnvidia_container_version_source}), released with the toolkit at one version"
        )
    else:
        derived["toolkit_release"] = derived["toolkit_release_source"] = None
        unknown["toolkit_release"] = runtime.unknown.get("toolkit_version", "toolkit version unknown")


def _paths(derived: dict[str, Any], unknown: dict[str, str], runtime: Any, specs: list[Any]) -> None:
    engines = [
        name
        for name, default in (
            ("docker", runtime.docker_default_runtime),
            ("containerd", runtime.containerd_default_runtime),
        )
        if default is not None
    ]
    derived["gpu_container_engines"] = engines
    paths: list[str] = []
    open_questions: list[str] = []
    if runtime.docker_nvidia_runtime:
        paths.append("Docker runtime nvidia")
    if runtime.containerd_nvidia_runtime:
        paths.append("containerd runtime nvidia")
    if specs:
        paths.append("CDI spec " + ", ".join(s.path for s in specs))
    if "docker" in engines:
        if runtime.toolkit_version or runtime.mode_configured:
            paths.append("docker run --gpus (Docker calls nvidia-container-runtime-hook)")
        elif "toolkit_version" in runtime.unknown and "mode_configured" not in runtime.unknown:
            open_questions.append(
                f"whether the toolkit's hook is installed: {runtime.unknown['toolkit_version']}"
            )
    for name in ("docker_nvidia_runtime", "containerd_nvidia_runtime"):
        engine = name.split("_")[0]
        if getattr(runtime, name) is None and engine in engines:
            open_questions.append(f"{name}: {runtime.unknown.get(name, 'unknown')}")
    if not paths and open_questions:
        derived["gpu_container_paths"] = None
        unknown["gpu_container_paths"] = "; ".join(open_questions)
    else:
        derived["gpu_container_paths"] = paths
