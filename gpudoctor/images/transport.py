"""HTTP for registry reads, on requests + urllib3.

One `Transport` is one `requests.Session`: a urllib3 connection pool per host, shared by
the threads that fetch many images at once. What a registry read adds to plain requests:

* proxies from the environment (`HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY`) or `--proxy`,
  decided here per URL (the session does not trust the environment: that would also read
  `~/.netrc` and `REQUESTS_CA_BUNDLE` behind the user's back);
* retries with backoff on 429/502/503/504, connection resets and timeouts, honouring
  `Retry-After`, all under one total deadline (urllib3's `Retry` has no deadline, and a
  `Retry-After` past it must end the wait at once, not after sleeping);
* a deadline per request covering connect, headers and body: requests' timeout is per
  socket read, so a server dripping one header byte a second, or an endless run of
  `100 Continue`, would never trip it. A timer shuts the request's socket down at the
  deadline (`_Watchdog`), whatever the request is waiting for;
* size caps: a declared `Content-Length` over the cap stops before the body, and a body
  is read in chunks that stop at the cap;
* streamed answers (`stream=True`, for layer blobs): a 200's body is handed over open, as
  a `BodyStream`, still under the watchdog, whose deadline then grows with the cap (a
  blob slower than MIN_STREAM_RATE for its size is given up on);
* redirects followed here, not by requests: never from https to http, and credentials
  (`Authorization`) only to the origin (scheme, host and port) they were meant for.

Errors are one line naming what was asked and the host, never a header value: the
request headers carry credentials.
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

import requests
import requests.adapters
import urllib3
import urllib3.connection
import urllib3.exceptions
from urllib3.util import parse_url

from gpudoctor.errors import BadInput, GpudoctorError, ServiceUnavailable, TemporaryFailure

if TYPE_CHECKING:
    from requests.structures import CaseInsensitiveDict

TIMEOUT_S = 15.0  # connect, and each read
REQUEST_DEADLINE_S = 30.0  # one request: connect + TLS + headers + body
TOTAL_DEADLINE_S = 90.0  # one request with its retries and redirects
RETRY_STATUSES = frozenset({429, 502, 503, 504})
MAX_ATTEMPTS = 5
BACKOFF_S = 0.5  # then 1, 2, 4 ...
MAX_BACKOFF_S = 8.0
MAX_REDIRECTS = 5
POOL_SIZE = 32  # connections kept per host: the width of the image fetch pool
MAX_MESSAGE_TEXT = 120  # characters of server-supplied text quoted in an error
MIN_STREAM_RATE = 256 * 1024  # bytes/s: a streamed body slower than this over its size is dead
_CHUNK = 64 * 1024
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


def clip(text: str, limit: int = MAX_MESSAGE_TEXT) -> str:
    """Server text for an error message: printable, one line, at most `limit` characters."""
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def visible_header_value(value: str) -> bool:
    """True for a value fit to send as a header: visible ASCII and inner spaces only. A
    value from a server (a token, a realm) with CR, LF or other controls would split or
    smuggle headers; one outside ASCII cannot be sent as Latin-1 without guessing."""
    return bool(value) and value.isascii() and value.isprintable() and value == value.strip()


@dataclass(frozen=True)
class Response:
    status: int
    reason: str
    headers: CaseInsensitiveDict[str]
    body: bytes  # empty when `stream` holds the body
    url: str
    stream: BodyStream | None = None  # a streamed 200: the open body, for the caller to read and close


@dataclass(frozen=True)
class _Ask:
    """One request as the caller asked it; redirects replace its URL (and method)."""

    method: str
    url: str
    headers: dict[str, str]
    max_bytes: int
    what: str  # names the request in errors: "registry HOST: manifest app:1"
    body: bytes | None
    target: Target
    stream: bool = False


@dataclass(frozen=True)
class Target:
    """How to reach one endpoint: TLS verification (True, False or a CA file) and a proxy
    that overrides the environment (hosts.toml `proxy`)."""

    verify: bool | str = True
    proxy: str | None = None


# --- the per-request deadline ---------------------------------------------------------


class _Watchdog:
    """Shuts down every socket the current request uses once its deadline passes, so a
    blocked connect, TLS handshake, header or body read returns at once."""

    def __init__(self, seconds: float) -> None:
        self.fired = False
        self.handed_over = False  # a streamed body keeps it running until the body is closed
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = self._arm(seconds)

    def _arm(self, seconds: float) -> threading.Timer:
        timer = threading.Timer(max(seconds, 0.0), self._fire)
        timer.daemon = True
        return timer

    def __enter__(self) -> _Watchdog:
        _current.watchdog = self
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.handed_over:
            self._timer.cancel()
        _current.watchdog = None

    def rearm(self, seconds: float) -> None:
        """A new deadline, `seconds` from now, for the sockets already watched."""
        self._timer.cancel()
        self._timer = self._arm(seconds)
        self._timer.start()

    def cancel(self) -> None:
        self._timer.cancel()

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            if self.fired:
                _shutdown(sock)
            else:
                self._sockets.append(sock)

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            for sock in self._sockets:
                _shutdown(sock)


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed
        sock.shutdown(socket.SHUT_RDWR)


class _Current(threading.local):
    watchdog: _Watchdog | None = None


_current = _Current()


class _Watched:
    """Mixed into urllib3's connections: a new socket, or a kept-alive one starting its
    next request, is handed to the current request's watchdog."""

    sock: socket.socket | None

    def _new_conn(self) -> socket.socket:
        sock: socket.socket = super()._new_conn()  # type: ignore[misc]
        if _current.watchdog is not None:
            _current.watchdog.watch(sock)
        return sock

    def request(self, *args: object, **kwargs: object) -> None:
        if self.sock is not None and _current.watchdog is not None:
            _current.watchdog.watch(self.sock)
        super().request(*args, **kwargs)  # type: ignore[misc]


class _HTTPConnection(_Watched, urllib3.connection.HTTPConnection):
    pass


class _HTTPSConnection(_Watched, urllib3.connection.HTTPSConnection):
    pass


class _HTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


class _Adapter(requests.adapters.HTTPAdapter):
    """requests' adapter with watched connections, direct and through a proxy. Retries are
    the transport's (under its deadline), so urllib3 makes one attempt."""

    def __init__(self) -> None:
        super().__init__(pool_maxsize=POOL_SIZE, max_retries=0)

    def init_poolmanager(self, *args: object, **kwargs: object) -> None:
        super().init_poolmanager(*args, **kwargs)  # type: ignore[arg-type]
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **kwargs: object) -> urllib3.PoolManager:
        manager: urllib3.PoolManager = super().proxy_manager_for(proxy, **kwargs)
        manager.pool_classes_by_scheme = _POOLS
        return manager


# --- failures --------------------------------------------------------------------------


class _Retryable(Exception):
    """A transient failure (reset, timeout): worth another attempt while time is left."""


def _origin(url: str) -> tuple[str, str, int]:
    parsed = parse_url(url)
    scheme = (parsed.scheme or "").lower()
    return scheme, (parsed.host or "").lower(), parsed.port or (443 if scheme == "https" else 80)


def same_origin(url: str, other: str) -> bool:
    """Scheme, host and port alike: where credentials for one may go to the other."""
    return _origin(url) == _origin(other)


def _netloc(url: str) -> str:
    scheme, host, port = _origin(url)
    host = f"[{host}]" if ":" in host else host
    return host if port == (443 if scheme == "https" else 80) else f"{host}:{port}"


def _describe_tls(exc: BaseException, netloc: str) -> str:
    text = str(exc)
    if "WRONG_VERSION_NUMBER" in text or "record layer failure" in text:
        return (
            f"TLS failure (the server does not speak TLS; if {netloc} is a plain-HTTP registry, "
            f"pass --insecure-registry {netloc})"
        )
    if "CERTIFICATE_VERIFY_FAILED" in text:
        reason = text.split("certificate verify failed:", 1)[-1].split("(_ssl", 1)[0].strip(" )'\"")
        return f"TLS failure (certificate verify failed: {clip(reason, 80)})"
    return "TLS failure (handshake failed)"


def _find(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    """`kind` anywhere in the chain of causes requests and urllib3 wrap around a failure."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        item = stack.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, kind):
            return item
        stack.extend(
            [item.__cause__, item.__context__, *[a for a in item.args if isinstance(a, BaseException)]]
        )
        reason = getattr(item, "reason", None)
        if isinstance(reason, BaseException):
            stack.append(reason)
    return None


# --- the transport -----------------------------------------------------------------------


class Transport:
    """One session (connection pools, per host) for every registry request of a run."""

    def __init__(
        self,
        *,
        proxy: str | None = None,
        timeout_s: float = TIMEOUT_S,
        request_deadline_s: float = REQUEST_DEADLINE_S,
        total_deadline_s: float = TOTAL_DEADLINE_S,
        backoff_s: float = BACKOFF_S,
    ) -> None:
        self.proxy = proxy
        self.timeout_s = timeout_s
        self.request_deadline_s = request_deadline_s
        self.total_deadline_s = total_deadline_s
        self.backoff_s = backoff_s
        self.session = requests.Session()
        self.session.trust_env = False  # proxies are decided per URL below; no ~/.netrc
        adapter = _Adapter()
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        # requests adds `Accept-Encoding: gzip, deflate`; a registry answer is small JSON,
        # and an encoded one would be inflated past what the cap counts.
        self.session.headers = {"User-Agent": "gpudoctor", "Accept-Encoding": "identity"}  # type: ignore[assignment]

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def proxies_for(self, url: str, target: Target) -> dict[str, str]:
        if target.proxy:
            return {"http": target.proxy, "https": target.proxy}
        if requests.utils.should_bypass_proxies(url, no_proxy=None):
            return {}
        if self.proxy:
            return {"http": self.proxy, "https": self.proxy}
        return requests.utils.get_environ_proxies(url, no_proxy=None)

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        max_bytes: int,
        what: str,
        *,
        body: bytes | None = None,
        target: Target = Target(),
        stream: bool = False,
    ) -> Response:
        """One answer, after redirects and retries. A 429/5xx that outlasts the retries is
        returned as it is, for the caller to name; a transport failure raises. With `stream`,
        a 200's body is not read: `Response.stream` is open, for the caller to close."""
        ask = _Ask(method, url, dict(headers), max_bytes, what, body, target, stream)
        deadline = time.monotonic() + self.total_deadline_s
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                response = self._follow(ask, deadline)
            except _Retryable as exc:
                problem, wait, response = str(exc), self._backoff(attempt), None
            else:
                if response.status not in RETRY_STATUSES:
                    return response
                problem = f"HTTP {response.status}"
                wait = self._retry_after(response.headers.get("retry-after"), attempt)
            left = deadline - time.monotonic()
            if attempt == MAX_ATTEMPTS or wait > left:
                if response is not None:
                    return response
                raise TemporaryFailure(f"{what}: {problem} (gave up after {attempt} attempts)")
            time.sleep(wait)
        raise AssertionError("unreachable")

    def _backoff(self, attempt: int) -> float:
        return min(self.backoff_s * 2 ** (attempt - 1), MAX_BACKOFF_S)

    def _retry_after(self, value: str | None, attempt: int) -> float:
        if value:
            try:
                return max(urllib3.util.Retry().parse_retry_after(value), 0.0)
            except (urllib3.exceptions.InvalidHeader, ValueError, OverflowError):
                pass  # an unreadable Retry-After: our own backoff
        return self._backoff(attempt)

    def _follow(self, ask: _Ask, deadline: float) -> Response:
        origin = _origin(ask.url)
        what = ask.what
        for _ in range(MAX_REDIRECTS + 1):
            here = _origin(ask.url)
            if here[0] not in ("http", "https"):
                raise ServiceUnavailable(
                    f"{what}: redirected to an unsupported URL scheme {clip(here[0], 20)!r}"
                )
            if here != origin:  # credentials are for the origin they were given for, only
                ask = replace(
                    ask, headers={k: v for k, v in ask.headers.items() if k.lower() != "authorization"}
                )
            response = self._once(ask, deadline)
            if response.status not in _REDIRECTS or "location" not in response.headers:
                return response
            try:
                next_url = urljoin(ask.url, response.headers["location"])
                urlsplit(next_url).port  # noqa: B018 - raises ValueError on a bad host or port
                parse_url(next_url)
            except (ValueError, urllib3.exceptions.LocationParseError):
                raise BadInput(f"{what}: redirected to a malformed URL") from None
            if here[0] == "https" and _origin(next_url)[0] != "https":
                raise ServiceUnavailable(
                    f"{what}: refused a redirect from https to plain http ({_netloc(next_url)})"
                )
            ask = replace(ask, url=next_url)
            if response.status == 303:
                ask = replace(ask, method="GET", body=None)
        raise ServiceUnavailable(f"{what}: more than {MAX_REDIRECTS} redirects")

    def _once(self, ask: _Ask, deadline: float) -> Response:
        netloc = _netloc(ask.url)
        seconds = min(self.request_deadline_s, deadline - time.monotonic())
        if seconds <= 0:
            raise TemporaryFailure(f"{ask.what}: no answer from {netloc} within {self.total_deadline_s:g}s")
        with _Watchdog(seconds) as watchdog:
            try:
                response = self._exchange(ask, seconds)
            except GpudoctorError:
                raise
            except Exception as exc:  # noqa: BLE001 - every library failure becomes one line
                if watchdog.fired:
                    raise _Retryable(f"no complete answer from {netloc} within {seconds:.1f}s") from None
                raise self._failure(exc, ask.what, netloc) from None
            if response.stream is not None:
                watchdog.handed_over = True
                watchdog.rearm(self.request_deadline_s + ask.max_bytes / MIN_STREAM_RATE)
                response.stream.watchdog = watchdog
            return response

    def _exchange(self, ask: _Ask, seconds: float) -> Response:
        started = time.monotonic()
        what, max_bytes = ask.what, ask.max_bytes
        answer = self.session.request(
            ask.method,
            ask.url,
            headers=ask.headers,
            data=ask.body,
            stream=True,
            allow_redirects=False,
            verify=ask.target.verify,
            proxies=self.proxies_for(ask.url, ask.target),
            timeout=(min(self.timeout_s, seconds), self.timeout_s),
        )
        if ask.stream and answer.status_code == 200:
            self._check_declared(answer, what, max_bytes)
            stream = BodyStream(answer, what, _netloc(ask.url), max_bytes)
            return Response(200, clip(answer.reason or ""), answer.headers, b"", ask.url, stream)
        with answer:
            self._check_declared(answer, what, max_bytes)
            parts: list[bytes] = []
            size = 0
            if ask.method != "HEAD":
                for chunk in answer.iter_content(_CHUNK):
                    parts.append(chunk)
                    size += len(chunk)
                    if size > max_bytes:
                        raise BadInput(f"{what}: answer is over the {max_bytes}-byte cap")
                    if time.monotonic() - started > seconds:
                        raise _Retryable(f"no complete answer from {_netloc(ask.url)} within {seconds:.1f}s")
            return Response(
                answer.status_code, clip(answer.reason or ""), answer.headers, b"".join(parts), ask.url
            )

    @staticmethod
    def _check_declared(answer: requests.Response, what: str, max_bytes: int) -> None:
        declared = answer.headers.get("content-length", "").strip()
        if (
            answer.status_code < 300
            and declared.isascii()
            and declared.isdigit()
            and int(declared) > max_bytes
        ):
            answer.close()
            raise BadInput(f"{what}: answer of {declared[:24]} bytes is over the {max_bytes}-byte cap")

    @staticmethod
    def _failure(exc: BaseException, what: str, netloc: str) -> Exception:
        """A requests/urllib3 failure as one line: transient ones to be retried."""
        if _find(exc, urllib3.exceptions.SSLError) is not None or isinstance(
            exc, requests.exceptions.SSLError
        ):
            return ServiceUnavailable(f"{what}: {_describe_tls(exc, netloc)}")
        if isinstance(exc, requests.exceptions.ProxyError) or _find(exc, urllib3.exceptions.ProxyError):
            return ServiceUnavailable(f"{what}: the proxy refused or failed the connection to {netloc}")
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            return _Retryable(f"cannot connect to {netloc} (timed out)")
        if isinstance(exc, requests.exceptions.Timeout) or _find(exc, TimeoutError):
            return _Retryable(f"{netloc} stopped answering (timed out)")
        if _find(exc, urllib3.exceptions.NameResolutionError) is not None:
            return ServiceUnavailable(f"{what}: cannot resolve the host of {netloc}")
        if _find(exc, ConnectionRefusedError) is not None or _find(
            exc, urllib3.exceptions.NewConnectionError
        ):
            return ServiceUnavailable(f"{what}: cannot connect to {netloc} (connection refused)")
        if isinstance(exc, requests.exceptions.InvalidHeader | UnicodeError | requests.exceptions.InvalidURL):
            return BadInput(
                f"{what}: a value from the server cannot be used in a request ({exc.__class__.__name__})"
            )
        if isinstance(exc, ValueError):  # requests parsing a Location it will not follow anyway
            return BadInput(f"{what}: malformed answer from {netloc} ({clip(str(exc), 60)})")
        if isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.ChunkedEncodingError):
            return _Retryable(f"connection to {netloc} lost ({clip(_root_name(exc), 60)})")
        if isinstance(exc, urllib3.exceptions.HTTPError | requests.exceptions.RequestException | OSError):
            return ServiceUnavailable(f"{what}: bad answer from {netloc} ({exc.__class__.__name__})")
        return ServiceUnavailable(f"{what}: request to {netloc} failed ({exc.__class__.__name__})")


class BodyStream:
    """The open body of a streamed 200, read as it arrives (`read(size)`, as tarfile reads):
    at most `max_bytes`, each read under the request's watchdog, hashed when `hash` is set.
    A failure mid-body is one line (temporary: the caller may ask again); `close()` ends
    the request."""

    def __init__(self, answer: requests.Response, what: str, netloc: str, max_bytes: int) -> None:
        self._answer = answer
        self._what, self._netloc, self._max_bytes = what, netloc, max_bytes
        self.received = 0
        self.hash: hashlib._Hash | None = None
        self.watchdog: _Watchdog | None = None

    def read(self, size: int = -1) -> bytes:
        try:
            data: bytes = self._answer.raw.read(None if size < 0 else size, decode_content=False)
        except Exception as exc:  # noqa: BLE001 - every library failure becomes one line
            if self.watchdog is not None and self.watchdog.fired:
                raise TemporaryFailure(f"{self._what}: {self._netloc} sent too slowly (gave up)") from None
            failure = Transport._failure(exc, self._what, self._netloc)
            if isinstance(failure, _Retryable):
                failure = TemporaryFailure(f"{self._what}: {failure}")
            raise failure from None
        self.received += len(data)
        if self.received > self._max_bytes:
            raise BadInput(f"{self._what}: answer is over the {self._max_bytes}-byte cap")
        if self.hash is not None:
            self.hash.update(data)
        return data

    def verify(self, digest: str) -> None:
        """Read what the reader left; then the body must be `max_bytes` long and hash to `digest`."""
        while self.read(_CHUNK):
            pass
        assert self.hash is not None
        if self.received != self._max_bytes or self.hash.hexdigest() != digest.partition(":")[2]:
            raise BadInput(f"{self._what}: does not match its digest (or its size, {self._max_bytes})")

    def close(self) -> None:
        if self.watchdog is not None:
            self.watchdog.cancel()
        self._answer.close()


def _root_name(exc: BaseException) -> str:
    """The innermost cause's class name: RemoteDisconnected, ConnectionResetError, ..."""
    while True:
        inner = exc.__cause__ or next((a for a in exc.args if isinstance(a, BaseException)), None)
        if inner is None:
            inner = (
                getattr(exc, "reason", None)
                if isinstance(getattr(exc, "reason", None), BaseException)
                else None
            )
        if inner is None or inner is exc:
            return exc.__class__.__name__
        exc = inner
