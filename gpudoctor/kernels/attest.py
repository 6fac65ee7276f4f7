"""Kernel attestations: the kernels scan of an image, stored next to it in its registry.

`gpudoctor kernels IMAGE --attach` scans the image once (in the build
pipeline) and pushes the scan as an OCI artifact whose `subject` is the image
manifest (OCI image spec 1.1, "Guidelines for artifact usage"):

  manifest  application/vnd.oci.image.manifest.v1+json
            artifactType  application/vnd.gpudoctor.kernels.v1+json
            config        the empty descriptor (application/vnd.oci.empty.v1+json, "{}")
            layers        one blob of ARTIFACT_TYPE: the document below
            subject       the image's platform manifest (mediaType, digest, size)

`gpudoctor preflight IMAGE` then finds it through the referrers API (or the
referrers tag scheme) and uses its kernel facts before any layer is read.
The document is the node-independent part of `kernels --format json`
(binaries, packages, errors, tool), plus the subject digest it describes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from gpudoctor import __version__
from gpudoctor.facts import BinaryFacts, FatbinEntry, KernelScanFacts, PackageFacts, ProbeError, to_dict

ARTIFACT_TYPE = "application/vnd.gpudoctor.kernels.v1+json"
SCHEMA_VERSION = "1.0"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
# The OCI empty descriptor: the two bytes "{}" (image-spec manifest.md, "Guidance for an Empty Descriptor").
EMPTY_JSON = b"{}"
EMPTY_DESCRIPTOR = {
    "mediaType": "application/vnd.oci.empty.v1+json",
    "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
    "size": 2,
}
CREATED = "org.opencontainers.image.created"
TOOL_VERSION = "dev.gpudoctor.tool.version"
MAX_DOCUMENT = 16 << 20


class AttestationError(ValueError):
    """An attestation that must be ignored: newer schema, wrong subject, bad digest, bad shape."""


@dataclass(frozen=True)
class Attestation:
    digest: str  # the artifact manifest's digest
    subject: str  # the image manifest it describes
    tool_version: str
    created: str | None
    scan: KernelScanFacts


def document(scan: KernelScanFacts, subject: str) -> bytes:
    """The attested blob: canonical JSON of the scan, for the image manifest `subject`."""
    body = {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "gpudoctor", "version": __version__},
        "subject": subject,
        "binaries": [
            {
                "path": b.path,
                "package": b.package,
                "entries": to_dict(b.fatbin_entries),
                **({"error": b.error} if b.error else {}),
            }
            for b in scan.binaries
        ],
        "packages": [to_dict(p) for p in scan.packages],
        "errors": to_dict(scan.errors),
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def manifest(blob_digest: str, blob_size: int, subject: dict[str, Any], created: str) -> bytes:
    body = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": ARTIFACT_TYPE,
        "config": EMPTY_DESCRIPTOR,
        "layers": [{"mediaType": ARTIFACT_TYPE, "digest": blob_digest, "size": blob_size}],
        "subject": subject,
        "annotations": {CREATED: created, TOOL_VERSION: __version__},
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def check_manifest(body: dict[str, Any], subject: str) -> tuple[str, int]:
    """(blob digest, size) of a fetched artifact manifest that describes `subject`."""
    if body.get("artifactType") != ARTIFACT_TYPE:
        raise AttestationError(f"artifact type {str(body.get('artifactType'))[:80]!r}")
    found = body.get("subject")
    if not isinstance(found, dict) or found.get("digest") != subject:
        named = found.get("digest") if isinstance(found, dict) else None
        raise AttestationError(f"its subject {str(named)[:80]} is not this image ({subject})")
    layers = body.get("layers")
    if not isinstance(layers, list) or len(layers) != 1 or not isinstance(layers[0], dict):
        raise AttestationError("it does not hold exactly one document")
    layer = layers[0]
    digest, size = layer.get("digest"), layer.get("size")
    if layer.get("mediaType") != ARTIFACT_TYPE or not isinstance(digest, str) or not isinstance(size, int):
        raise AttestationError("its document descriptor is malformed")
    if size > MAX_DOCUMENT:
        raise AttestationError(f"its document is {size} bytes, over the {MAX_DOCUMENT}-byte cap")
    return digest, size


def scan_from_document(data: bytes, subject: str) -> tuple[KernelScanFacts, str]:
    """(the scan, tool version) from an attested blob already checked against its digest."""
    from gpudoctor.errors import BadInput
    from gpudoctor.images.manifest import load_json

    try:
        body = load_json(data, "its document")
    except BadInput as exc:
        raise AttestationError(str(exc)) from None
    version = str(body.get("schema_version", ""))
    if version.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
        raise AttestationError(f"schema {version[:20]!r} is not one this gpudoctor reads ({SCHEMA_VERSION})")
    if body.get("subject") != subject:
        raise AttestationError(f"its document describes {str(body.get('subject'))[:80]}, not {subject}")
    try:
        scan = KernelScanFacts(
            binaries=[_binary(b) for b in body["binaries"]],
            packages=[PackageFacts(**p) for p in body["packages"]],
            errors=[ProbeError(**e) for e in body["errors"]],
        )
        tool = body["tool"]["version"]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise AttestationError(f"its document is malformed ({type(exc).__name__}: {str(exc)[:80]})") from None
    return scan, str(tool)


def _binary(row: dict[str, Any]) -> BinaryFacts:
    from gpudoctor.kernels.scan import target_sort_key

    entries = [FatbinEntry(**entry) for entry in row["entries"]]
    listed = {e.kind: set() for e in entries}
    for entry in entries:
        # cuobjdump's names: a family cubin is listed without its "f" (as scan.facts_from_entries does)
        name = entry.target[:-1] if entry.kind == "cubin" and entry.target.endswith("f") else entry.target
        listed.setdefault(entry.kind, set()).add(name)
    return BinaryFacts(
        path=str(row["path"]),
        package=row.get("package"),
        fatbin_entries=entries,
        cubins=sorted(listed.get("cubin", set()), key=target_sort_key),
        ptx=sorted(listed.get("ptx", set()), key=target_sort_key),
        compressed=any(e.compressed for e in entries),
        error=row.get("error"),
    )
