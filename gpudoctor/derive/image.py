"""Image-versus-node derived facts: CUDA runtime vs driver, NVIDIA_REQUIRE_*, platform.

`derived.cuda_runtime_path` says how the image's CUDA runtime can run on this
driver, in NVIDIA's terms:
  driver                  the driver supports the image's CUDA (backward compatibility)
  minor_version_compat    same CUDA major, driver >= the major's MVC floor (limited: no newer PTX JIT)
  forward_compat          a newer major through cuda-compat: a GPU NVIDIA admits (data center GPU on a
                          supported host branch, or a Jetson board)
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
from gpudoctor.versions import major_minor as _major_minor
from gpudoctor.versions import parse_version

# "driver>=535,driver<536" in NVIDIA_REQUIRE_CUDA: a host branch allowed through forward compatibility
_BRANCH_TERM = re.compile(r"driver>=(\d+)(?:\.[\d.]*)?,driver<(\d+)")
_COMPAT_ENV = ("NV_CUDA_COMPAT_PACKAGE",)


def _require_cuda(image: dict[str, Any]) -> str:
    env = image.get("env") or {}
    return str(env.get("NVIDIA_REQUIRE_CUDA") or "")


def forward_compat_branches(image: dict[str, Any], cuda: str) -> tuple[list[int] | None, str]:
    """Host branches allowed for forward compatibility: from the image's own brand/driver
    terms (official CUDA images list them), else from the matrix."""
    terms = [
        int(low) for low, high in _BRANCH_TERM.findall(_require_cuda(image)) if int(high) == int(low) + 1
    ]
    if terms:
        return sorted(set(terms)), "image NVIDIA_REQUIRE_CUDA"
    from_matrix = matrix.forward_compat_branches(cuda)
    return (list(from_matrix) if from_matrix else None), "gpudoctor forward-compatibility table"


def _has_cuda_compat(image: dict[str, Any]) -> bool | None:
    env = image.get("env") or {}
    if any(env.get(name) for name in _COMPAT_ENV):
        return True
    kernels = image.get("kernels") or {}
    paths = [b.get("path", "") for b in kernels.get("binaries", [])]
    if any("/compat/libcuda" in p for p in paths):
        return True
    return None  # metadata alone cannot prove its absence


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
    if jetson:
        return "forward_compat", None
    if branches is None:
        return None, "no forward-compatibility branch list for this CUDA version"
    return "forward_compat", None


def _ge(left: str, right: str) -> bool:
    lv, rv = parse_version(left), parse_version(right)
    return lv is not None and rv is not None and lv >= rv


def _requirements(
    context: dict[str, Any], derived: dict[str, Any], node: NodeFacts, image: ImageFacts
) -> None:
    unknown = derived["unknown"]
    try:
        from gpudoctor.requirements import evaluate_requirements
    except ModuleNotFoundError as exc:
        if exc.name != "gpudoctor.requirements":
            raise
        for key in ("image_require_satisfied", "image_require_message", "image_require_invalid"):
            derived[key] = None
        unknown["image_require_satisfied"] = "NVIDIA_REQUIRE_* evaluation not available"
        return
    result = evaluate_requirements(list(image.require), node)
    derived["image_require_satisfied"] = result.satisfied
    derived["image_require_message"] = result.message
    derived["image_require_invalid"] = result.invalid
    if result.satisfied is None:
        missing = getattr(result, "missing", None) or []
        unknown["image_require_satisfied"] = (
            f"needs {', '.join(missing)}" if missing else result.invalid or "requirement facts unknown"
        )


def _platform(context: dict[str, Any], derived: dict[str, Any]) -> None:
    image = context["image"]
    gpus = [(gpu.get("name"), gpu.get("pci_device_id")) for gpu in context["gpus"]]
    node_arch, inferred = node_architecture(context["host"].get("cpu_arch"), gpus)
    derived["node_platform_architecture"] = node_arch
    derived["node_platform_inferred"] = inferred
    chosen = (image.get("platform") or {}).get("architecture")
    offered = [p.get("architecture") for p in image.get("platforms") or [] if p.get("architecture")]
    derived["image_platform_architectures"] = offered or ([chosen] if chosen else [])
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
    branches, branches_source = forward_compat_branches(image_dict, cuda or "")
    derived["image_fc_branches"] = branches
    derived["image_fc_branches_source"] = branches_source if branches else None
    derived["image_has_cuda_compat"] = _has_cuda_compat(image_dict)
    path, reason = _runtime_path(context, derived)
    derived["cuda_runtime_path"] = path
    if path is None and cuda:
        derived["unknown"]["cuda_runtime_path"] = reason or "unknown"
    _requirements(context, derived, node, image)
    _platform(context, derived)
