# ruff: noqa: F401, F811 - pytest fixtures imported from tests.support.services
"""The local Docker engine source against a REAL dockerd (vfs, private socket), and
the source order: engine first when it has the image, else the registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpudoctor.errors import ServiceUnavailable
from gpudoctor.images import fetch_image
from tests.support.services import (
    Dockerd,
    Registry,
    build_image,
    docker_save_tar,
    dockerd,
    push_image,
    registry,
)

pytestmark = pytest.mark.services
REPO = Path(__file__).resolve().parent.parent
ENV = json.loads(
    (REPO / "fixtures" / "images" / "nvidia-cuda_12.4.1-runtime-ubuntu2204_amd64.json").read_text()
)["env"]


@pytest.fixture(scope="module")
def loaded(dockerd: Dockerd, tmp_path_factory: pytest.TempPathFactory) -> str:
    tar = docker_save_tar(tmp_path_factory.mktemp("save") / "img.tar", ENV, "gpudoctor-test/cuda:12.4")
    dockerd.load(tar)
    return "gpudoctor-test/cuda:12.4"


def test_engine_source(dockerd: Dockerd, loaded: str) -> None:
    facts = fetch_image(loaded, source="docker", docker_host=dockerd.host)
    assert facts.source == "docker"
    assert facts.reference == "docker.io/gpudoctor-test/cuda:12.4"
    assert facts.cuda_version == "12.4.127"
    assert facts.require[0].startswith("cuda>=12.4 brand=tesla")
    assert facts.platform is not None and facts.platform.architecture == "amd64"
    assert "digest" in facts.unknown  # loaded, never pushed: no repository digest


def test_engine_without_the_image(dockerd: Dockerd) -> None:
    with pytest.raises(ServiceUnavailable, match="docker engine: no image"):
        fetch_image("gpudoctor-test/absent:1", source="docker", docker_host=dockerd.host)


def test_engine_honours_docker_host(dockerd: Dockerd, loaded: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", dockerd.host)
    assert fetch_image(loaded, source="docker").source == "docker"


def test_unreachable_engine_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(ServiceUnavailable, match="docker engine: unavailable"):
        fetch_image("ubuntu", source="docker", docker_host=f"unix://{tmp_path}/no.sock")


def test_auto_order_engine_first_then_registry(dockerd: Dockerd, registry: Registry) -> None:
    reference = f"{registry.host}/order/app:1"
    push_image(registry, "order/app", "1", build_image({"CUDA_VERSION": "12.1.1"}))
    from_registry = fetch_image(reference, insecure_registries=[registry.host], docker_host=dockerd.host)
    assert from_registry.source == "registry" and from_registry.require == ["cuda>=12.1"]
    dockerd.docker("pull", reference)  # the engine now has it (its registry is a loopback one)
    from_engine = fetch_image(reference, insecure_registries=[registry.host], docker_host=dockerd.host)
    assert from_engine.source == "docker"
    assert from_engine.digest == from_registry.digest


def test_archive_written_by_a_real_docker_save(dockerd: Dockerd, loaded: str, tmp_path: Path) -> None:
    saved = tmp_path / "saved.tar"
    dockerd.docker("save", "-o", str(saved), loaded)
    facts = fetch_image(str(saved))
    assert facts.source == "archive"
    assert facts.reference == loaded
    assert facts.cuda_version == "12.4.127" and facts.require[0].startswith("cuda>=12.4 ")
    assert facts.size_bytes is not None and facts.size_bytes > 0
