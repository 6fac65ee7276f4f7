"""Kernel attestations in the registry: push one next to its image, find it again.

OCI distribution spec 1.1 (https://github.com/opencontainers/distribution-spec/blob/main/spec.md),
on the shared registry client (gpudoctor.images.registry: proxies, mirrors for reads,
retries under a deadline, credentials only to their origin):

- push (to the registry itself, never a mirror): blobs by HEAD, then POST + PUT
  (monolithic upload), then the artifact manifest by digest. A registry with the
  referrers API lists it from its `subject` (and answers with `OCI-Subject`).
  Every push also adds it to the image index tagged `sha256-<hex of the subject>`,
  the referrers tag scheme, which the spec allows beside the API: lookup then
  needs one HEAD of that tag, not a referrers call that registries without the API answer 404.
- the tag update is read-merge-write: the registry cannot refuse a write based on
  a stale read (Debian's docker-registry 2.8 accepts a manifest PUT whatever `If-Match`
  says), so after writing, the writer
  pauses and reads the tag again; if a concurrent writer's list replaced its
  entry, it merges again, for up to MAX_TAG_ROUNDS rounds. Entries are merged by
  digest and none is ever dropped.
- lookup: HEAD of the `sha256-<hex>` tag (no body when there is none, as for most
  images); when it exists, the index, then each gpudoctor artifact's manifest and
  document, newest first, each checked against its digest and subject.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urljoin

from gpudoctor.errors import BadInput, InputMissing, TemporaryFailure
from gpudoctor.images import manifest as mf
from gpudoctor.images.transport import visible_header_value
from gpudoctor.kernels import attest
from gpudoctor.kernels.attest import ARTIFACT_TYPE, OCI_INDEX, OCI_MANIFEST

if TYPE_CHECKING:
    from gpudoctor.facts import KernelScanFacts
    from gpudoctor.images.registry import RegistryClient

MAX_TAG_ROUNDS = 10
SETTLE_S = 0.25  # the pause before reading the tag back: longer than another writer's read-to-write
# Debian's docker-registry 2.8 answered 500 to some reads or writes of a tag while other
# writers were writing it (the concurrent-attach test): for the tag update, a lost round.
_RACING = (500,)


def referrers_tag(digest: str) -> str:
    """The referrers tag scheme's tag for a subject: "sha256:ab.." -> "sha256-ab.."."""
    algorithm, _, hexdigest = digest.partition(":")
    return f"{algorithm}-{hexdigest}"


def _json_bytes(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


# --- push ---------------------------------------------------------------------------------


def attach(client: RegistryClient, repository: str, subject: str, scan: KernelScanFacts) -> tuple[str, str]:
    """Push `scan` as an attestation of the manifest `subject`: (artifact digest, how it is linked)."""
    what = f"manifest {subject[:19]}"
    response, _ = client.request(
        "GET", repository, f"manifests/{subject}", what, capability="pull", accept=mf.ACCEPT,
        max_bytes=mf.MAX_MANIFEST_BYTES,
    )  # fmt: skip
    mf.verify_digest(response.body, subject, f"{client.name}: {what}")
    doc = mf.load_json(response.body, f"{client.name}: {what}")
    media_type = mf.media_type_of(doc, response.headers.get("content-type"), f"{client.name}: {what}")
    described = {"mediaType": media_type, "digest": subject, "size": len(response.body)}
    _push_blob(client, repository, attest.EMPTY_JSON)
    document = attest.document(scan, subject)
    blob = _push_blob(client, repository, document)
    created = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    manifest = attest.manifest(blob, len(document), described, created)
    digest = mf.sha256_digest(manifest)
    pushed, _ = client.request(
        "PUT", repository, f"manifests/{digest}", f"artifact manifest {digest[:19]}", ok=(201,),
        body=manifest, content_type=OCI_MANIFEST,
    )  # fmt: skip
    descriptor = {
        "mediaType": OCI_MANIFEST,
        "digest": digest,
        "size": len(manifest),
        "artifactType": ARTIFACT_TYPE,
        "annotations": json.loads(manifest)["annotations"],
    }
    how = f"referrers tag {_add_to_referrers_tag(client, repository, subject, descriptor)}"
    if pushed.headers.get("oci-subject") == subject:
        how = f"referrers API and {how}"
    return digest, how


def _push_blob(client: RegistryClient, repository: str, data: bytes) -> str:
    digest = mf.sha256_digest(data)
    what = f"blob {digest[:19]}"
    if client.request("HEAD", repository, f"blobs/{digest}", what, ok=(200, 404))[0].status == 200:
        return digest
    started, _ = client.request("POST", repository, "blobs/uploads/", f"upload of {what}", ok=(202,))
    location = started.headers.get("location", "")
    if not visible_header_value(location):
        raise BadInput(f"{client.name}: upload of {what}: the registry gave no usable Location")
    url = urljoin(started.url, location)
    url += ("&" if "?" in url else "?") + urlencode({"digest": digest})
    client.request(
        "PUT",
        repository,
        url,
        f"upload of {what}",
        ok=(201,),
        body=data,
        content_type="application/octet-stream",
    )
    return digest


def _add_to_referrers_tag(
    client: RegistryClient, repository: str, subject: str, descriptor: dict[str, Any]
) -> str:
    """The subject's `sha256-<hex>` index gets `descriptor`, whoever else writes it meanwhile."""
    tag = referrers_tag(subject)
    for rounds in range(MAX_TAG_ROUNDS + 1):
        listed = _listed(client, repository, tag)
        if listed is not None and any(entry.get("digest") == descriptor["digest"] for entry in listed):
            return tag
        if rounds == MAX_TAG_ROUNDS:
            break
        if listed is not None:
            index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [*listed, descriptor]}
            client.request(
                "PUT", repository, f"manifests/{tag}", f"referrers tag {tag}", ok=(201, *_RACING),
                body=_json_bytes(index), content_type=OCI_INDEX,
            )  # fmt: skip
        time.sleep(SETTLE_S * (1 + random.random()))  # noqa: S311 - jitter, not a secret
    raise TemporaryFailure(
        f"{client.name}: referrers tag {tag}: concurrent writers kept replacing it "
        f"({MAX_TAG_ROUNDS} rounds); run --attach again"
    )


def _listed(client: RegistryClient, repository: str, tag: str) -> list[dict[str, Any]] | None:
    """The tag's descriptors, as the registry itself has them now (never a mirror's copy);
    None when a concurrent write made the registry fail the read."""
    what = f"referrers tag {tag}"
    response, _ = client.request(
        "GET", repository, f"manifests/{tag}", what, ok=(200, 404, *_RACING),
        accept=OCI_INDEX, max_bytes=mf.MAX_MANIFEST_BYTES,
    )  # fmt: skip
    if response.status != 200:
        return None if response.status in _RACING else []
    entries = mf.load_json(response.body, f"{client.name}: {what}").get("manifests")
    return [entry for entry in entries if isinstance(entry, dict)] if isinstance(entries, list) else []


# --- lookup -------------------------------------------------------------------------------


def find_attestation(
    client: RegistryClient, repository: str, subject: str, warn: Callable[[str], None]
) -> tuple[attest.Attestation | None, str]:
    """The newest sound attestation of `subject`, and where it was looked for.
    One bad one is a warning and is skipped; the answer is then as without it."""
    tag = referrers_tag(subject)
    where = f"referrers tag {tag}"
    path = f"manifests/{tag}"
    found, _ = client.request(
        "HEAD", repository, path, where, capability="resolve", missing_ok=True, accept=OCI_INDEX,
        max_bytes=mf.MAX_MANIFEST_BYTES,
    )  # fmt: skip
    if found.status == 404:
        return None, where
    response, _ = client.request(
        "GET",
        repository,
        path,
        where,
        capability="resolve",
        accept=OCI_INDEX,
        max_bytes=mf.MAX_MANIFEST_BYTES,
    )
    entries = mf.load_json(response.body, f"{client.name}: {where}").get("manifests")
    descriptors = [
        entry
        for entry in (entries if isinstance(entries, list) else [])
        if isinstance(entry, dict) and entry.get("artifactType") == ARTIFACT_TYPE
    ]
    descriptors.sort(key=lambda d: str((d.get("annotations") or {}).get(attest.CREATED, "")), reverse=True)
    for descriptor in descriptors:
        digest = str(descriptor.get("digest", ""))
        try:
            scan, tool = _read_attestation(client, repository, digest, subject)
        except (attest.AttestationError, BadInput, InputMissing) as exc:
            warn(f"kernel attestation {digest[:19]} ignored: {exc}")
            continue
        created = (descriptor.get("annotations") or {}).get(attest.CREATED)
        return attest.Attestation(digest, subject, tool, created, scan), where
    return None, where


def _read_attestation(
    client: RegistryClient, repository: str, digest: str, subject: str
) -> tuple[KernelScanFacts, str]:
    label = f"{client.name}: {digest[:19]}"
    mf.check_digest(digest, label)
    response, _ = client.request(
        "GET", repository, f"manifests/{digest}", digest[:19], capability="pull", accept=OCI_MANIFEST,
        max_bytes=mf.MAX_MANIFEST_BYTES,
    )  # fmt: skip
    mf.verify_digest(response.body, digest, label)
    blob, size = attest.check_manifest(mf.load_json(response.body, label), subject)
    mf.check_digest(blob, label)
    response, _ = client.request(
        "GET", repository, f"blobs/{blob}", f"document {blob[:19]}", capability="pull", max_bytes=size
    )
    mf.verify_digest(response.body, blob, f"{client.name}: document {blob[:19]}")
    return attest.scan_from_document(response.body, subject)
