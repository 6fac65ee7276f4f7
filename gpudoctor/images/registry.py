"""Registry source: only the manifest (and the index above it) and the config blob;
a layer only when asked (`open_blob`: `--pull-layers`, `kernels --attach`).

One `RegistryClient` per registry, shared by the threads that fetch its images: its
endpoints (mirrors, then the registry), one Authorization per endpoint, and a token that
covers every repository asked for (the Docker token flow takes several `scope`s; those
written to, by `kernels --attach`, with `pull,push`). Every registry request of a run goes
through it: reads go to mirrors first, writes only to the registry itself.

Auth: anonymous first; on 401 the challenge decides: Basic with the user's credentials,
or the Docker token flow (realm/service/scope) with them. Credentials go only over TLS,
or to a registry the user named insecure (or a loopback one); a token realm must be https
unless its host is such a registry; a token must be fit to be a header value.

Status -> exit code: 404 -> 66 (no such image or tag), 401/403 -> 77, 429/503/504 after
the transport's retries -> 75, any other failure -> 69, bad data -> 65.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import urlencode, urljoin

from gpudoctor.errors import (
    BadInput,
    GpudoctorError,
    InputMissing,
    PermissionRefused,
    ServiceUnavailable,
    TemporaryFailure,
)
from gpudoctor.facts import ImageFacts, Platform
from gpudoctor.images import RegistryOptions
from gpudoctor.images import manifest as mf
from gpudoctor.images.auth import Credentials, credentials_for, parse_challenge
from gpudoctor.images.config import facts_from_config
from gpudoctor.images.endpoints import Endpoint, endpoints_for, is_loopback
from gpudoctor.images.platform import choose
from gpudoctor.images.reference import Reference, api_host
from gpudoctor.images.transport import (
    BodyStream,
    Response,
    Target,
    Transport,
    clip,
    same_origin,
    visible_header_value,
)

MAX_TOKEN_BYTES = 64 * 1024
MAX_SMALL_BYTES = 64 * 1024  # the answer to a write: an error document at most
_STATUS_MEANING = {
    401: "authentication required or refused",
    403: "access denied",
    404: "no such repository, tag or digest",
    429: "too many requests (rate limited)",
    503: "service unavailable",
    504: "gateway timeout",
}


def status_error(status: int, reason: str, what: str, meaning: str | None = None) -> GpudoctorError:
    """The exception for a registry's final answer, with the documented exit code."""
    meaning = (
        meaning or _STATUS_MEANING.get(status) or ("server error" if status >= 500 else "unexpected answer")
    )
    message = f"{what}: HTTP {status} {reason} ({meaning})".replace(" ()", "")
    if status == 404:
        return InputMissing(message)
    if status in (401, 403):
        return PermissionRefused(message)
    if status in (429, 503, 504):
        return TemporaryFailure(message + ", retried until the deadline; try again later")
    return ServiceUnavailable(message)


@dataclass
class RegistryClient:
    registry: str  # as in the reference: "docker.io", "127.0.0.1:5000"
    transport: Transport
    options: RegistryOptions = RegistryOptions()
    endpoints: list[Endpoint] = field(default_factory=list)
    repositories: set[str] = field(default_factory=set)  # scopes for the next token
    _authorization: dict[str, str] = field(default_factory=dict)  # endpoint base -> header
    _pushing: set[str] = field(default_factory=set)  # repositories written to: their scope is pull,push
    _unusable: set[str] = field(default_factory=set)  # endpoints that do not speak HTTP(S) as set up
    _credentials: dict[str, Credentials | None] = field(default_factory=dict)  # host -> from Docker config
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _auth_lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if not self.endpoints:
            self.endpoints = endpoints_for(self.registry, self.options)

    @property
    def name(self) -> str:
        return f"registry {self.registry}"

    def expect(self, repository: str) -> None:
        """A repository this run will read: the next token is asked to cover it too."""
        with self._lock:
            self.repositories.add(repository)

    def _creds(self, netloc: str) -> Credentials | None:
        """From the Docker config, only once a registry asks for them; for the host asked."""
        with self._lock:
            if netloc not in self._credentials:
                key = self.registry if netloc in (self.registry, api_host(self.registry)) else netloc
                self._credentials[netloc] = credentials_for(key)
            return self._credentials[netloc]

    def request(
        self,
        method: str,
        repository: str,
        path: str,
        what: str,
        *,
        capability: str | None = None,
        ok: tuple[int, ...] = (200,),
        missing_ok: bool = False,
        accept: str | None = None,
        max_bytes: int = MAX_SMALL_BYTES,
        body: bytes | None = None,
        content_type: str | None = None,
        stream: bool = False,
    ) -> tuple[Response, Endpoint]:
        """An answer in `ok` and the endpoint that gave it, else the error for the registry's.

        A read a mirror may serve names its `capability` ("resolve" a tag, "pull" by digest):
        mirrors are asked first, and one that fails or lacks the content passes the request on;
        the registry's own 404 is returned when the caller takes it as an answer (`missing_ok`).
        Without a capability the request goes to the registry itself, never a mirror (mirrors
        are read-only): writes, and the reads a write depends on; its token may push.
        `path` is under the repository, or a URL (an upload Location)."""
        label = f"{self.name}: {what}"
        if capability is None:
            with self._lock:
                self._pushing.add(repository)
            candidates = [e for e in self.endpoints if not e.mirror]
        else:
            candidates = [e for e in self.endpoints if capability in e.capabilities]
        if not candidates:
            raise ServiceUnavailable(f"{label}: no endpoint may {capability} (hosts.toml capabilities)")
        headers = {
            name: value for name, value in (("Accept", accept), ("Content-Type", content_type)) if value
        }
        failure: GpudoctorError | None = None
        missing: tuple[Response, Endpoint] | None = None
        answered: set[str] = set()  # hosts that spoke HTTP: their plain-HTTP twin is not tried
        for endpoint in candidates:
            if endpoint.netloc in answered or endpoint.base in self._unusable:
                continue
            url = urljoin(endpoint.base, path) if "://" in path else endpoint.url(f"{repository}/{path}")
            try:
                response = self._call(
                    endpoint, method, url, repository, headers, max_bytes, label, body, stream
                )
            except (ServiceUnavailable, TemporaryFailure, PermissionRefused) as exc:
                if "TLS failure" in str(exc) and self._has_plain_twin(endpoint):
                    self._unusable.add(endpoint.base)  # a plain-HTTP loopback registry: use http://
                else:
                    answered.add(endpoint.netloc)
                failure, missing = exc, None
                continue
            if response.status in ok:
                return response, endpoint
            answered.add(endpoint.netloc)
            failure = self._status_error(endpoint, response, label)
            missing = (response, endpoint) if missing_ok and response.status == 404 else None
        if missing is not None:
            return missing
        assert failure is not None
        raise failure

    def _has_plain_twin(self, endpoint: Endpoint) -> bool:
        return not endpoint.plain_http and any(
            e.plain_http and e.netloc == endpoint.netloc for e in self.endpoints
        )

    def _status_error(self, endpoint: Endpoint, response: Response, label: str) -> GpudoctorError:
        meaning = None
        if response.status == 401:
            meaning = (
                "credentials refused"
                if self._creds(endpoint.netloc)
                else "authentication required (no credentials in the Docker config), or no such repository"
            )
        where = "" if endpoint.origin == "registry" else f" from {endpoint.describe()}"
        return status_error(response.status, response.reason, label + where, meaning)

    def _call(
        self,
        endpoint: Endpoint,
        method: str,
        url: str,
        repository: str,
        headers: dict[str, str],
        max_bytes: int,
        label: str,
        body: bytes | None,
        stream: bool,
    ) -> Response:
        """One request to one endpoint, authenticating on a 401. The endpoint's Authorization
        goes only to its own origin (an upload Location elsewhere gets none)."""
        own = same_origin(url, endpoint.base)
        tried: set[str] = set()
        while True:
            sent = self._authorization.get(endpoint.base) if own else None
            asked = {**headers, "Authorization": sent} if sent else headers
            response = self.transport.request(
                method, url, asked, max_bytes, label, body=body, target=endpoint.target, stream=stream
            )
            if (
                response.status != 401
                or not own
                or not self._authenticate(endpoint, response, repository, sent, tried)
            ):
                return response

    def _authenticate(
        self, endpoint: Endpoint, response: Response, repository: str, sent: str | None, tried: set[str]
    ) -> bool:
        """Set the endpoint's Authorization for the challenge; False when there is nothing new
        to try. Under the lock, so concurrent fetches ask the token service once."""
        scheme, params = parse_challenge(response.headers.get("www-authenticate", ""))
        if scheme in tried or scheme not in ("basic", "bearer"):
            return False
        tried.add(scheme)
        with self._auth_lock:  # one token request at a time; the others use its answer
            with self._lock:
                self.repositories.add(repository)
            if self._authorization.get(endpoint.base) != sent:  # another thread authenticated meanwhile
                return True
            creds = self._creds(endpoint.netloc)
            if scheme == "basic":
                basic = creds.basic() if creds else None
                if basic is None:
                    return False
                self._refuse_clear_text(endpoint.base, endpoint.netloc, "send credentials")
                authorization = basic
            else:
                authorization = "Bearer " + self._token(endpoint, params, creds)
            self._authorization[endpoint.base] = authorization
        return True

    def _refuse_clear_text(self, url: str, netloc: str, doing: str) -> None:
        """Secrets travel over TLS, or to a registry the user (or loopback) made insecure."""
        if url.startswith("https://") or self._insecure(netloc):
            return
        raise ServiceUnavailable(
            f"{self.name}: refused to {doing} over plain HTTP to {netloc} (not an --insecure-registry)"
        )

    def _insecure(self, netloc: str) -> bool:
        return netloc in self.options.insecure_registries or is_loopback(netloc)

    def _token(self, endpoint: Endpoint, params: dict[str, str], creds: Credentials | None) -> str:
        what = f"{self.name}: token service"
        realm = params.get("realm") or ""
        if not visible_header_value(realm) or " " in realm:
            raise BadInput(f"{what}: the challenge's realm is not a usable URL")
        scheme, _, rest = realm.partition("://")
        realm_netloc = rest.split("/", 1)[0].split("?", 1)[0]
        if scheme.lower() not in ("http", "https") or not realm_netloc or "@" in realm_netloc:
            raise BadInput(f"{what}: realm {clip(realm, 80)!r} is not an http(s) URL")
        if scheme.lower() != "https" and not self._insecure(realm_netloc):
            raise ServiceUnavailable(
                f"{what}: refused a token realm over plain HTTP ({realm_netloc} is not an --insecure-registry)"
            )
        with self._lock:
            repositories = sorted(self.repositories)
            scopes = [f"repository:{r}:{'pull,push' if r in self._pushing else 'pull'}" for r in repositories]
        if params.get("scope") and params["scope"] not in scopes:
            scopes.insert(0, params["scope"])
        query: dict[str, object] = {"scope": scopes}
        if params.get("service"):
            query["service"] = params["service"]
        target = Target(verify=self._verify_for(realm_netloc, endpoint))
        headers: dict[str, str] = {}
        if creds is not None and creds.identity_token:
            form = {**query, "grant_type": "refresh_token", "client_id": "gpudoctor",
                    "refresh_token": creds.identity_token}  # fmt: skip
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            body = urlencode(form, doseq=True).encode()
            response = self.transport.request(
                "POST", realm, headers, MAX_TOKEN_BYTES, what, body=body, target=target
            )
        else:
            basic = creds.basic() if creds else None
            if basic:
                headers["Authorization"] = basic
            url = f"{realm}{'&' if '?' in realm else '?'}{urlencode(query, doseq=True)}"
            response = self.transport.request("GET", url, headers, MAX_TOKEN_BYTES, what, target=target)
        if response.status != 200:
            meaning = None
            if response.status in (401, 403):
                meaning = (
                    "credentials refused"
                    if creds
                    else "authentication required (no credentials in the Docker config)"
                )
            raise status_error(response.status, response.reason, what, meaning or "no token")
        data = mf.load_json(response.body, what)
        token = data.get("token") or data.get("access_token")
        if not isinstance(token, str) or not token:
            raise BadInput(f"{what}: answer has no token")
        if not visible_header_value(token) or " " in token:
            raise BadInput(f"{what}: the token has characters a header cannot carry (refused)")
        return token

    def _verify_for(self, netloc: str, endpoint: Endpoint) -> bool | str:
        if netloc == endpoint.netloc:
            return endpoint.target.verify
        if self.options.ca_bundle:
            return self.options.ca_bundle
        return not self._insecure(netloc)

    def manifest(
        self, repository: str, reference: str, what: str
    ) -> tuple[mf.Manifest | mf.Index, str, Endpoint]:
        """A manifest or index by tag (resolve) or digest (pull), its digest (checked), and
        the endpoint that answered."""
        by_digest = ":" in reference
        if by_digest:
            mf.check_digest(reference, f"{self.name}: {what}")
        response, endpoint = self.request(
            "GET", repository, f"manifests/{reference}", what, capability="pull" if by_digest else "resolve",
            accept=mf.ACCEPT, max_bytes=mf.MAX_MANIFEST_BYTES,
        )  # fmt: skip
        label = f"{self.name}: {what}"
        digest = mf.sha256_digest(response.body)
        if by_digest:
            mf.verify_digest(response.body, reference, label)
            digest = reference
        elif response.headers.get("docker-content-digest"):
            mf.verify_digest(response.body, response.headers["docker-content-digest"].strip(), label)
        doc = mf.load_json(response.body, label)
        media_type = mf.media_type_of(doc, response.headers.get("content-type"), label)
        return mf.parse(doc, media_type, label), digest, endpoint

    def config(self, repository: str, descriptor: mf.Descriptor) -> dict[str, object]:
        what = f"config blob {descriptor.digest[:19]}"
        if descriptor.size is not None and descriptor.size > mf.MAX_CONFIG_BYTES:
            raise BadInput(
                f"{self.name}: {what} is {descriptor.size} bytes, over the {mf.MAX_CONFIG_BYTES}-byte cap"
            )
        path = f"blobs/{descriptor.digest}"
        response, _ = self.request(
            "GET", repository, path, what, capability="pull", max_bytes=mf.MAX_CONFIG_BYTES
        )
        mf.verify_digest(response.body, descriptor.digest, f"{self.name}: {what}")
        return mf.load_json(response.body, f"{self.name}: {what}")

    @contextmanager
    def open_blob(self, repository: str, descriptor: mf.Descriptor, what: str) -> Iterator[BodyStream]:
        """A blob streamed from the first endpoint that has it (mirrors first): at most the
        descriptor's size; `verify(descriptor.digest)` once the reader is done checks it."""
        label = f"{self.name}: {what}"
        digest = mf.check_digest(descriptor.digest, label)
        if descriptor.size is None:
            raise BadInput(f"{label}: the manifest gives no size for it")
        response, _ = self.request(
            "GET",
            repository,
            f"blobs/{digest}",
            what,
            capability="pull",
            max_bytes=descriptor.size,
            stream=True,
        )
        assert response.stream is not None
        response.stream.hash = hashlib.new(digest.partition(":")[0])
        try:
            yield response.stream
        finally:
            response.stream.close()


@dataclass
class Registries:
    """The clients of one run, one per registry, made on first use (thread-safe)."""

    transport: Transport
    options: RegistryOptions = RegistryOptions()
    _clients: dict[str, RegistryClient] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def client(self, registry: str) -> RegistryClient:
        with self._lock:
            found = self._clients.get(registry)
            if found is None:
                found = self._clients[registry] = RegistryClient(registry, self.transport, self.options)
            return found

    def announce(self, references: list[Reference]) -> None:
        """Tell each registry every repository it will be asked for: one token covers them."""
        for ref in references:
            self.client(ref.registry).expect(ref.repository)


def resolve(
    index: mf.Index, wanted: Platform, where: str
) -> tuple[mf.Descriptor | None, list[Platform], str | None]:
    """The index entry for `wanted` and every platform offered; None (and why) when the
    image does not offer `wanted`: another platform's config is never read in its place."""
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
    names = ", ".join(dict.fromkeys(str(p) for p in offered))
    return None, offered, f"the image offers no {wanted} (it offers {names}); nothing was read for {wanted}"


def fetch_from_registry(ref: Reference, wanted: Platform, client: RegistryClient) -> ImageFacts:
    top, top_digest, endpoint = client.manifest(
        ref.repository, ref.manifest_ref, f"manifest {ref.repository}:{ref.manifest_ref}"
    )
    index_digest, platforms, note = None, [], None
    if isinstance(top, mf.Index):
        index_digest = top_digest
        descriptor, platforms, note = resolve(top, wanted, f"{client.name}: {ref}")
        if descriptor is None:
            facts = missing_platform(str(ref), "registry", wanted, index_digest, platforms, note)
            facts.source_endpoint = endpoint.describe()
            return facts
        top, top_digest, _ = client.manifest(
            ref.repository, descriptor.digest, f"manifest {ref.repository}@{descriptor.digest[:19]}"
        )
        if isinstance(top, mf.Index):
            raise BadInput(f"{client.name}: {ref}: an index inside an index is not supported")
    config = client.config(ref.repository, top.config)
    facts = finish(config, str(ref), "registry", top, top_digest, index_digest, platforms, note)
    facts.source_endpoint = endpoint.describe()
    return facts


def missing_platform(
    reference: str,
    source: str,
    wanted: Platform,
    index_digest: str | None,
    platforms: list[Platform],
    note: str | None,
) -> ImageFacts:
    """Facts for an image without the wanted platform: what it offers, and nothing else."""
    facts = ImageFacts(reference=reference, source=source, index_digest=index_digest, platforms=platforms)
    facts.platform_not_offered = wanted
    reason = note or f"the image offers no {wanted}"
    facts.unknown["platform"] = reason
    facts.unknown["cuda_version"] = f"no config read: {reason}"
    return facts


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
