"""Image metadata without pulling: registry, local Docker engine or archive.

`fetch_image(reference, ...) -> ImageFacts`, `fetch_images([...]) -> [ImageFacts | error]`
(concurrent, one token and one connection pool per registry). Source order: an explicit
`source`; else an existing path is an archive; else the local engine when it has the
image; else the registry.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gpudoctor.errors import GpudoctorError, InputMissing, UsageError
from gpudoctor.facts import ImageFacts, Platform

if TYPE_CHECKING:
    from gpudoctor.images.registry import Registries

SOURCES = ("registry", "docker", "archive")
MAX_PARALLEL_FETCHES = 32  # per run; each registry keeps up to this many connections
_ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".tar.zst", ".oci")


@dataclass(frozen=True)
class RegistryOptions:
    """How registries are reached (the preflight and fleet options)."""

    insecure_registries: tuple[str, ...] = ()  # HOST:PORT
    ca_bundle: str | None = None
    proxy: str | None = None
    mirrors: tuple[str, ...] = ()  # --registry-mirror values
    host_root: str = "/"
    read_runtime_config: bool = True  # the node's daemon.json and hosts.toml


def looks_like_path(text: str) -> bool:
    """`./x.tar`, `/abs/dir`, `images/app.tar`: meant as a file, whether or not it exists."""
    return text.startswith(("/", "./", "../", "~")) or text.lower().endswith(_ARCHIVE_SUFFIXES)


class Fetcher:
    """Fetches for one run: one transport (pools) and one client (token) per registry."""

    def __init__(self, options: RegistryOptions = RegistryOptions(), docker_host: str | None = None) -> None:
        self.options = options
        self.docker_host = docker_host
        self._registries: Registries | None = None

    @property
    def registries(self) -> Registries:
        """Made on first use: an archive or a local image needs no HTTP client."""
        if self._registries is None:
            from gpudoctor.images.registry import Registries
            from gpudoctor.images.transport import Transport

            self._registries = Registries(Transport(proxy=self.options.proxy), self.options)
        return self._registries

    def close(self) -> None:
        if self._registries is not None:
            self._registries.transport.close()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def fetch(
        self, reference: str, *, source: str | None = None, platform: Platform | str | None = None
    ) -> ImageFacts:
        """Image facts from the manifest and config only (never a layer).

        Raises UsageError (64), BadInput (65), InputMissing (66), ServiceUnavailable (69),
        TemporaryFailure (75) or PermissionRefused (77): one line, free of secrets.
        """
        from gpudoctor.images.platform import host_platform, parse_platform

        if source is not None and source not in SOURCES:
            raise UsageError(f"unknown image source {source!r} (one of {', '.join(SOURCES)})")
        wanted = parse_platform(platform) if isinstance(platform, str) else (platform or host_platform())
        if source == "archive" or (
            source is None and (os.path.exists(reference) or looks_like_path(reference))
        ):
            from pathlib import Path

            from gpudoctor.images.archive import fetch_from_archive

            if not os.path.exists(reference):
                raise InputMissing(f"{reference}: no such file or directory")
            return fetch_from_archive(Path(reference), wanted)

        from gpudoctor.images.reference import parse_reference

        ref = parse_reference(reference)
        if source in (None, "docker"):
            from gpudoctor.images.engine import engine_configured, fetch_from_engine

            if source == "docker" or engine_configured(self.docker_host):
                found = fetch_from_engine(reference, str(ref), self.docker_host, required=source == "docker")
                if found is not None:
                    return found
        from gpudoctor.images.registry import fetch_from_registry

        return fetch_from_registry(ref, wanted, self.registries.client(ref.registry))

    def fetch_many(
        self, requests: Sequence[tuple[str, Platform | str | None]], *, source: str | None = None
    ) -> list[ImageFacts | GpudoctorError]:
        """Each (reference, platform) fetched, at most MAX_PARALLEL_FETCHES at a time; an
        error is returned in its place, not raised."""
        from gpudoctor.images.reference import parse_reference

        known = []
        for reference, _ in requests:
            try:
                known.append(parse_reference(reference))
            except GpudoctorError:
                continue  # reported by its own fetch
        if known and source != "archive":
            self.registries.announce(known)

        def one(item: tuple[str, Platform | str | None]) -> ImageFacts | GpudoctorError:
            try:
                return self.fetch(item[0], source=source, platform=item[1])
            except GpudoctorError as exc:
                return exc

        if len(requests) <= 1:
            return [one(item) for item in requests]
        with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_FETCHES, len(requests))) as pool:
            return list(pool.map(one, requests))


def fetch_image(
    reference: str,
    *,
    source: str | None = None,
    platform: Platform | str | None = None,
    insecure_registries: Sequence[str] = (),
    ca_bundle: str | None = None,
    docker_host: str | None = None,
    options: RegistryOptions | None = None,
) -> ImageFacts:
    """One image (see Fetcher.fetch)."""
    if options is None:
        options = RegistryOptions(insecure_registries=tuple(insecure_registries), ca_bundle=ca_bundle)
    with Fetcher(options, docker_host) as fetcher:
        return fetcher.fetch(reference, source=source, platform=platform)
