"""Kernel coverage per GPU, derived from the image's fatbin scan (`--deep`).

Per GPU `gpu.derived.*` (all null, with a reason in `gpu.derived.unknown`,
when the image was not scanned or the GPU's compute capability is unknown):
  kernel_none          binaries with device code but no kernel for this GPU (not even
                       with a newer driver)
  kernel_jit_only      binaries that run on this GPU only through PTX JIT
  kernel_unknown       binaries whose PTX JIT support by this driver cannot be told
  kernel_ptx_too_new   binaries in kernel_none that only lack a driver new enough to
                       JIT their PTX (CUDA_ERROR_UNSUPPORTED_PTX_VERSION, 222)
  torch_no_kernel      "torch 2.14.1+cu130" when torch's CUDA libraries have no
                       kernel for this GPU, else null-free "" (empty string)
  flash_attn_fallback  "flash-attn 2.8.3 (fa3)" when flash-attn's kernels do not
                       cover this GPU: attention falls back to a slower path
  kernel_sm            "sm_90" for messages
Node-wide `derived.kernels_scanned`: true when image.kernels is present;
`derived.kernels_unread`: [] when every binary was read; null when some could
not be (their kernels are unknown), with "path: error" for each in
`derived.unknown.kernels_unread`, so a rule testing it is unknown, never ok.
"""

from __future__ import annotations

from typing import Any

from gpudoctor.facts import ImageFacts, KernelScanFacts, NodeFacts

_FLASH_ATTN = ("flash-attn", "flash-attn-3", "flash-attn-4")
_PER_GPU = (
    "kernel_none",
    "kernel_jit_only",
    "kernel_unknown",
    "kernel_ptx_too_new",
    "torch_no_kernel",
    "flash_attn_fallback",
    "kernel_sm",
)


_GPU_CC = "gpus[{gpu}].derived.compute_capability"
_JIT = (_GPU_CC, "driver.cuda_version")  # whether this driver can JIT the PTX

# What each derived fact is computed from (gpudoctor.derive.inputs).
INPUTS = {
    "derived.kernels_scanned": (),
    "derived.kernels_unread": (),
    "gpus[{gpu}].derived.kernel_none": (_GPU_CC,),
    "gpus[{gpu}].derived.kernel_jit_only": _JIT,
    "gpus[{gpu}].derived.kernel_unknown": _JIT,
    "gpus[{gpu}].derived.kernel_ptx_too_new": _JIT,
    "gpus[{gpu}].derived.torch_no_kernel": (_GPU_CC,),
    "gpus[{gpu}].derived.flash_attn_fallback": (_GPU_CC,),
    "gpus[{gpu}].derived.kernel_sm": (_GPU_CC,),
}


def derive(context: dict[str, Any], node: NodeFacts, image: ImageFacts | None) -> None:
    scan = image.kernels if image is not None else None
    context["derived"]["kernels_scanned"] = scan is not None
    failed = unreadable(scan) if scan is not None else []
    context["derived"]["kernels_unread"] = None if failed else []
    if failed:
        context["derived"].setdefault("unknown", {})["kernels_unread"] = "could not read " + "; ".join(failed)
    driver_cuda = node.driver.cuda_version
    for gpu in context["gpus"]:
        derived = gpu["derived"]
        unknown = derived.setdefault("unknown", {})
        cc = gpu.get("compute_capability") or derived.get("compute_capability")
        reason = None
        if scan is None:
            reason = (image.unknown.get("kernels") if image is not None else None) or (
                "image not scanned for kernels (use --deep)"
            )
        elif not cc:
            reason = "compute capability unknown"
        elif not _targetable(str(cc)):
            reason = f"compute capability {str(cc)[:20]!r} is none device code can be built for"
        if reason is not None:
            for name in _PER_GPU:
                derived[name] = None
                unknown[name] = reason
            continue
        derived.update(coverage(scan, str(cc), driver_cuda))


def _targetable(cc: str) -> bool:
    from gpudoctor.kernels.compat import cc_number, targetable

    try:
        return targetable(cc_number(cc))
    except ValueError:
        return False


def unreadable(scan: KernelScanFacts) -> list[str]:
    found = [f"{binary.path}: {binary.error}" for binary in scan.binaries if binary.error]
    return found + [error.message for error in scan.errors]


def coverage(scan: KernelScanFacts, cc: str, driver_cuda: str | None) -> dict[str, Any]:
    """The per-GPU derived facts for one compute capability."""
    from gpudoctor.kernels.compat import JIT, NONE, UNKNOWN, cc_number, verdict

    verdicts = {
        binary.path: verdict(binary.fatbin_entries, cc, driver_cuda)
        for binary in scan.binaries
        if binary.error is None and binary.fatbin_entries
    }
    entries = {binary.path: binary.fatbin_entries for binary in scan.binaries}
    owners = {binary.path: binary.package for binary in scan.binaries}
    packages = {package.name: package for package in scan.packages}

    def package_without_kernel(names: tuple[str, ...]) -> str:
        """'name version' when the package has device code and none of it runs here."""
        for name in names:
            paths = [path for path, owner in owners.items() if owner == name and path in verdicts]
            if paths and all(verdicts[path] == NONE for path in paths):
                package = packages.get(name)
                label = f"{name} {package.version}" if package and package.version else name
                generation = package.detail.get("flash_attn_generation") if package else None
                return f"{label} ({generation})" if generation else label
        return ""

    too_new = sorted(
        path for path, v in verdicts.items() if v == NONE and verdict(entries[path], cc, None) == JIT
    )
    return {
        "kernel_none": sorted(path for path, v in verdicts.items() if v == NONE and path not in too_new),
        "kernel_jit_only": sorted(path for path, v in verdicts.items() if v == JIT),
        "kernel_unknown": sorted(path for path, v in verdicts.items() if v == UNKNOWN),
        "kernel_ptx_too_new": too_new,
        "torch_no_kernel": package_without_kernel(("torch",)),
        "flash_attn_fallback": package_without_kernel(_FLASH_ATTN),
        "kernel_sm": f"sm_{cc_number(cc)}",
    }
