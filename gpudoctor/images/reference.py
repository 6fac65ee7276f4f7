"""Image references: parsing and Docker Hub normalisation (as docker/distribution does).

`ubuntu` -> docker.io/library/ubuntu:latest; `host:5000/team/app@sha256:...` keeps
its registry and digest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gpudoctor.errors import UsageError

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
DEFAULT_TAG = "latest"

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST = r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}"  # compiled on first use: tags are commoner
_HOST = re.compile(
    r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
)


def api_host(registry: str) -> str:
    """Where the registry API answers (Docker Hub's API is not at docker.io)."""
    return DOCKER_HUB_API if registry == DOCKER_HUB else registry


@dataclass(frozen=True)
class Reference:
    registry: str  # "docker.io", "127.0.0.1:5000"
    repository: str  # "library/ubuntu"
    tag: str | None
    digest: str | None

    @property
    def api_host(self) -> str:
        return api_host(self.registry)

    @property
    def manifest_ref(self) -> str:
        """What goes after /manifests/: the digest when pinned, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse_reference(text: str) -> Reference:
    """Parse and normalise; UsageError (64) with a one-line reason when invalid."""
    original = text
    digest = None
    if "@" in text:
        text, digest = text.split("@", 1)
        if not re.fullmatch(_DIGEST, digest):
            raise UsageError(f"invalid image reference {original!r}: bad digest")
    tag = None
    slash = text.rfind("/")
    colon = text.rfind(":")
    if colon > slash:
        text, tag = text[:colon], text[colon + 1 :]
        if not _TAG.fullmatch(tag):
            raise UsageError(f"invalid image reference {original!r}: bad tag")
    first, _, rest = text.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        if not _HOST.fullmatch(first):
            raise UsageError(f"invalid image reference {original!r}: bad registry host")
        registry, path = first, rest
    else:
        registry, path = DOCKER_HUB, text
    if registry in ("index.docker.io", "registry-1.docker.io"):
        registry = DOCKER_HUB
    if registry == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if not _REPOSITORY.fullmatch(path):
        raise UsageError(
            f"invalid image reference {original!r}: repository names are lower-case [a-z0-9._/-]"
        )
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return Reference(registry=registry, repository=path, tag=tag, digest=digest)
