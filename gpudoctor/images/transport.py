"""A small HTTP(S) client on the standard library for registry reads.

Why not requests/httpx or a registry library: preflight reads two or three small
documents; importing requests alone costs more than skopeo's whole run, and no
maintained Python registry client covers Docker credential helpers, manifest-list
platform listing, size caps and digest checks together. http.client and ssl are
imported only when a registry is contacted.

Secrets: request headers are never put in errors or logs; only the host, the
status line and what was asked for.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

from gpudoctor.errors import BadInput, ServiceUnavailable

if TYPE_CHECKING:
    import http.client

DEFAULT_TIMEOUT_S = 15.0  # per connect / per read
DEFAULT_BODY_DEADLINE_S = 30.0  # per response body, however the bytes trickle in
_READ_CHUNK = 64 * 1024
MAX_REDIRECTS = 5


@dataclass
class Response:
    status: int
    reason: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    url: str


@dataclass
class Transport:
    """Keeps one connection per (scheme, host); counts bytes received."""

    insecure_hosts: frozenset[str] = frozenset()
    ca_bundle: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    body_deadline_s: float = DEFAULT_BODY_DEADLINE_S
    bytes_received: int = 0
    _connections: dict[tuple[str, str], Any] = field(default_factory=dict)
    _ssl_context: Any = None

    def base_url(self, host: str) -> str:
        return f"{'http' if host in self.insecure_hosts else 'https'}://{host}"

    def close(self) -> None:
        for conn in self._connections.values():
            conn.close()
        self._connections.clear()

    def _context(self) -> Any:
        if self._ssl_context is None:
            import ssl

            try:
                self._ssl_context = ssl.create_default_context(cafile=self.ca_bundle)
            except (OSError, ssl.SSLError) as exc:
                raise BadInput(f"cannot use CA bundle {self.ca_bundle}: {exc.__class__.__name__}") from None
        return self._ssl_context

    def _connection(self, scheme: str, netloc: str) -> http.client.HTTPConnection:
        import http.client

        key = (scheme, netloc)
        conn = self._connections.get(key)
        if conn is None:
            if scheme == "https":
                conn = http.client.HTTPSConnection(netloc, timeout=self.timeout_s, context=self._context())
            else:
                conn = http.client.HTTPConnection(netloc, timeout=self.timeout_s)
            self._connections[key] = conn
        return conn

    def request(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        max_bytes: int,
        what: str,
        body: bytes | None = None,
    ) -> Response:
        """One request, following redirects (credentials are not sent to another host)."""
        origin = urlsplit(url).netloc
        for _ in range(MAX_REDIRECTS + 1):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https"):
                raise ServiceUnavailable(f"{what}: redirected to an unsupported URL scheme {parts.scheme!r}")
            send = dict(headers)
            if parts.netloc != origin:
                send.pop("Authorization", None)
            response = self._once(
                method, parts.scheme, parts.netloc, _path(parts), send, max_bytes, what, body
            )
            if response.status in (301, 302, 303, 307, 308) and "location" in response.headers:
                url = urljoin(url, response.headers["location"])
                if response.status == 303:
                    method, body = "GET", None
                continue
            return response
        raise ServiceUnavailable(f"{what}: more than {MAX_REDIRECTS} redirects")

    def _once(
        self,
        method: str,
        scheme: str,
        netloc: str,
        path: str,
        headers: dict[str, str],
        max_bytes: int,
        what: str,
        body: bytes | None,
    ) -> Response:
        import ssl

        for attempt in (1, 2):
            conn = self._connection(scheme, netloc)
            try:
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                return self._read(resp, max_bytes, what, f"{scheme}://{netloc}{path}")
            except ssl.SSLError as exc:
                self._drop(scheme, netloc)
                reason = exc.reason or exc.__class__.__name__
                if isinstance(exc, ssl.SSLCertVerificationError):
                    reason = f"certificate verify failed: {exc.verify_message}"
                raise ServiceUnavailable(f"{what}: TLS failure ({reason})") from None
            except TimeoutError:
                self._drop(scheme, netloc)
                raise ServiceUnavailable(f"{what}: timed out after {self.timeout_s:g}s") from None
            except (ConnectionResetError, BrokenPipeError, _remote_disconnected()) as exc:
                # A kept-alive connection the server closed: retry once on a fresh one.
                self._drop(scheme, netloc)
                if attempt == 2:
                    raise ServiceUnavailable(f"{what}: connection lost ({exc.__class__.__name__})") from None
            except OSError as exc:
                self._drop(scheme, netloc)
                raise ServiceUnavailable(
                    f"{what}: cannot connect ({exc.strerror or exc.__class__.__name__})"
                ) from None
        raise AssertionError("unreachable")

    def _drop(self, scheme: str, netloc: str) -> None:
        conn = self._connections.pop((scheme, netloc), None)
        if conn is not None:
            conn.close()

    def _read_body(self, resp: http.client.HTTPResponse, max_bytes: int, what: str) -> bytes:
        """Up to max_bytes + 1 bytes, within the per-body deadline: a server that drips a
        byte at a time cannot hold preflight for cap x timeout."""
        deadline = time.monotonic() + self.body_deadline_s
        chunks: list[bytes] = []
        received = 0
        while received <= max_bytes:
            if time.monotonic() > deadline:
                resp.close()
                self.close()
                raise ServiceUnavailable(f"{what}: answer not complete within {self.body_deadline_s:g}s")
            chunk = resp.read1(min(_READ_CHUNK, max_bytes + 1 - received))
            if not chunk:
                break
            chunks.append(chunk)
            received += len(chunk)
        if received <= max_bytes:
            resp.read()  # nothing left: marks the response done so the connection is reused
        self.bytes_received += received
        return b"".join(chunks)

    def _read(self, resp: http.client.HTTPResponse, max_bytes: int, what: str, url: str) -> Response:
        headers = {k.lower(): v for k, v in resp.getheaders()}
        self.bytes_received += sum(len(k) + len(v) + 4 for k, v in resp.getheaders()) + 17
        declared = headers.get("content-length", "")
        if resp.status < 300 and declared.isdigit() and int(declared) > max_bytes:
            resp.close()
            self.close()
            raise BadInput(f"{what}: response of {int(declared)} bytes is over the {max_bytes}-byte cap")
        data = self._read_body(resp, max_bytes, what)
        if len(data) > max_bytes:
            resp.close()
            self.close()
            raise BadInput(f"{what}: response is over the {max_bytes}-byte cap")
        return Response(resp.status, resp.reason, headers, data, url)


def _path(parts: Any) -> str:
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def _remote_disconnected() -> type[Exception]:
    import http.client

    return http.client.RemoteDisconnected
