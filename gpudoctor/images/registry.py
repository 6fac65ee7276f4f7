"""Registry source: only the manifest (and the index above it) and the config blob.
Never a layer.

Auth: anonymous first; on 401 the challenge decides: Basic with the user's
credentials, or the Docker token flow (realm/service/scope) with them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from gpudoctor.errors import BadInput, ServiceUnavailable
from gpudoctor.facts import ImageFacts, Platform
from gpudoctor.images import manifest as mf
from gpudoctor.images.auth import Credentials, credentials_for, parse_challenge
from gpudoctor.images.config import facts_from_config
from gpudoctor.images.platform import choose
from gpudoctor.images.reference import Reference
from gpudoctor.images.transport import Response, Transport

MAX_TOKEN_BYTES = 64 * 1024
_STATUS_MEANING = {
    401: "authentication required or refused",
    403: "access denied",
    404: "no such repository, tag or digest",
    429: "too many requests (rate limited)",
}


@dataclass
class RegistryClient:
    ref: Reference
    transport: Transport
    _authorization: str | None = None
    _tried: set[str] = field(default_factory=set)

    @property
    def name(self) -> str:
        return f"registry {self.ref.registry}"

    @cached_property
    def _creds(self) -> Credentials | None:
        """Read from the Docker config only once a registry asks for them."""
        return credentials_for(self.ref.registry)

    def get(self, path: str, accept: str | None, max_bytes: int, what: str) -> Response:
        url = f"{self.transport.base_url(self.ref.api_host)}/v2/{self.ref.repository}/{path}"
        for _ in range(2):
            headers = {"User-Agent": "gpudoctor"}
            if accept:
                headers["Accept"] = accept
            if self._authorization:
                headers["Authorization"] = self._authorization
            response = self.transport.request("GET", url, headers, max_bytes, f"{self.name}: {what}")
            if response.status != 401 or not self._authenticate(response):
                break
        if response.status != 200:
            raise self._status_error(response, what)
        return response

    def _status_error(self, response: Response, what: str) -> ServiceUnavailable:
        meaning = _STATUS_MEANING.get(response.status)
        if meaning is None:
            meaning = "server error" if response.status >= 500 else "unexpected answer"
        if response.status == 401 and self._creds is not None:
            meaning = "credentials refused"
        return ServiceUnavailable(
            f"{self.name}: {what}: HTTP {response.status} {response.reason} ({meaning})"
        )

    def _authenticate(self, response: Response) -> bool:
        """Set the Authorization for the challenge; False when there is nothing new to try."""
        scheme, params = parse_challenge(response.headers.get("www-authenticate", ""))
        creds = self._creds
        if scheme == "basic":
            basic = creds.basic() if creds else None
            if basic is None or "basic" in self._tried:
                return False
            self._tried.add("basic")
            self._authorization = basic
            return True
        if scheme == "bearer" and params.get("realm") and "bearer" not in self._tried:
            self._tried.add("bearer")
            self._authorization = "Bearer " + self._token(params, creds)
            return True
        return False

    def _token(self, params: dict[str, str], creds: Credentials | None) -> str:
        # Only the token flow builds a query: urllib.parse costs ~2.5 ms, off the anonymous path.
        from urllib.parse import urlencode

        realm = params["realm"]
        scope = params.get("scope") or f"repository:{self.ref.repository}:pull"
        query = {"scope": scope}
        if params.get("service"):
            query["service"] = params["service"]
        what = f"{self.name}: token service"
        if realm.split("://", 1)[0] not in ("http", "https"):
            raise BadInput(f"{what}: realm is not an http(s) URL")
        headers = {"User-Agent": "gpudoctor"}
        if creds is not None and creds.identity_token:
            form = dict(
                query, grant_type="refresh_token", client_id="gpudoctor", refresh_token=creds.identity_token
            )
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            response = self.transport.request(
                "POST", realm, headers, MAX_TOKEN_BYTES, what, body=urlencode(form).encode()
            )
        else:
            basic = creds.basic() if creds else None
            if basic:
                headers["Authorization"] = basic
            response = self.transport.request(
                "GET", f"{realm}?{urlencode(query)}", headers, MAX_TOKEN_BYTES, what
            )
        if response.status != 200:
            meaning = "no token"
            if response.status in (401, 403):
                meaning = (
                    "credentials refused"
                    if creds
                    else "authentication required (no credentials in the Docker config)"
                )
            raise ServiceUnavailable(f"{what}: HTTP {response.status} {response.reason} ({meaning})")
        data = mf.load_json(response.body, what)
        token = data.get("token") or data.get("access_token")
        if not isinstance(token, str) or not token:
            raise BadInput(f"{what}: answer has no token")
        return token

    def manifest(self, reference: str, what: str) -> tuple[mf.Manifest | mf.Index, str]:
        """A manifest or index by tag or digest, with its digest (checked where known)."""
        response = self.get(f"manifests/{reference}", mf.ACCEPT, mf.MAX_MANIFEST_BYTES, what)
        label = f"{self.name}: {what}"
        digest = mf.sha256_digest(response.body)
        if reference.startswith("sha") and ":" in reference:
            mf.verify_digest(response.body, reference, label)
            digest = reference
        elif response.headers.get("docker-content-digest"):
            mf.verify_digest(response.body, response.headers["docker-content-digest"], label)
        doc = mf.load_json(response.body, label)
        media_type = mf.media_type_of(doc, response.headers.get("content-type"), label)
        return mf.parse(doc, media_type, label), digest

    def config(self, descriptor: mf.Descriptor) -> dict[str, object]:
        what = f"config blob {descriptor.digest[:19]}"
        if descriptor.size is not None and descriptor.size > mf.MAX_CONFIG_BYTES:
            raise BadInput(
                f"{self.name}: {what} is {descriptor.size} bytes, over the {mf.MAX_CONFIG_BYTES}-byte cap"
            )
        response = self.get(f"blobs/{descriptor.digest}", None, mf.MAX_CONFIG_BYTES, what)
        mf.verify_digest(response.body, descriptor.digest, f"{self.name}: {what}")
        return mf.load_json(response.body, f"{self.name}: {what}")


def resolve(
    index: mf.Index, wanted: Platform, where: str
) -> tuple[mf.Descriptor, list[Platform], str | None]:
    """The index entry for `wanted` (or the first real platform, noted), every platform offered."""
    entries = mf.real_platforms(index)
    offered = [p for _, p in entries]
    if not entries:
        if not index.manifests:
            raise BadInput(f"{where}: index lists no manifests")
        note = None if len(index.manifests) == 1 else "index entries carry no platform; the first is read"
        return index.manifests[0], offered, note
    chosen = choose(offered, wanted)
    if chosen is not None:
        return index.manifests[entries[chosen][0]], offered, None
    note = f"the image offers no {wanted}; facts are read from {offered[0]}"
    return index.manifests[entries[0][0]], offered, note


def fetch_from_registry(ref: Reference, wanted: Platform, transport: Transport) -> ImageFacts:
    client = RegistryClient(ref, transport)
    top, top_digest = client.manifest(ref.manifest_ref, f"manifest {ref.repository}:{ref.manifest_ref}")
    index_digest, platforms, note = None, [], None
    if isinstance(top, mf.Index):
        index_digest = top_digest
        descriptor, platforms, note = resolve(top, wanted, f"{client.name}: {ref}")
        top, top_digest = client.manifest(
            descriptor.digest, f"manifest {ref.repository}@{descriptor.digest[:19]}"
        )
        if isinstance(top, mf.Index):
            raise BadInput(f"{client.name}: {ref}: an index inside an index is not supported")
    config = client.config(top.config)
    return finish(config, str(ref), "registry", top, top_digest, index_digest, platforms, note)


def finish(
    config: dict[str, object],
    reference: str,
    source: str,
    manifest: mf.Manifest | None,
    digest: str | None,
    index_digest: str | None,
    platforms: list[Platform],
    note: str | None,
) -> ImageFacts:
    """ImageFacts from a config plus what the manifest and index said (shared by sources)."""
    facts = facts_from_config(config, reference, source)
    facts.digest, facts.index_digest = digest, index_digest
    facts.platforms = platforms or ([facts.platform] if facts.platform else [])
    if manifest is not None:
        facts.size_bytes = manifest.layers_size
    if note:
        facts.unknown["platform"] = note
    return facts
