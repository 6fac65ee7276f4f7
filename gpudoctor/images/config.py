"""Image facts from an image config (env, labels, platform): what preflight reads."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from gpudoctor.facts import ImageFacts, Platform
from gpudoctor.requirements import (
    DISABLE_REQUIRE,
    RequirementsError,
    collect_requirements,
    disables_require,
)

# The CUDA runtime in the image, most specific first.
_CUDA_ENV = ("NV_CUDA_CUDART_VERSION", "CUDA_VERSION", "NVIDIA_CUDA_VERSION", "CUDA_DRIVER_VERSION")
_VERSION = re.compile(r"\d+(?:\.\d+)+")
_IMAGE_TAG_VERSION = re.compile(r":v?(\d+\.\d+(?:\.\d+)*)")  # "vllm/vllm-openai:v0.23.0" -> 0.23.0

# hint name -> env vars / labels that carry it, first found wins
_HINTS: dict[str, tuple[str, ...]] = {
    "torch_version": ("PYTORCH_VERSION", "PYTORCH_BUILD_VERSION", "TORCH_VERSION"),
    "nvidia_pytorch_version": ("NVIDIA_PYTORCH_VERSION",),
    "torch_cuda_arch_list": ("TORCH_CUDA_ARCH_LIST",),
    "cudnn_version": ("CUDNN_VERSION", "NV_CUDNN_VERSION"),
    "nccl_version": ("NCCL_VERSION", "NV_LIBNCCL_PACKAGE_VERSION"),
    "cublas_version": ("NV_LIBCUBLAS_VERSION",),
    "tensorrt_version": ("TRT_VERSION", "TENSORRT_VERSION"),
    "tensorrt_llm_version": ("TRTLLM_VERSION", "TENSORRT_LLM_VERSION", "TRT_LLM_VERSION"),
    "vllm_version": ("VLLM_VERSION",),
    "vllm_image_tag": ("VLLM_IMAGE_TAG",),
    "vllm_enable_cuda_compatibility": ("VLLM_ENABLE_CUDA_COMPATIBILITY",),
    "tensorflow_version": ("TENSORFLOW_VERSION", "TF_VERSION"),
    "sglang_version": ("SGLANG_VERSION",),
    "triton_server_version": ("TRITON_SERVER_VERSION",),
    "nvidia_build_id": ("NVIDIA_BUILD_ID",),
    "nvidia_product_name": ("NVIDIA_PRODUCT_NAME",),
    "cuda_compat_package": ("NV_CUDA_COMPAT_PACKAGE",),
    "cuda_arch_list": ("CUDA_ARCH_LIST", "CMAKE_CUDA_ARCHITECTURES"),
}
# OCI/label-schema labels that name what the image is
_LABEL_HINTS = {
    "image_title": ("org.opencontainers.image.title",),
    "image_version": ("org.opencontainers.image.version", "com.nvidia.build.id"),
    "image_source": ("org.opencontainers.image.source",),
}


def env_dict(entries: Any) -> dict[str, str]:
    """Config `Env` ["K=V", ...] -> dict; later entries win, as in the runtime."""
    env: dict[str, str] = {}
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, str):
            name, _, value = entry.partition("=")
            if name:
                env[name] = value
    return env


def _cuda_version(env: Mapping[str, str]) -> str | None:
    for name in _CUDA_ENV:
        match = _VERSION.match(env.get(name, ""))
        if match:
            return match.group(0)
    return None


def _hints(env: Mapping[str, str], labels: Mapping[str, str]) -> dict[str, str]:
    hints: dict[str, str] = {}
    for hint, names in _HINTS.items():
        value = next((env[n] for n in names if env.get(n)), None)
        if value:
            hints[hint] = value
    tag = _IMAGE_TAG_VERSION.search(hints.get("vllm_image_tag", ""))
    if tag and "vllm_version" not in hints:
        hints["vllm_version"] = tag.group(1)
    for hint, names in _LABEL_HINTS.items():
        value = next((labels[n] for n in names if labels.get(n)), None)
        if value:
            hints[hint] = value
    return hints


def facts_from_config(config: Mapping[str, Any], reference: str, source: str) -> ImageFacts:
    """ImageFacts from an OCI/Docker image config document (or docker inspect's form)."""
    inner = config.get("config") or config.get("Config") or {}
    inner = inner if isinstance(inner, Mapping) else {}
    env = env_dict(inner.get("Env"))
    raw_labels = inner.get("Labels")
    labels = {str(k): str(v) for k, v in raw_labels.items()} if isinstance(raw_labels, Mapping) else {}
    facts = ImageFacts(reference=reference, source=source, env=env, labels=labels)
    os_name = config.get("os") or config.get("Os")
    arch = config.get("architecture") or config.get("Architecture")
    if isinstance(os_name, str) and isinstance(arch, str):
        variant = config.get("variant") or config.get("Variant")
        facts.platform = Platform(
            os=os_name, architecture=arch, variant=variant if isinstance(variant, str) else None
        )
    facts.cuda_version = _cuda_version(env)
    if facts.cuda_version is None:
        facts.unknown["cuda_version"] = "no CUDA version in the image environment (not a CUDA base image?)"
    facts.disable_require = disables_require(env)
    try:
        facts.require = collect_requirements(env)
    except RequirementsError as exc:
        # The toolkit's hook aborts container start here ("failed to get requirements").
        facts.unknown["require"] = f"nvidia-container-toolkit cannot read the requirements: {exc}"
    if DISABLE_REQUIRE in env and not facts.disable_require:
        facts.unknown.setdefault(
            "disable_require",
            f"{DISABLE_REQUIRE}={env[DISABLE_REQUIRE]!r} is not a Go true value: checks stay on",
        )
    rootfs = config.get("rootfs") or config.get("RootFS")  # docker inspect: RootFS.Layers
    layers = rootfs.get("diff_ids") or rootfs.get("Layers") if isinstance(rootfs, Mapping) else None
    facts.diff_ids = [str(layer) for layer in layers] if isinstance(layers, list) else []
    facts.visible_devices = env.get("NVIDIA_VISIBLE_DEVICES")
    facts.driver_capabilities = env.get("NVIDIA_DRIVER_CAPABILITIES")
    facts.env_hints = _hints(env, labels)
    return facts
