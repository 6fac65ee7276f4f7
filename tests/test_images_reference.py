"""Image reference parsing and Docker Hub normalisation, platform parsing and choice,
and image facts from real CUDA image configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpudoctor.errors import UsageError
from gpudoctor.facts import Platform
from gpudoctor.images.config import facts_from_config
from gpudoctor.images.platform import choose, parse_platform, platform_for_cpu
from gpudoctor.images.reference import parse_reference

IMAGES = Path(__file__).resolve().parent.parent / "fixtures" / "images"


@pytest.mark.parametrize(
    ("text", "normalised", "api_host"),
    [
        ("ubuntu", "docker.io/library/ubuntu:latest", "registry-1.docker.io"),
        ("ubuntu:22.04", "docker.io/library/ubuntu:22.04", "registry-1.docker.io"),
        ("vllm/vllm-openai:v0.23.0", "docker.io/vllm/vllm-openai:v0.23.0", "registry-1.docker.io"),
        (
            "docker.io/nvidia/cuda:12.4.1-base-ubuntu22.04",
            "docker.io/nvidia/cuda:12.4.1-base-ubuntu22.04",
            "registry-1.docker.io",
        ),
        ("index.docker.io/library/busybox", "docker.io/library/busybox:latest", "registry-1.docker.io"),
        ("nvcr.io/nvidia/pytorch:25.01-py3", "nvcr.io/nvidia/pytorch:25.01-py3", "nvcr.io"),
        ("localhost/app", "localhost/app:latest", "localhost"),
        ("127.0.0.1:5000/team/app:1", "127.0.0.1:5000/team/app:1", "127.0.0.1:5000"),
        ("ghcr.io/org/img@sha256:" + "a" * 64, "ghcr.io/org/img@sha256:" + "a" * 64, "ghcr.io"),
        ("host:443/a/b:t@sha256:" + "b" * 64, "host:443/a/b:t@sha256:" + "b" * 64, "host:443"),
    ],
)
def test_references_normalise_like_docker(text: str, normalised: str, api_host: str) -> None:
    ref = parse_reference(text)
    assert str(ref) == normalised
    assert ref.api_host == api_host


def test_digest_is_what_the_manifest_is_fetched_by() -> None:
    ref = parse_reference("ubuntu:22.04@sha256:" + "c" * 64)
    assert ref.manifest_ref == "sha256:" + "c" * 64
    assert parse_reference("ubuntu").manifest_ref == "latest"


@pytest.mark.parametrize("text", ["Ubuntu", "a b", "ubuntu:", "ubuntu@sha256:short", "ubuntu:-bad", "/x", ""])
def test_invalid_references_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError, match="invalid image reference"):
        parse_reference(text)


def test_platforms() -> None:
    assert parse_platform("linux/x86_64") == Platform("linux", "amd64")
    assert parse_platform("linux/arm64/v8") == Platform("linux", "arm64", "v8")
    assert platform_for_cpu("aarch64") == Platform("linux", "arm64")
    assert platform_for_cpu(None) is None
    with pytest.raises(UsageError):
        parse_platform("linux")


def test_choose_skips_attestations_and_honours_variant() -> None:
    offered = [
        Platform("unknown", "unknown"),
        Platform("linux", "arm", "v7"),
        Platform("linux", "arm64", "v8"),
    ]
    assert choose(offered, Platform("linux", "arm64")) == 2
    assert choose(offered, Platform("linux", "arm", "v6")) is None
    assert choose(offered, Platform("linux", "amd64")) is None


def _config(name: str) -> dict[str, object]:
    data = json.loads((IMAGES / f"{name}.json").read_text())
    return {
        "architecture": data["architecture"],
        "os": "linux",
        "config": {"Env": [f"{k}={v}" for k, v in data["env"].items()], "Labels": data.get("labels", {})},
    }


def test_facts_from_a_real_cuda_config() -> None:
    facts = facts_from_config(_config("nvidia-cuda_12.4.1-runtime-ubuntu2204_amd64"), "x", "registry")
    assert (
        facts.cuda_version == "12.4.127"
    )  # NV_CUDA_CUDART_VERSION=12.4.127-1, more precise than CUDA_VERSION
    assert facts.platform == Platform("linux", "amd64")
    assert facts.require[0].startswith("cuda>=12.4 brand=tesla,driver>=470,driver<471")
    assert facts.visible_devices == "all"
    assert facts.driver_capabilities == "compute,utility"
    assert facts.env_hints["nccl_version"] == "2.21.5-1"
    assert facts.env_hints["cuda_compat_package"] == "cuda-compat-12-4"
    assert facts.labels["maintainer"].startswith("NVIDIA")


def test_facts_of_a_legacy_image_and_disable_require() -> None:
    data = json.loads((IMAGES / "docker-inspect_pai_docker_inspect_sample.json").read_text())
    env = dict(data["env"])
    facts = facts_from_config({"config": {"Env": [f"{k}={v}" for k, v in env.items()]}}, "x", "docker")
    assert facts.require == ["cuda>=8.0"]
    assert facts.cuda_version == "8.0.61"
    env["NVIDIA_DISABLE_REQUIRE"] = "yes"  # not a Go boolean: the toolkit still checks
    facts = facts_from_config({"config": {"Env": [f"{k}={v}" for k, v in env.items()]}}, "x", "docker")
    assert facts.require == ["cuda>=8.0"] and facts.disable_require is False
    assert "not a Go true value" in facts.unknown["disable_require"]


def test_invalid_legacy_cuda_version_is_recorded_not_ignored() -> None:
    facts = facts_from_config({"config": {"Env": ["CUDA_VERSION=9.0.116.50"]}}, "x", "registry")
    assert facts.require == []
    assert "invalid CUDA version" in facts.unknown["require"]


def test_non_cuda_image_has_unknown_cuda_version() -> None:
    facts = facts_from_config(
        {"os": "linux", "architecture": "amd64", "config": {"Env": ["PATH=/bin"]}}, "x", "registry"
    )
    assert facts.cuda_version is None and "cuda_version" in facts.unknown
    assert facts.require == []


def test_framework_hints_of_the_real_vllm_image() -> None:
    facts_dir = IMAGES.parent / "facts" / "images"
    env = json.loads((facts_dir / "vllm-openai_v0.23.0-cuda13.0.2_amd64.json").read_text())["env"]
    facts = facts_from_config({"config": {"Env": [f"{k}={v}" for k, v in env.items()]}}, "x", "registry")
    assert facts.env_hints["vllm_version"] == "0.23.0"
    assert facts.env_hints["torch_cuda_arch_list"] == "7.5 8.0 8.6 8.9 9.0 10.0 12.0+PTX"
    assert facts.env_hints["vllm_enable_cuda_compatibility"] == "0"
    assert facts.cuda_version == "13.0.96"
