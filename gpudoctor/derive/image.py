"""Image-versus-node derived facts: CUDA runtime vs driver, NVIDIA_REQUIRE_*, platform.

`derived.cuda_runtime_path` says how the image's CUDA runtime can run on this
driver, in NVIDIA's terms:
  driver                  the driver supports the image's CUDA (backward compatibility)
  minor_version_compat    same CUDA major, driver >= the major's MVC floor (limited: no newer PTX JIT)
  forward_compat          a newer major through cuda-compat, which the image is known to carry (its
                          NV_CUDA_COMPAT_PACKAGE, or a .../compat/libcuda among its scanned binaries):
                          a GPU NVIDIA admits (data center GPU on a supported host branch, or a
                          Jetson board), and the node's container toolkit not known to skip it
  forward_compat_unverified  the same, but nothing shows cuda-compat in the image (metadata cannot
                          prove its absence): it runs only if the package is there
  forward_compat_not_loaded  the image carries cuda-compat, but this node's container toolkit is
                          known not to load it (gpudoctor.runtime_mode.compat_libraries_loaded)
  fc_unsupported_gpu      would need forward compatibility, but a GPU is not eligible (GeForce)
  fc_unsupported_branch   would need forward compatibility, but the host branch is not supported
  insufficient            none of the above: "CUDA driver version is insufficient for CUDA runtime version"
None when a needed fact is unknown (reason in derived.unknown.cuda_runtime_path).
"""

from __future__ import annotations

import re
from typing import Any

from gpudoctor.derive.platform import node_architecture
from gpudoctor.facts import ImageFacts, NodeFacts
from gpudoctor.knowledge import matrix
from gpudoctor.versions import count_from, parse_version
from gpudoctor.versions import major_minor as _major_minor

# "driver>=535,driver<536" in NVIDIA_REQUIRE_CUDA: a host branch allowed through forward compatibility
_BRANCH_TERM = re.compile(r"driver>=(\d+)(?:\.[\d.]*)?,driver<(\d+)")
# "cuda-compat-13-0" (NV_CUDA_COMPAT_PACKAGE of the official images), ".../cuda-13.0/compat/libcuda.so.*"
_COMPAT_PACKAGE = re.compile(r"cuda-compat-(\d+)-(\d+)")
_COMPAT_PATH = re.compile(r"cuda-(\d+)\.(\d+)/compat/libcuda")


def _require_cuda(image: dict[str, Any]) -> str:
    env = image.get("env") or {}
    return str(env.get("NVIDIA_REQUIRE_CUDA") or "")


def forward_compat_branches(
    image: dict[str, Any], cuda: str, package: str | None = None
) -> tuple[list[int] | None, str]:
    """Host branches allowed for forward compatibility: from the image's own brand/driver
    terms (official CUDA images list them), else from the matrix. A compat package of another
    CUDA than the image's (`package`, "13.1") has its own list: the matrix's for that package."""
    if package and _major_minor(package) != _major_minor(cuda):
        listed = matrix.forward_compat_branches(package)
        return (
            list(listed) if listed else None
        ), f"gpudoctor forward-compatibility table (cuda-compat {package})"
    pairs = [(count_from(low), count_from(high)) for low, high in _BRANCH_TERM.findall(_require_cuda(image))]
    terms = [low for low, high in pairs if low is not None and high == low + 1]
    if terms:
        return sorted(set(terms)), "image NVIDIA_REQUIRE_CUDA"
    from_matrix = matrix.forward_compat_branches(cuda)
    return (list(from_matrix) if from_matrix else None), "gpudoctor forward-compatibility table"


def cuda_compat_in_image(image: dict[str, Any]) -> tuple[bool | None, str | None, str]:
    """(present, the package's CUDA "X.Y" where it says, evidence or what was looked at).
    None, not False, when nothing shows it: image metadata cannot prove its absence."""
    env = image.get("env") or {}
    package = env.get("NV_CUDA_COMPAT_PACKAGE")
    if package:
        match = _COMPAT_PACKAGE.search(package)
        return True, f"{match[1]}.{match[2]}" if match else None, f"NV_CUDA_COMPAT_PACKAGE={package}"
    kernels = image.get("kernels") or {}
    paths = [str(b.get("path", "")) for b in kernels.get("binaries", [])]
    found = next((p for p in paths if "/compat/libcuda" in p), None)
    if found:
        match = _COMPAT_PATH.search(found)
        return True, f"{match[1]}.{match[2]}" if match else None, f"{found} among the image's binaries"
    return (
        None,
        None,
        (
            "no NV_CUDA_COMPAT_PACKAGE in the image config"
            + (" and no .../compat/libcuda among its scanned binaries" if paths else ", binaries not scanned")
        ),
    )


def _runtime_path(context: dict[str, Any], derived: dict[str, Any]) -> tuple[str | None, str | None]:
    """(path, reason-if-unknown) as documented in the module docstring."""
    image = context["image"]
    driver = context["driver"]
    image_mm = _major_minor(image.get("cuda_version"))
    if image_mm is None:
        return None, image.get("unknown", {}).get("cuda_version") or "image CUDA version unknown"
    driver_mm = _major_minor(driver.get("cuda_version"))
    driver_version = driver.get("version")
    min_driver = derived["image_min_driver"]
    if driver_mm is not None and driver_mm >= image_mm:
        return "driver", None
    if driver_version and min_driver and _ge(driver_version, min_driver):
        return "driver", None
    if driver_version is None:
        return None, driver.get("unknown", {}).get("version") or "driver version unknown"
    floor = derived["image_mvc_floor"]
    if floor is not None and _ge(driver_version, floor):
        return "minor_version_compat", None
    if driver_mm is not None and driver_mm[0] >= image_mm[0]:
        # same major but below the MVC floor: nothing helps but a newer driver
        return "insufficient", None
    gpus = context["gpus"]
    eligible = [g["derived"].get("forward_compat_eligible") for g in gpus]
    if any(e is False for e in eligible):
        return "fc_unsupported_gpu", None
    # Jetson boards take the compat package of their JetPack release (compat-orin on Orin);
    # the host-branch lists of the data center packages do not apply to them.
    jetson = bool(gpus) and all(g["derived"].get("jetson") for g in gpus)
    branches = derived["image_fc_branches"]
    branch = derived.get("driver_branch")
    if not jetson and branches is not None and branch is not None and branch not in branches:
        return "fc_unsupported_branch", None
    if derived["image_has_cuda_compat"] is False:
        return "insufficient", None
    if not eligible or any(e is None for e in eligible):
        reasons = [g["derived"].get("unknown", {}).get("forward_compat_eligible") for g in gpus]
        return None, next((r for r in reasons if r), "no GPU to check for forward-compatibility eligibility")
    if not jetson and branches is None:
        return None, "no forward-compatibility branch list for this CUDA version"
    if derived["image_has_cuda_compat"] is None:
        return "forward_compat_unverified", None
    if derived["cuda_compat_loaded"] is False:
        return "forward_compat_not_loaded", None
    return "forward_compat", None


def _ge(left: str, right: str) -> bool:
    lv, rv = parse_version(left), parse_version(right)
    return lv is not None and rv is not None and lv >= rv


# What the CUDA runtime path means for a container the toolkit does not check.
_CUDA_INIT_FAILS = (
    "insufficient",
    "fc_unsupported_gpu",
    "fc_unsupported_branch",
    "forward_compat_not_loaded",
)
# forward_compat_unverified: works if the image carries cuda-compat, which it may (official CUDA
# images do); counted as working, as GD-CUDA-003 (warn) says what to check.
_CUDA_INIT_WORKS = ("driver", "minor_version_compat", "forward_compat", "forward_compat_unverified")


def _requirements(derived: dict[str, Any], node: NodeFacts, image: ImageFacts) -> None:
    """NVIDIA_REQUIRE_* as this node's toolkit collects, evaluates and (depending on its runtime
    mode) enforces it. See docs/container-stack.md for the outcomes."""
    from gpudoctor.requirements import evaluate_requirements

    unknown = derived["unknown"]
    runtime = node.container_runtime
    requirements, error = _node_requirements(image, runtime.toolkit_version, unknown)
    derived["image_require"] = requirements
    derived["image_require_error"] = error
    requested = _gpus_requested(image)
    derived["image_gpus_requested"] = requested
    mode = runtime.mode
    derived["runtime_mode"] = mode
    if mode is None:
        unknown["runtime_mode"] = runtime.unknown.get("mode") or runtime.mode_reason or "runtime mode unknown"
    enforced, why = _enforcement(image, runtime, requested)
    derived["requirement_enforced"] = enforced
    derived["requirement_enforced_reason"] = why
    if enforced is None:
        unknown["requirement_enforced"] = why
    result = evaluate_requirements(requirements, node, gpus_requested=requested != "none")
    derived["image_require_satisfied"] = result.satisfied
    derived["image_require_message"] = result.message
    derived["image_require_invalid"] = result.invalid
    if result.satisfied is None:
        unknown["image_require_satisfied"] = (
            f"needs {', '.join(result.missing)}" if result.missing else "requirement facts unknown"
        )
    outcome = _outcome(derived, result.satisfied, enforced, requested)
    derived["image_require_outcome"] = outcome
    derived["image_require_effect"] = _effect(derived, outcome, mode, why, result.message or "")
    derived["image_require_note"] = {
        True: "The requirement is met on this node anyway.",
        False: "The requirement is not met on this node.",
        None: "Whether the requirement is met on this node is unknown.",
    }[result.satisfied]
    if outcome is None and result.satisfied is False:
        unknown["image_require_outcome"] = derived["unknown"].get("cuda_runtime_path") or (
            "whether the image's CUDA runtime works on this driver is unknown"
        )


def _node_requirements(
    image: ImageFacts, toolkit_version: str | None, unknown: dict[str, str]
) -> tuple[list[str], str | None]:
    """The --require= strings this node's toolkit release collects, and its error if it cannot."""
    from gpudoctor.requirements import (
        RequirementsError,
        RequirementsUnknown,
        collect_requirements,
        disables_require,
        is_legacy_image,
    )

    env = image.env
    if not (env and is_legacy_image(env) and not disables_require(env)):
        # CUDA_VERSION is not parsed: every toolkit release collects the same strings.
        return list(image.require), image.unknown.get("require")
    release = (
        f"nvidia-container-toolkit {toolkit_version}"
        if toolkit_version
        else "the newest nvidia-container-toolkit"
    )
    try:
        return collect_requirements(env, toolkit_version), None
    except RequirementsError as exc:
        return [], f"{release} cannot read the requirements: {exc}"
    except RequirementsUnknown as exc:
        unknown["image_require_satisfied"] = str(exc)
        return [f"cuda>={env.get('CUDA_VERSION')}"], None


_CUDA_INIT_ERROR = {
    "insufficient": 'error 35 (cudaErrorInsufficientDriver: "CUDA driver version is insufficient for CUDA runtime version")',
    "fc_unsupported_gpu": "error 804 (cudaErrorCompatNotSupportedOnDevice: forward compatibility on a GPU that "
    "does not support it) with the image's cuda-compat libraries, else error 35 (insufficient driver)",
    "fc_unsupported_branch": "error 804 (cudaErrorCompatNotSupportedOnDevice) with the image's cuda-compat "
    "libraries on a driver branch forward compatibility does not support, else error 35 (insufficient driver)",
    "forward_compat_not_loaded": "error 35 (insufficient driver): the container toolkit does not load the "
    "image's cuda-compat libraries",
}
_CUDA_PATH_WORDS = {
    "driver": "the driver's own CUDA support",
    "minor_version_compat": "minor version compatibility",
    "forward_compat": "forward compatibility (cuda-compat)",
    "forward_compat_unverified": "forward compatibility (if the image carries cuda-compat)",
}


def _effect(
    derived: dict[str, Any], outcome: str | None, mode: str | None, why: str, message: str
) -> str | None:
    """One sentence: what the user sees when the requirement is not met."""
    path = derived.get("cuda_runtime_path")
    init = _CUDA_INIT_ERROR.get(path or "", "error 35 or 804 if the driver is too old for its CUDA runtime")
    refusal = f"nvidia-container-cli: requirement error: {message}"
    if outcome == "refused":
        return f"The NVIDIA container runtime ({mode} mode) refuses to create the container: {refusal}."
    if outcome in ("refused_or_cuda_fails", "refused_or_runs"):
        then = (
            f"it starts and CUDA fails at initialisation with {init}"
            if outcome == "refused_or_cuda_fails"
            else f"it starts and its CUDA runtime works through {_CUDA_PATH_WORDS.get(path or '', path)}"
        )
        return (
            f"In legacy or csv mode the container is refused at create ({refusal}); in cdi or jit-cdi mode "
            f"(the default from toolkit v1.18) {then}. Which applies here: {why}."
        )
    if outcome == "cuda_init_fails":
        return (
            f"Not checked ({why}): the container starts, and CUDA fails at initialisation with {init}. "
            f"A legacy-mode node would refuse it: {refusal}."
        )
    if outcome == "runs_unchecked":
        return (
            f"Not checked ({why}): the container starts and its CUDA runtime works through "
            f"{_CUDA_PATH_WORDS.get(path or '', path)}; a node in legacy mode would refuse it ({refusal})."
        )
    if outcome == "no_gpu":
        return f"Not checked ({why}); the container gets no GPU unless the orchestrator sets NVIDIA_VISIBLE_DEVICES."
    return None


def _gpus_requested(image: ImageFacts) -> bool | str:
    """NVIDIA_VISIBLE_DEVICES as the image sets it (internal/config/image/devices.go):
    "", "void" -> False (not a GPU container: the hook does nothing), "none" -> "none"
    (the driver without a GPU: requirements still checked, without a device), else True.
    Unset counts as requested: the orchestrator (device plugin, docker --gpus) sets it."""
    value = image.env.get("NVIDIA_VISIBLE_DEVICES")
    if value is None:
        return True
    devices = [d.strip() for d in value.split(",") if d.strip()]
    if "all" in devices:
        return True
    if not devices or "void" in devices:
        return False
    return "none" if "none" in devices else True


def _enforcement(image: ImageFacts, runtime: Any, requested: bool | str) -> tuple[bool | None, str]:
    """(whether the toolkit checks NVIDIA_REQUIRE_* at create, why)."""
    from gpudoctor.runtime_mode import requirement_enforced

    if requested is False:
        return (
            False,
            "the image sets NVIDIA_VISIBLE_DEVICES to void/empty: no GPU is requested, the hook does nothing",
        )
    if image.disable_require:
        return False, "the image sets NVIDIA_DISABLE_REQUIRE"
    mode = runtime.mode
    enforced = requirement_enforced(mode)
    if enforced is None:
        return None, (
            "gpudoctor cannot tell the NVIDIA runtime's mode: "
            + (runtime.unknown.get("mode") or runtime.mode_reason or "no container toolkit facts")
        )
    if not enforced:
        return (
            False,
            f"runtime mode {mode}: the NVIDIA runtime never reads NVIDIA_REQUIRE_* (toolkit issue 1470)",
        )
    if mode == "legacy":
        if runtime.disable_require:
            return False, "config.toml sets disable-require = true: the hook sets NVIDIA_DISABLE_REQUIRE"
        if runtime.disable_require is None:
            return None, "runtime mode legacy, but config.toml's disable-require is unknown"
    return True, f"runtime mode {mode}: checked at container create"


def _outcome(
    derived: dict[str, Any], satisfied: bool | None, enforced: bool | None, requested: bool | str
) -> str | None:
    """What happens to an image whose requirement is not met:
      refused                   the toolkit refuses it at create (legacy / csv)
      refused_or_cuda_fails     mode unknown: refused (legacy / csv) or starts and CUDA init fails
      refused_or_runs           mode unknown: refused (legacy / csv) or starts and CUDA works (cdi / jit-cdi)
      cuda_init_fails           not checked (cdi / jit-cdi / disabled), and the CUDA runtime needs a newer driver
      runs_unchecked            not checked, and the CUDA runtime works on this driver
      no_gpu                    no GPU requested: nothing is checked, the container gets no GPU
      met                       the requirement is met
    None when whether it is met is unknown, or what follows cannot be told."""
    if satisfied is not False:
        return "met" if satisfied else None
    if requested is False:
        return "no_gpu"
    path = derived.get("cuda_runtime_path")
    cuda = "fails" if path in _CUDA_INIT_FAILS else ("works" if path in _CUDA_INIT_WORKS else None)
    if enforced is True:
        return "refused"
    if enforced is None:
        return "refused_or_runs" if cuda == "works" else "refused_or_cuda_fails"
    if cuda is None:
        return None
    return "cuda_init_fails" if cuda == "fails" else "runs_unchecked"


def _platform(context: dict[str, Any], derived: dict[str, Any]) -> None:
    image = context["image"]
    gpus = [(gpu.get("name"), gpu.get("pci_device_id")) for gpu in context["gpus"]]
    node_arch, inferred = node_architecture(context["host"].get("cpu_arch"), gpus)
    derived["node_platform_architecture"] = node_arch
    derived["node_platform_inferred"] = inferred
    chosen = (image.get("platform") or {}).get("architecture")
    offered = [p.get("architecture") for p in image.get("platforms") or [] if p.get("architecture")]
    derived["image_platform_architectures"] = offered or ([chosen] if chosen else [])
    missing = image.get("platform_not_offered") or {}
    derived["image_platform_not_offered"] = (
        "/".join(str(missing[k]) for k in ("os", "architecture", "variant") if missing.get(k)) or None
    )
    derived["image_platforms_offered"] = [
        "/".join(str(p[k]) for k in ("os", "architecture", "variant") if p.get(k))
        for p in image.get("platforms") or []
    ]
    if node_arch is None:
        derived["image_platform_matches"] = None
        derived["unknown"]["image_platform_matches"] = (
            context["host"].get("unknown", {}).get("cpu_arch", "node CPU architecture unknown")
        )
    elif chosen:
        derived["image_platform_matches"] = chosen == node_arch
    elif offered:
        derived["image_platform_matches"] = node_arch in offered
    else:
        derived["image_platform_matches"] = None
        derived["unknown"]["image_platform_matches"] = "image platform unknown"


_REQUIRE = ("derived.image_require_satisfied", "derived.requirement_enforced", "derived.cuda_runtime_path")
_SATISFIED = ("gpus", "derived.image_require")
_MODE = ("container_runtime.mode", "container_runtime.disable_require")
_COMPAT = (
    "container_runtime.toolkit_version|container_runtime.libnvidia_container_version",
    "container_runtime.mode",
    "container_runtime.cuda_compat_mode",
)

# What each derived fact is computed from (gpudoctor.derive.inputs); the image's own facts have
# no failed queries (an image that cannot be read ends the command).
INPUTS = {
    **dict.fromkeys(
        (
            "derived.image_cuda",
            "derived.image_cuda_major",
            "derived.image_min_driver",
            "derived.image_mvc_floor",
            "derived.image_fc_branches",
            "derived.image_fc_branches_source",
            "derived.image_has_cuda_compat",
            "derived.image_cuda_compat_version",
            "derived.image_cuda_compat_evidence",
            "derived.image_cuda_compat_package",
            "derived.image_gpus_requested",
            "derived.image_platform_architectures",
            "derived.image_platform_not_offered",
            "derived.image_platforms_offered",
        ),
        (),
    ),
    "derived.cuda_runtime_path": ("driver.cuda_version|driver.version",),
    "derived.image_require": ("container_runtime.toolkit_version",),
    "derived.image_require_error": ("container_runtime.toolkit_version",),
    "derived.runtime_mode": ("container_runtime.mode",),
    "derived.cuda_compat_loaded": _COMPAT,
    "derived.cuda_compat_loaded_reason": _COMPAT,
    "derived.requirement_enforced": _MODE,
    "derived.requirement_enforced_reason": _MODE,
    "derived.image_require_satisfied": _SATISFIED,
    "derived.image_require_message": _SATISFIED,
    "derived.image_require_invalid": _SATISFIED,
    "derived.image_require_note": _SATISFIED,
    "derived.image_require_outcome": _REQUIRE,
    "derived.image_require_effect": _REQUIRE,
    "derived.node_platform_architecture": ("host.cpu_arch",),
    "derived.node_platform_inferred": ("host.cpu_arch",),
    "derived.image_platform_matches": ("derived.node_platform_architecture",),
}


def _cuda_compat(
    derived: dict[str, Any], image: dict[str, Any], node: NodeFacts, image_mm: tuple[int, int] | None
) -> None:
    """What is known of the image's cuda-compat package and of this node loading it."""
    from gpudoctor.runtime_mode import compat_libraries_loaded

    present, version, evidence = cuda_compat_in_image(image)
    package_mm = _major_minor(version)
    if present and package_mm is not None and image_mm is not None and package_mm < image_mm:
        present = False  # an older package cannot serve a newer CUDA runtime
        evidence += f": older than the image's CUDA {image_mm[0]}.{image_mm[1]}"
    derived["image_has_cuda_compat"] = present
    derived["image_cuda_compat_version"] = version
    derived["image_cuda_compat_evidence"] = evidence
    wanted = package_mm or image_mm
    derived["image_cuda_compat_package"] = f"cuda-compat-{wanted[0]}-{wanted[1]}" if wanted else None
    loaded, why = compat_libraries_loaded(node.container_runtime)
    derived["cuda_compat_loaded"] = loaded
    derived["cuda_compat_loaded_reason"] = why


def derive(context: dict[str, Any], node: NodeFacts, image: ImageFacts | None) -> None:
    if image is None or context.get("image") is None:
        return
    derived = context["derived"]
    derived.setdefault("unknown", {})
    image_dict = context["image"]
    cuda = image_dict.get("cuda_version")
    mm = _major_minor(cuda)
    derived["image_cuda"] = f"{mm[0]}.{mm[1]}" if mm else None
    derived["image_cuda_major"] = mm[0] if mm else None
    derived["image_min_driver"] = matrix.min_driver_for_cuda(cuda)
    if cuda and derived["image_min_driver"] is None:
        derived["unknown"]["image_min_driver"] = f"CUDA {cuda} is not in gpudoctor's toolkit/driver table"
    derived["image_mvc_floor"] = matrix.mvc_floor(mm[0]) if mm else None
    _cuda_compat(derived, image_dict, node, mm)
    branches, branches_source = forward_compat_branches(
        image_dict, cuda or "", derived["image_cuda_compat_version"]
    )
    derived["image_fc_branches"] = branches
    derived["image_fc_branches_source"] = branches_source if branches else None
    path, reason = _runtime_path(context, derived)
    derived["cuda_runtime_path"] = path
    if path is None and cuda:
        derived["unknown"]["cuda_runtime_path"] = reason or "unknown"
    _requirements(derived, node, image)
    _platform(context, derived)
