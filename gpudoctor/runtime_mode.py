"""The NVIDIA container runtime's mode, as the toolkit release installed on a node decides it,
and what that mode means for an image's NVIDIA_REQUIRE_*.

Modes (nvidia-container-toolkit internal/info/auto.go, RuntimeMode):
  legacy   the runtime injects nvidia-container-runtime-hook, which runs
           `nvidia-container-cli configure --require=...`: libnvidia-container
           evaluates NVIDIA_REQUIRE_* and refuses the container at create.
  csv      Tegra: the runtime checks NVIDIA_REQUIRE_* itself (internal/modifier/csv.go
           checkRequirements, the Go evaluator) and refuses at create.
  cdi      the runtime applies CDI specs; NVIDIA_REQUIRE_* is never read.
  jit-cdi  the runtime generates a CDI spec in memory; NVIDIA_REQUIRE_* is never read
           (NVIDIA/nvidia-container-toolkit issue 1470, open at d34b3046).

`mode = "auto"` (the default config) resolves, per toolkit release:
  v1.10.0 .. v1.17.x   "csv" on Tegra, else "legacy"       (auto.go resolveMode)
  v1.18.0-rc.1 and on  "csv" on Tegra, else "jit-cdi"      (commit 6149592b "Default to
                                                            jit-cdi mode in the nvidia runtime")
and "cdi" in every release when a container asks only for fully-qualified CDI device names
(`nvidia.com/gpu=0`), which depends on the container, not the node. The hook invoked on its
own (Docker's `--gpus` on the runc runtime) resolves "auto" to "legacy" in every release
(commit 17c5d1dc) and refuses any other configured mode.

Fleet what-ifs set `mode_configured` / `toolkit_version` and call `refresh_mode` so the
resolution stays the toolkit's.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gpudoctor.facts import ContainerRuntimeFacts

MODES = ("legacy", "csv", "cdi", "jit-cdi")
ENFORCING_MODES = ("legacy", "csv")
_JIT_CDI_DEFAULT_FROM = (1, 18, 0)  # v1.18.0-rc.1 carries 6149592b; rc tags share 1.18.0
_RELEASE = re.compile(r"v?([0-9]{1,9})\.([0-9]{1,9})\.([0-9]{1,9})")


def release(version: str | None) -> tuple[int, int, int] | None:
    match = _RELEASE.match(version or "")
    if match is None:
        return None
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


def resolve_mode(
    configured: str | None, toolkit_version: str | None, platform: str | None
) -> tuple[str | None, str]:
    """(mode the nvidia runtime uses or None, why) for a container asking for GPUs by index/UUID."""
    if configured is None:
        return None, "the toolkit's config.toml was not found"
    if configured != "auto":
        if configured in MODES:
            return configured, f'configured mode = "{configured}"'
        return None, f'configured mode = "{configured}" is not one the runtime accepts'
    if platform == "tegra":
        return "csv", 'mode = "auto" on a Tegra platform resolves to "csv"'
    toolkit = release(toolkit_version)
    if toolkit is None:
        return None, (
            'mode = "auto" resolves to "legacy" before toolkit v1.18.0 and to "jit-cdi" from v1.18.0; '
            "the toolkit version is unknown"
        )
    default = "jit-cdi" if toolkit >= _JIT_CDI_DEFAULT_FROM else "legacy"
    since = "from" if default == "jit-cdi" else "before"
    return (
        default,
        f'mode = "auto" resolves to "{default}" {since} toolkit v1.18.0 (this node: {toolkit_version})',
    )


def toolkit_release(runtime: ContainerRuntimeFacts) -> str | None:
    """The toolkit's version, else libnvidia-container's: the toolkit releases both at one
    version (versions.mk LIB_VERSION; every release note lists the four packages at it)."""
    return runtime.toolkit_version or runtime.libnvidia_container_version


def refresh_mode(runtime: ContainerRuntimeFacts) -> None:
    """Recompute runtime.mode from its configured mode, toolkit release and platform."""
    mode, reason = resolve_mode(runtime.mode_configured, toolkit_release(runtime), runtime.platform)
    if runtime.mode_configured is None and "mode_configured" in runtime.unknown:
        reason = runtime.unknown["mode_configured"]
    runtime.mode, runtime.mode_reason = mode, reason
    if mode is None:
        runtime.unknown["mode"] = reason
    else:
        runtime.unknown.pop("mode", None)


def requirement_enforced(mode: str | None) -> bool | None:
    """Whether the toolkit evaluates NVIDIA_REQUIRE_* at container create in this mode."""
    if mode is None:
        return None
    return mode in ENFORCING_MODES


# How toolkit releases treat an image's /usr/local/cuda/compat libraries (forward compatibility):
#   before v1.17.4     legacy: libnvidia-container mounts them over the host's libcuda when newer
#                      (src/cli/compat_mode.c); cdi / jit-cdi: no support (toolkit issue 942)
#   v1.17.4            not loaded by default ("Disable mounting of compat libs from container by
#                      default", unless the allow-cuda-compat-libs-from-container feature flag is set)
#   v1.17.5 and on     loaded by the enable-cuda-compat hook in every mode ("Re-added support for
#                      CUDA Forward Compatibility", PR 906; off with the disable-cuda-compat-lib-hook
#                      feature flag)
#   v1.17.7 and on     legacy mode follows config.toml's cuda-compat-mode (ldconfig, the default;
#                      mount; hook; disabled: not loaded) (PR 1082, libnvidia-container's
#                      --cuda-compat-mode)
_COMPAT_REMOVED = (1, 17, 4)
_COMPAT_HOOK_FROM = (1, 17, 5)
_COMPAT_MODE_FROM = (1, 17, 7)


def compat_libraries_loaded(runtime: ContainerRuntimeFacts) -> tuple[bool | None, str]:
    """(whether this node's NVIDIA runtime puts the image's cuda-compat libraries before the
    host's libcuda, why). Feature flags are not read: the reason names the one that would differ."""
    toolkit = release(toolkit_release(runtime))
    mode = runtime.mode
    if toolkit is None or mode is None:
        missing = "toolkit version" if toolkit is None else "runtime mode"
        reason = runtime.unknown.get("toolkit_version" if toolkit is None else "mode") or "unknown"
        return None, (
            f"the NVIDIA container toolkit loads an image's cuda-compat libraries by default from v1.17.5 "
            f"(and in legacy mode before v1.17.4); this node's {missing} is unknown: {reason}"
        )
    shown = "v" + ".".join(str(part) for part in toolkit)
    if toolkit == _COMPAT_REMOVED:
        return False, (
            f"toolkit {shown} does not load an image's cuda-compat libraries by default "
            "(unless its allow-cuda-compat-libs-from-container feature flag is set)"
        )
    if mode in ("cdi", "jit-cdi") and toolkit < _COMPAT_HOOK_FROM:
        return (
            False,
            f"toolkit {shown} in {mode} mode has no forward-compatibility support (it came in v1.17.5)",
        )
    if mode == "legacy" and toolkit >= _COMPAT_MODE_FROM and runtime.cuda_compat_mode == "disabled":
        return False, f'toolkit {shown} in legacy mode with config.toml cuda-compat-mode = "disabled"'
    return True, (
        f"toolkit {shown} in {mode} mode loads them when their libcuda is newer than the host driver "
        "(unless its disable-cuda-compat-lib-hook feature flag is set)"
    )
