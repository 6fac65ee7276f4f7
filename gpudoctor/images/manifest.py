"""Manifests and indexes (Docker v2 schema 2, manifest list, OCI manifest and index):
parsing, digest checks and size caps. Shared by the registry and archive sources."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from gpudoctor.errors import BadInput
from gpudoctor.facts import Platform
from gpudoctor.inputs import parse_json

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
INDEX_TYPES = (DOCKER_LIST, OCI_INDEX)
MANIFEST_TYPES = (DOCKER_MANIFEST, OCI_MANIFEST)
ACCEPT = ", ".join((OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST))

# Real manifests are a few KB, large indexes tens of KB and configs rarely above
# 100 KB; anything far larger is not an image description.
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_CONFIG_BYTES = 8 * 1024 * 1024

# The digest algorithms the OCI image spec registers, with their encoded form. A digest is
# checked against this before it is used for anything (a URL, a path in a layout, a
# comparison): `md5:...`, `foo:...`, `sha256:../../x` are bad data, never used unverified.
# https://github.com/opencontainers/image-spec/blob/main/descriptor.md#registered-algorithms
_DIGEST = {"sha256": re.compile(r"[a-f0-9]{64}"), "sha512": re.compile(r"[a-f0-9]{128}")}


@dataclass
class Descriptor:
    media_type: str | None
    digest: str
    size: int | None
    platform: Platform | None = None


@dataclass
class Manifest:
    media_type: str
    config: Descriptor
    layers: list[Descriptor] = field(default_factory=list)

    @property
    def layers_size(self) -> int | None:
        sizes = [layer.size for layer in self.layers]
        return sum(s for s in sizes if s is not None) if all(s is not None for s in sizes) else None


@dataclass
class Index:
    media_type: str
    manifests: list[Descriptor]


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def check_digest(digest: object, what: str) -> str:
    """The digest if it is `sha256:` + 64 or `sha512:` + 128 lower-case hex; else BadInput."""
    if isinstance(digest, str):
        algorithm, colon, encoded = digest.partition(":")
        pattern = _DIGEST.get(algorithm)
        if colon and pattern is not None and pattern.fullmatch(encoded):
            return digest
        if colon and algorithm.isascii() and algorithm.isalnum() and algorithm not in _DIGEST:
            raise BadInput(f"{what}: unsupported digest algorithm {algorithm[:20]!r} (sha256 or sha512)")
    shown = repr(digest)[:80]
    raise BadInput(f"{what}: invalid digest {shown}")


def verify_digest(data: bytes, expected: str, what: str) -> None:
    algorithm = check_digest(expected, what).partition(":")[0]
    actual = algorithm + ":" + hashlib.new(algorithm, data).hexdigest()
    if actual != expected:
        raise BadInput(f"{what}: digest mismatch (expected {expected}, got {actual})")


def load_json(data: bytes, what: str) -> dict[str, Any]:
    value = parse_json(data, what)
    if not isinstance(value, dict):
        raise BadInput(f"{what}: expected a JSON object")
    return value


def _platform(data: Any) -> Platform | None:
    if not isinstance(data, dict):
        return None
    return Platform(
        os=_str(data.get("os")),
        architecture=_str(data.get("architecture")),
        variant=_str(data.get("variant")),
    )


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _descriptor(data: Any, what: str) -> Descriptor:
    if not isinstance(data, dict) or not isinstance(data.get("digest"), str):
        raise BadInput(f"{what}: descriptor without a digest")
    size = data.get("size")
    return Descriptor(
        media_type=_str(data.get("mediaType")),
        digest=check_digest(data["digest"], what),
        size=size if isinstance(size, int) and not isinstance(size, bool) else None,
        platform=_platform(data.get("platform")),
    )


def media_type_of(doc: dict[str, Any], header_type: str | None, what: str) -> str:
    """The document's own mediaType, else the Content-Type, else guessed from its shape."""
    declared = _str(doc.get("mediaType")) or (header_type or "").split(";")[0].strip()
    if doc.get("schemaVersion") == 1:
        raise BadInput(f"{what}: Docker schema 1 manifests are not supported (re-push the image)")
    if declared in INDEX_TYPES or declared in MANIFEST_TYPES:
        return declared
    if isinstance(doc.get("manifests"), list):
        return OCI_INDEX
    if isinstance(doc.get("config"), dict):
        return OCI_MANIFEST
    raise BadInput(f"{what}: unsupported manifest media type {declared or '(none)'}")


def parse(doc: dict[str, Any], media_type: str, what: str) -> Manifest | Index:
    if media_type in INDEX_TYPES:
        entries = doc.get("manifests")
        if not isinstance(entries, list):
            raise BadInput(f"{what}: index without a manifests list")
        return Index(media_type, [_descriptor(e, what) for e in entries])
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise BadInput(f"{what}: manifest without a layers list")
    return Manifest(media_type, _descriptor(doc.get("config"), what), [_descriptor(x, what) for x in layers])


def real_platforms(index: Index) -> list[tuple[int, Platform]]:
    """Entries that describe a runnable platform (buildx attestations are unknown/unknown)."""
    return [
        (i, d.platform)
        for i, d in enumerate(index.manifests)
        if d.platform is not None and d.platform.os not in (None, "unknown")
    ]
