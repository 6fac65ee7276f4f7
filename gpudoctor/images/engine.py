"""Local Docker engine source (docker SDK): images already present, no registry."""

from __future__ import annotations

import os
from typing import Any

from gpudoctor.errors import ServiceUnavailable
from gpudoctor.facts import ImageFacts
from gpudoctor.images.registry import finish

ENGINE_TIMEOUT_S = 5
DEFAULT_SOCKET = "/var/run/docker.sock"


def engine_configured(docker_host: str | None) -> bool:
    """Cheap test before importing the SDK: is there an engine to ask at all?"""
    host = docker_host or os.environ.get("DOCKER_HOST")
    if host:
        return not host.startswith("unix://") or os.path.exists(host.removeprefix("unix://"))
    return os.path.exists(DEFAULT_SOCKET)


def _client(docker_host: str | None) -> Any:
    import docker

    if docker_host:
        return docker.DockerClient(base_url=docker_host, timeout=ENGINE_TIMEOUT_S)
    return docker.from_env(timeout=ENGINE_TIMEOUT_S)


def fetch_from_engine(
    reference: str, normalised: str, docker_host: str | None, required: bool
) -> ImageFacts | None:
    """The image from the engine; None when the engine lacks it (or is absent and not `required`)."""
    import docker.errors
    import requests.exceptions

    try:
        client = _client(docker_host)
        try:
            image = client.images.get(reference)
        finally:
            client.close()
    except docker.errors.ImageNotFound:
        if required:
            raise ServiceUnavailable(
                f"docker engine: no image {reference} (pull it, or use --source registry)"
            ) from None
        return None
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
        if required:
            raise ServiceUnavailable(f"docker engine: unavailable ({exc.__class__.__name__})") from None
        return None
    attrs: dict[str, Any] = image.attrs
    digest = _repo_digest(attrs, normalised)
    facts = finish(attrs, normalised, "docker", None, digest, None, [], None)
    facts.unknown["size_bytes"] = "the engine keeps uncompressed layers; compressed size unknown"
    if digest is None:
        facts.unknown["digest"] = "image has no repository digest (built or loaded locally)"
    return facts


def _repo_digest(attrs: dict[str, Any], normalised: str) -> str | None:
    repository = normalised.split("@", 1)[0].rsplit(":", 1)[0] if "/" in normalised else normalised
    for entry in attrs.get("RepoDigests") or []:
        name, _, digest = str(entry).partition("@")
        if digest and (name == repository or repository.endswith("/" + name)):
            return digest
    return None
