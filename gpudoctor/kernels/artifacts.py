"""Registry I/O for kernel attestations: push an artifact, find and fetch referrers.

OCI distribution spec 1.1 (https://github.com/opencontainers/distribution-spec/blob/main/spec.md):
- push: blobs by POST + PUT (monolithic upload), then the artifact manifest by
  digest. A registry with the referrers API answers with an `OCI-Subject`
  header; without it (Debian's docker-registry 2.8) the client keeps the
  list itself: the image index tagged `sha256-<hex of the subject>` gets a
  descriptor of the artifact (artifactType and annotations copied).
- lookup: GET /v2/<name>/referrers/<digest>?artifactType=...; a 404 means no
  referrers API, and the `sha256-<hex>` tag is read instead.

On `requests` (one Session: connection reuse, TLS verification with
--ca-bundle, plain HTTP only for --insecure-registry hosts); credentials
and challenges come from gpudoctor.images.auth, as for every registry read.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode, urljoin

import requests

from gpudoctor.errors import BadInput, ServiceUnavailable
from gpudoctor.facts import KernelScanFacts
from gpudoctor.images.auth import Credentials, credentials_for, parse_challenge
from gpudoctor.images.manifest import load_json
from gpudoctor.images.reference import Reference
from gpudoctor.kernels import attest
from gpudoctor.kernels.attest import ARTIFACT_TYPE, OCI_INDEX, OCI_MANIFEST

TIMEOUT_S = (10, 60)  # connect, read
MAX_SMALL = 4 << 20  # manifests, indexes, token answers
_MANIFESTS = ", ".join(
    (
        OCI_MANIFEST,
        OCI_INDEX,
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    )
)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def referrers_tag(digest: str) -> str:
    """The referrers tag scheme's tag for a subject: "sha256:ab.." -> "sha256-ab.."."""
    algorithm, _, hexdigest = digest.partition(":")
    return f"{algorithm}-{hexdigest}"


class ArtifactRegistry:
    """One repository of one registry, for pushing and reading small artifacts."""

    def __init__(
        self, ref: Reference, insecure_registries: tuple[str, ...] = (), ca_bundle: str | None = None
    ) -> None:
        self.ref = ref
        scheme = (
            "http" if ref.registry in insecure_registries or ref.api_host in insecure_registries else "https"
        )
        self.base = f"{scheme}://{ref.api_host}/v2/{ref.repository}/"
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "gpudoctor"
        # Passed on every request: a session-level `verify` loses to $REQUESTS_CA_BUNDLE.
        self._verify: str | bool = ca_bundle or True
        self._authorization: str | None = None
        self._tried: set[str] = set()
        self._scope = "pull"

    def __enter__(self) -> ArtifactRegistry:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.session.close()

    @property
    def name(self) -> str:
        return f"registry {self.ref.registry}"

    # --- reads -----------------------------------------------------------------------

    def manifest(self, reference: str, accept: str = _MANIFESTS) -> tuple[bytes, str] | None:
        """(body, media type) of a manifest or index by tag or digest; None when there is none."""
        response = self._request("GET", f"manifests/{reference}", headers={"Accept": accept}, ok=(200, 404))
        if response.status_code == 404:
            return None
        body = _capped(response, MAX_SMALL, f"{self.name}: manifest {reference[:71]}")
        if reference.startswith("sha256:") and sha256(body) != reference:
            raise BadInput(f"{self.name}: manifest {reference[:19]} does not match its digest")
        return body, response.headers.get("Content-Type", "").split(";")[0].strip()

    def blob(self, digest: str, max_bytes: int) -> bytes:
        response = self._request("GET", f"blobs/{digest}", ok=(200,), stream=True)
        body = _capped(response, max_bytes, f"{self.name}: blob {digest[:19]}")
        if sha256(body) != digest:
            raise BadInput(f"{self.name}: blob {digest[:19]} does not match its digest")
        return body

    def referrers(self, subject: str, artifact_type: str = ARTIFACT_TYPE) -> tuple[list[dict[str, Any]], str]:
        """Descriptors of the artifacts that name `subject`, and how they were found."""
        query = urlencode({"artifactType": artifact_type})
        response = self._request(
            "GET", f"referrers/{subject}?{query}", headers={"Accept": OCI_INDEX}, ok=(200, 404)
        )
        if response.status_code == 200:
            index = load_json(
                _capped(response, MAX_SMALL, f"{self.name}: referrers"), f"{self.name}: referrers"
            )
            return _descriptors(index, artifact_type), "referrers API"
        tag = referrers_tag(subject)
        found = self.manifest(tag, OCI_INDEX)
        if found is None:
            return [], f"referrers tag {tag}"
        return _descriptors(
            load_json(found[0], f"{self.name}: tag {tag}"), artifact_type
        ), f"referrers tag {tag}"

    # --- writes ----------------------------------------------------------------------

    def push_blob(self, data: bytes) -> str:
        self._scope = "pull,push"
        digest = sha256(data)
        if self._request("HEAD", f"blobs/{digest}", ok=(200, 404)).status_code == 200:
            return digest
        started = self._request("POST", "blobs/uploads/", ok=(202,))
        location = urljoin(self.base, started.headers.get("Location", ""))
        separator = "&" if "?" in location else "?"
        self._request(
            "PUT",
            f"{location}{separator}{urlencode({'digest': digest})}",
            data=data,
            headers={"Content-Type": "application/octet-stream"},
            ok=(201,),
        )
        return digest

    def push_manifest(self, body: bytes, media_type: str, reference: str) -> requests.Response:
        self._scope = "pull,push"
        return self._request(
            "PUT", f"manifests/{reference}", data=body, headers={"Content-Type": media_type}, ok=(201,)
        )

    def add_to_referrers_tag(self, subject: str, descriptor: dict[str, Any]) -> str:
        """The tag-scheme fallback: the subject's `sha256-<hex>` index gets `descriptor`."""
        tag = referrers_tag(subject)
        found = self.manifest(tag, OCI_INDEX)
        index = load_json(found[0], f"{self.name}: tag {tag}") if found else {}
        entries = [m for m in index.get("manifests", []) if isinstance(m, dict)] if found else []
        entries = [m for m in entries if m.get("digest") != descriptor["digest"]] + [descriptor]
        body = json.dumps(
            {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}, separators=(",", ":")
        ).encode()
        self.push_manifest(body, OCI_INDEX, tag)
        return tag

    # --- the request loop ------------------------------------------------------------

    def _request(self, method: str, path: str, ok: tuple[int, ...], **kwargs: Any) -> requests.Response:
        url = path if "://" in path else urljoin(self.base, path)
        what = f"{self.name}: {method} {path.split('?')[0][:90]}"
        for _ in range(3):
            headers = dict(kwargs.pop("headers", {}) or {})
            if self._authorization:
                headers["Authorization"] = self._authorization
            try:
                response = self.session.request(
                    verify=self._verify,
                    method=method,
                    url=url,
                    headers=headers,
                    timeout=TIMEOUT_S,
                    allow_redirects=method in ("GET", "HEAD"),
                    **kwargs,
                )
            except requests.RequestException as exc:
                raise ServiceUnavailable(f"{what}: {_first_line(exc)}") from None
            kwargs["headers"] = {k: v for k, v in headers.items() if k != "Authorization"}
            if response.status_code != 401 or not self._authenticate(response):
                break
        if response.status_code not in ok:
            raise ServiceUnavailable(f"{what}: HTTP {response.status_code} {response.reason}")
        return response

    def _authenticate(self, response: requests.Response) -> bool:
        scheme, params = parse_challenge(response.headers.get("WWW-Authenticate", ""))
        creds = credentials_for(self.ref.registry)
        key = f"{scheme}:{self._scope}"
        if key in self._tried:
            return False
        self._tried.add(key)
        if scheme == "basic" and creds is not None and creds.basic():
            self._authorization = creds.basic()
            return True
        if scheme == "bearer" and params.get("realm", "").startswith(("https://", "http://")):
            self._authorization = "Bearer " + self._token(params, creds)
            return True
        return False

    def _token(self, params: dict[str, str], creds: Credentials | None) -> str:
        query = {"scope": f"repository:{self.ref.repository}:{self._scope}"}
        if params.get("service"):
            query["service"] = params["service"]
        headers = {"Authorization": creds.basic()} if creds is not None and creds.basic() else {}
        what = f"{self.name}: token service"
        try:
            response = self.session.get(
                params["realm"], params=query, headers=headers, timeout=TIMEOUT_S, verify=self._verify
            )
        except requests.RequestException as exc:
            raise ServiceUnavailable(f"{what}: {_first_line(exc)}") from None
        if response.status_code != 200:
            raise ServiceUnavailable(f"{what}: HTTP {response.status_code} {response.reason}")
        answer = load_json(_capped(response, MAX_SMALL, what), what)
        token = answer.get("token") or answer.get("access_token")
        if not isinstance(token, str) or not token.isprintable() or not token:
            raise BadInput(f"{what}: answer has no usable token")
        return token


def _descriptors(index: dict[str, Any], artifact_type: str) -> list[dict[str, Any]]:
    manifests = index.get("manifests")
    if not isinstance(manifests, list):
        return []
    return [m for m in manifests if isinstance(m, dict) and m.get("artifactType") == artifact_type]


def _capped(response: requests.Response, max_bytes: int, what: str) -> bytes:
    chunks, total = [], 0
    for chunk in response.iter_content(1 << 16):
        total += len(chunk)
        if total > max_bytes:
            response.close()
            raise BadInput(f"{what}: over the {max_bytes}-byte cap")
        chunks.append(chunk)
    return b"".join(chunks)


def _first_line(exc: BaseException) -> str:
    """One short line; urllib3 puts the cause (TLS, refused, timeout) last."""
    text = " ".join(str(exc).split())
    cause = text.rfind("(Caused by ")
    return (text[cause + 1 :] if cause >= 0 else text)[:300]


def attach(
    reference: Reference,
    subject: str,
    scan: KernelScanFacts,
    insecure_registries: tuple[str, ...] = (),
    ca_bundle: str | None = None,
) -> tuple[str, str]:
    """Push `scan` as an attestation of the manifest `subject`: (artifact digest, how it is linked)."""
    with ArtifactRegistry(reference, insecure_registries, ca_bundle) as registry:
        found = registry.manifest(subject)
        if found is None:
            raise ServiceUnavailable(f"{registry.name}: manifest {subject[:19]} not found to attach to")
        body, media_type = found
        described = {"mediaType": media_type or OCI_MANIFEST, "digest": subject, "size": len(body)}
        registry.push_blob(attest.EMPTY_JSON)
        document = attest.document(scan, subject)
        blob = registry.push_blob(document)
        created = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        manifest = attest.manifest(blob, len(document), described, created)
        digest = sha256(manifest)
        response = registry.push_manifest(manifest, OCI_MANIFEST, digest)
        if response.headers.get("OCI-Subject") == subject:
            return digest, "referrers API"
        descriptor = {
            "mediaType": OCI_MANIFEST,
            "digest": digest,
            "size": len(manifest),
            "artifactType": ARTIFACT_TYPE,
            "annotations": json.loads(manifest)["annotations"],
        }
        return digest, f"referrers tag {registry.add_to_referrers_tag(subject, descriptor)}"


def find_attestation(
    reference: Reference,
    subject: str,
    warn: Callable[[str], None],
    insecure_registries: tuple[str, ...] = (),
    ca_bundle: str | None = None,
) -> tuple[attest.Attestation | None, str]:
    """The newest sound attestation of `subject`, and where it was looked for.
    One bad one is a warning and is skipped; the answer is then as without it."""
    with ArtifactRegistry(reference, insecure_registries, ca_bundle) as registry:
        descriptors, how = registry.referrers(subject)
        descriptors.sort(
            key=lambda d: str((d.get("annotations") or {}).get(attest.CREATED, "")), reverse=True
        )
        for descriptor in descriptors:
            digest = str(descriptor.get("digest", ""))
            try:
                if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
                    raise attest.AttestationError(f"digest {digest[:80]!r} is not sha256")
                found = registry.manifest(digest, OCI_MANIFEST)
                if found is None:
                    raise attest.AttestationError("its manifest is gone")
                blob, _size = attest.check_manifest(
                    load_json(found[0], f"{registry.name}: {digest[:19]}"), subject
                )
                scan, tool = attest.scan_from_document(registry.blob(blob, attest.MAX_DOCUMENT), subject)
            except (attest.AttestationError, BadInput) as exc:
                warn(f"kernel attestation {digest[:19]} ignored: {exc}")
                continue
            created = (descriptor.get("annotations") or {}).get(attest.CREATED)
            return attest.Attestation(digest, subject, tool, created, scan), how
    return None, how
