"""`preflight --deep`: the kernel scan of an image's layers, from wherever the image is.

Archives and local Docker images are streamed. A remote image is scanned only
with --pull-layers, which downloads every layer of the chosen platform (the
caller says so on stderr); blobs are streamed, checked against their digest,
and never written to disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import BinaryIO

from gpudoctor.errors import BadInput, ServiceUnavailable
from gpudoctor.facts import ImageFacts, KernelScanFacts
from gpudoctor.kernels.sources import Scanner

BLOB_TIMEOUT_S = 120
NOT_PULLED = "remote image: layers not downloaded (add --pull-layers to download and scan them)"


def scan_image(
    reference: str,
    facts: ImageFacts,
    *,
    pull_layers: bool = False,
    docker_host: str | None = None,
    insecure_registries: tuple[str, ...] = (),
    ca_bundle: str | None = None,
    announce: Callable[[str], None] = lambda _text: None,
) -> KernelScanFacts | None:
    """The scan, or None (with facts.unknown["kernels"] set) when it was not done."""
    scanner = Scanner()
    if facts.source == "archive":
        _scan_archive(scanner, reference, facts.digest)
    elif facts.source == "docker":
        scanner.add_docker_image(reference, docker_host)
    elif facts.source == "registry" and pull_layers:
        _scan_registry(scanner, reference, facts, insecure_registries, ca_bundle, announce)
    else:
        facts.unknown["kernels"] = NOT_PULLED
        return None
    return scanner.facts()


def _scan_archive(scanner: Scanner, path: str, manifest_digest: str | None) -> None:
    """An OCI layout directory: only the chosen manifest's layers; anything else: the whole archive."""
    if manifest_digest and os.path.isdir(path):
        manifest_path = os.path.join(path, "blobs", *manifest_digest.split(":", 1))
        if os.path.isfile(manifest_path):
            with open(manifest_path, "rb") as handle:
                manifest = json.loads(handle.read(4 << 20))
            blobs = [
                os.path.join(path, "blobs", *str(layer.get("digest", "")).split(":", 1))
                for layer in manifest.get("layers", [])
            ]
            scanner.layers.order = [os.path.relpath(blob, path) for blob in blobs]
            for blob in blobs:
                with open(blob, "rb") as stream:
                    scanner.add_layer(os.path.relpath(blob, path), stream)
            return
    scanner.add(path)


def _scan_registry(
    scanner: Scanner,
    reference: str,
    facts: ImageFacts,
    insecure_registries: tuple[str, ...],
    ca_bundle: str | None,
    announce: Callable[[str], None],
) -> None:
    from gpudoctor.images import manifest as mf
    from gpudoctor.images.reference import parse_reference
    from gpudoctor.images.registry import RegistryClient
    from gpudoctor.images.transport import Transport

    ref = parse_reference(reference)
    transport = Transport(insecure_hosts=frozenset(insecure_registries), ca_bundle=ca_bundle)
    try:
        client = RegistryClient(ref, transport)
        manifest, _ = client.manifest(facts.digest or ref.manifest_ref, f"manifest {ref.repository}")
        if not isinstance(manifest, mf.Manifest):
            raise BadInput(f"{client.name}: {reference}: expected an image manifest for the chosen platform")
        total = sum(layer.size or 0 for layer in manifest.layers)
        announce(f"--pull-layers: downloading {len(manifest.layers)} layers ({total / 1e6:.0f} MB) of {ref}")
        base = f"{transport.base_url(ref.api_host)}/v2/{ref.repository}/blobs/"
        # The client authenticated while fetching the manifest; reuse its header.
        authorization = getattr(client, "_authorization", None)
        context = ssl.create_default_context(cafile=ca_bundle) if base.startswith("https") else None
        scanner.layers.order = [layer.digest for layer in manifest.layers]
        for layer in manifest.layers:
            with _open_blob(base + layer.digest, authorization, context) as response:
                hashed = _Hashing(response)
                scanner.add_layer(layer.digest, hashed)  # type: ignore[arg-type]
                hashed.drain()
                if f"sha256:{hashed.digest.hexdigest()}" != layer.digest:
                    raise BadInput(f"{client.name}: layer {layer.digest[:19]} does not match its digest")
    finally:
        transport.close()


def _open_blob(url: str, authorization: str | None, context: ssl.SSLContext | None) -> BinaryIO:
    request = urllib.request.Request(url, headers={"User-Agent": "gpudoctor"})
    if authorization:
        # Not forwarded on redirects: blob storage behind a 307 rejects foreign credentials.
        request.add_unredirected_header("Authorization", authorization)
    try:
        response: BinaryIO = urllib.request.urlopen(request, timeout=BLOB_TIMEOUT_S, context=context)
    except urllib.error.HTTPError as exc:
        raise ServiceUnavailable(
            f"layer download {url.rsplit('/', 1)[-1][:19]}: HTTP {exc.code} {exc.reason}"
        ) from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise ServiceUnavailable(f"layer download {url.rsplit('/', 1)[-1][:19]}: {exc}") from None
    return response


class _Hashing:
    """Reads through a stream, hashing every byte the tar reader consumes."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self.digest.update(data)
        return data

    def drain(self) -> None:
        while self.read(1 << 20):
            pass
