"""`preflight --deep`: the kernel scan of an image's layers, from wherever the image is.

Archives and local Docker images are streamed. A remote image is scanned only
with --pull-layers, which downloads every layer of the chosen platform (the
caller says so on stderr); blobs are streamed, checked against their digest,
and never written to disk.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from gpudoctor.errors import BadInput, GpudoctorError
from gpudoctor.facts import ImageFacts, KernelScanFacts
from gpudoctor.kernels.sources import ReadTap, Scanner
from gpudoctor.progress import progress

if TYPE_CHECKING:
    from gpudoctor.images.registry import Registries

NOT_PULLED = "remote image: layers not downloaded (add --pull-layers to download and scan them)"


def scan_image(
    reference: str,
    facts: ImageFacts,
    *,
    pull_layers: bool = False,
    docker_host: str | None = None,
    registries: Registries | None = None,
    announce: Callable[[str], None] = lambda _text: None,
) -> KernelScanFacts | None:
    """The scan, or None (with facts.unknown["kernels"] set) when it was not done."""
    scanner = Scanner()
    if facts.source == "archive":
        _scan_archive(scanner, reference, facts.digest)
    elif facts.source == "docker":
        scanner.add_docker_image(reference, docker_host)
    elif facts.source == "registry" and pull_layers and registries is not None:
        _scan_registry(scanner, reference, facts, registries, announce)
    else:
        facts.unknown["kernels"] = NOT_PULLED
        return None
    return scanner.facts()


NOT_ATTESTED = (
    "image not scanned for kernels: no gpudoctor kernels attestation in the registry "
    "(`gpudoctor kernels IMAGE --attach` in the build), and no --deep --pull-layers"
)


def look_up_attestations(
    images: list[ImageFacts], registries: Registries, warn: Callable[[str], None] = lambda _text: None
) -> None:
    """`facts.kernels` of each registry image from its attestation, concurrently (bounded, as
    the fetches); None, with facts.unknown["kernels"] saying why, where none is trusted."""
    from concurrent.futures import ThreadPoolExecutor

    from gpudoctor.images import MAX_PARALLEL_FETCHES

    def one(facts: ImageFacts) -> None:
        facts.kernels = attested_kernels(facts, registries, warn)

    if len(images) == 1:
        one(images[0])
    elif images:
        with ThreadPoolExecutor(min(MAX_PARALLEL_FETCHES, len(images))) as pool:
            list(pool.map(one, images))


def attested_kernels(
    facts: ImageFacts, registries: Registries, warn: Callable[[str], None]
) -> KernelScanFacts | None:
    """Kernel facts from the attestation of the chosen platform's manifest, or None
    (with facts.unknown["kernels"] saying why) when there is none to trust."""
    from gpudoctor.images.reference import parse_reference
    from gpudoctor.kernels.artifacts import find_attestation

    assert facts.digest is not None
    ref = parse_reference(facts.reference)
    try:
        found, where = find_attestation(registries.client(ref.registry), ref.repository, facts.digest, warn)
    except GpudoctorError as exc:
        warn(f"kernel attestation lookup failed: {exc}")
        found, where = None, "the registry (lookup failed)"
    if found is None:
        facts.unknown.setdefault("kernels", NOT_ATTESTED)  # --deep without --pull-layers said why first
        return None
    facts.unknown.pop("kernels", None)
    scan = found.scan
    scan.source = {
        "from": "attestation",
        "attestation": found.digest,
        "found_by": where,
        "tool_version": found.tool_version,
        "created": found.created or "unknown",
        "not_known": "the layers were not read: files the attestation does not list (or that changed "
        "after it was made for this exact manifest) are not seen",
    }
    return scan


def _scan_archive(scanner: Scanner, path: str, manifest_digest: str | None) -> None:
    """An OCI layout directory: only the chosen manifest's layers; anything else: the whole
    archive. Blob paths come from checked digests (sha256: + 64 hex), and only regular files
    inside the layout are opened (no symlinks, FIFOs or devices)."""
    if manifest_digest and os.path.isdir(path):
        from pathlib import Path

        from gpudoctor.images import manifest as mf
        from gpudoctor.images.archive import blob_name, open_in_layout

        root = Path(path).resolve()
        stream = open_in_layout(root, blob_name(manifest_digest, path))
        if stream is not None:
            with stream:
                data = stream.read(mf.MAX_MANIFEST_BYTES + 1)
            manifest = mf.parse(mf.load_json(data, f"{path}: manifest"), mf.OCI_MANIFEST, path)
            if not isinstance(manifest, mf.Manifest):
                raise BadInput(f"{path}: {manifest_digest[:19]} is not an image manifest")
            names = [blob_name(layer.digest, path) for layer in manifest.layers]
            scanner.layers.order = names
            total = sum(layer.size or 0 for layer in manifest.layers)
            with progress(f"scanning the layers of {path}", total, "bytes") as bar:
                for name in names:
                    layer = open_in_layout(root, name)
                    if layer is None:
                        raise BadInput(f"{path}: {name} is missing, or not a regular file inside the layout")
                    with layer:
                        scanner.add_layer(name, ReadTap(layer, lambda data: bar.advance(len(data))))  # type: ignore[arg-type]
            return
    scanner.add(path)


def _scan_registry(
    scanner: Scanner,
    reference: str,
    facts: ImageFacts,
    registries: Registries,
    announce: Callable[[str], None],
) -> None:
    """Every layer of the chosen platform's manifest, streamed through the registry client
    (proxies, mirrors, retries, deadline), each checked against its digest and size."""
    from gpudoctor.images import manifest as mf
    from gpudoctor.images.reference import parse_reference

    ref = parse_reference(reference)
    client = registries.client(ref.registry)
    manifest, _, _ = client.manifest(
        ref.repository, facts.digest or ref.manifest_ref, f"manifest {ref.repository}"
    )
    if not isinstance(manifest, mf.Manifest):
        raise BadInput(f"{client.name}: {reference}: expected an image manifest for the chosen platform")
    total = sum(layer.size or 0 for layer in manifest.layers)
    announce(f"--pull-layers: downloading {len(manifest.layers)} layers ({total / 1e6:.0f} MB) of {ref}")
    scanner.layers.order = [layer.digest for layer in manifest.layers]
    with progress(f"scanning the layers of {ref}", total, "bytes") as bar:
        for layer in manifest.layers:
            with client.open_blob(ref.repository, layer, f"layer {layer.digest[:19]}") as blob:
                counted = ReadTap(blob, lambda data: bar.advance(len(data)))  # type: ignore[arg-type]
                scanner.add_layer(layer.digest, counted)  # type: ignore[arg-type]
                counted.drain()
                blob.verify(layer.digest)
