"""Image metadata without pulling: registry, local Docker engine or archive.

`fetch_image(reference, ...) -> ImageFacts`. Source order: an explicit `source`;
else an existing path is an archive; else the local engine when it has the image;
else the registry.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from gpudoctor.errors import UsageError
from gpudoctor.facts import ImageFacts, Platform

SOURCES = ("registry", "docker", "archive")


def fetch_image(
    reference: str,
    *,
    source: str | None = None,
    platform: Platform | str | None = None,
    insecure_registries: Sequence[str] = (),
    ca_bundle: str | None = None,
    docker_host: str | None = None,
) -> ImageFacts:
    """Image facts from the manifest and config only (never a layer).

    Raises UsageError (64), InputMissing (66), BadInput (65) or
    ServiceUnavailable (69), each with a one-line message free of secrets.
    """
    from gpudoctor.images.platform import host_platform, parse_platform

    if source is not None and source not in SOURCES:
        raise UsageError(f"unknown image source {source!r} (one of {', '.join(SOURCES)})")
    wanted = parse_platform(platform) if isinstance(platform, str) else (platform or host_platform())
    # os.path, not pathlib: a registry reference should not pay for importing pathlib.
    if source == "archive" or (source is None and os.path.exists(reference)):
        from pathlib import Path

        from gpudoctor.images.archive import fetch_from_archive

        return fetch_from_archive(Path(reference), wanted)

    from gpudoctor.images.reference import parse_reference

    ref = parse_reference(reference)
    if source in (None, "docker"):
        from gpudoctor.images.engine import engine_configured, fetch_from_engine

        if source == "docker" or engine_configured(docker_host):
            found = fetch_from_engine(reference, str(ref), docker_host, required=source == "docker")
            if found is not None:
                return found
    from gpudoctor.images.registry import fetch_from_registry
    from gpudoctor.images.transport import Transport

    transport = Transport(insecure_hosts=frozenset(insecure_registries), ca_bundle=ca_bundle)
    try:
        return fetch_from_registry(ref, wanted, transport)
    finally:
        transport.close()
