"""A small HTTP/1.1 client on sockets for registry reads.

Why not requests/httpx, a registry library or even http.client: preflight reads two or
three small documents and has to stay within a few times a Go binary's wall time.
requests alone costs more than skopeo's whole run; http.client drags in the email
package and ssl (~10 ms) even for a plain-HTTP registry. No maintained Python
registry client covers Docker credential helpers, manifest-list platform listing, size
caps and digest checks together. What a registry read needs of HTTP is small: GET and
POST, a body framed by Content-Length, chunked coding or the connection's end, redirects,
and keep-alive so a TLS handshake is paid once per host. ssl is imported only for https;
plain HTTP runs on the C module `_socket` and splits URLs itself (`images/urls.py`), since
`socket` and `urllib.parse` cost ~6 ms to import between them.

Secrets: request headers are never put in errors or logs; only the host, the status
line and what was asked for.
"""

from __future__ import annotations

import io
import time

from gpudoctor.errors import BadInput, ServiceUnavailable
from gpudoctor.images.urls import BadURL, host_and_port, join_url, literal_family, sockets, split_url

TYPE_CHECKING = False  # typing is not imported at run time: see docs/startup.md
if TYPE_CHECKING:
    import ssl

    from _typeshed import WriteableBuffer

DEFAULT_TIMEOUT_S = 15.0  # per connect / per read
DEFAULT_BODY_DEADLINE_S = 30.0  # per response body, however the bytes trickle in
MAX_REDIRECTS = 5
MAX_HEADER_LINE = 64 * 1024
MAX_HEADERS = 100
_READ_CHUNK = 64 * 1024
_NO_BODY = (204, 304)


class Response:
    __slots__ = ("status", "reason", "headers", "body", "url")

    def __init__(self, status: int, reason: str, headers: dict[str, str], body: bytes, url: str) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers  # lower-case names; a repeated header keeps its last value
        self.body = body
        self.url = url


class _Closed(Exception):
    """The server closed a kept-alive connection before answering: retry on a fresh one."""


class _Receiver(io.RawIOBase):
    """What `sock.makefile("rb")` buffers, for a `_socket.socket` (which has no makefile)
    and an `ssl.SSLSocket` alike. A timeout surfaces from recv_into as TimeoutError."""

    def __init__(self, sock: sockets.socket) -> None:
        super().__init__()
        self.sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        return self.sock.recv_into(buffer)


class _Connection:
    """One socket to one (scheme, host:port), reusable while responses are fully read."""

    def __init__(self, sock: sockets.socket) -> None:
        self.sock = sock
        self.reader = io.BufferedReader(_Receiver(sock))
        self.used = False  # has answered before: an immediate EOF means a stale keep-alive
        self.reusable = True

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


class _Body:
    """Reads one response body under a byte cap and a deadline, counting what arrived."""

    def __init__(self, conn: _Connection, max_bytes: int, deadline: float, on_late: str) -> None:
        self.conn = conn
        self.left = max_bytes + 1  # one byte over the cap is enough to know it is over
        self.deadline = deadline
        self.on_late = on_late
        self.parts: list[bytes] = []
        self.received = 0

    def _read(self, size: int, line: bool = False) -> bytes:
        if time.monotonic() > self.deadline:
            raise ServiceUnavailable(self.on_late)
        data = self.conn.reader.readline(size) if line else self.conn.reader.read1(size)
        self.received += len(data)
        return data

    def exactly(self, size: int) -> bool:
        """Keep `size` bytes (fewer if over the cap); False when the cap stopped us."""
        while size > 0:
            if self.left <= 0:
                return False
            data = self._read(min(size, self.left, _READ_CHUNK))
            if not data:
                raise ConnectionResetError("body ended early")
            self.parts.append(data)
            self.left -= len(data)
            size -= len(data)
        return True

    def until_close(self) -> None:
        while self.left > 0:
            data = self._read(min(self.left, _READ_CHUNK))
            if not data:
                return
            self.parts.append(data)
            self.left -= len(data)

    def chunked(self) -> bool:
        while True:
            size_line = self._read(MAX_HEADER_LINE, line=True)
            try:
                size = int(size_line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise ConnectionResetError("bad chunk size") from None
            if size == 0:
                break
            if not self.exactly(size):
                return False
            if self._read(2, line=True) not in (b"\r\n", b"\n"):
                raise ConnectionResetError("bad chunk end")
        while self._read(MAX_HEADER_LINE, line=True) not in (b"\r\n", b"\n", b""):
            pass  # trailers
        return True

    def value(self) -> bytes:
        return b"".join(self.parts)


class Transport:
    """Keeps one connection per (scheme, host); counts bytes received."""

    def __init__(
        self,
        insecure_hosts: frozenset[str] = frozenset(),
        ca_bundle: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        body_deadline_s: float = DEFAULT_BODY_DEADLINE_S,
    ) -> None:
        self.insecure_hosts = insecure_hosts
        self.ca_bundle = ca_bundle
        self.timeout_s = timeout_s
        self.body_deadline_s = body_deadline_s
        self.bytes_received = 0
        self._connections: dict[tuple[str, str], _Connection] = {}
        self._ssl_context: object | None = None

    def base_url(self, host: str) -> str:
        return f"{'http' if host in self.insecure_hosts else 'https'}://{host}"

    def close(self) -> None:
        for conn in self._connections.values():
            conn.close()
        self._connections.clear()

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
        origin: str | None = None  # the first URL's netloc: credentials go nowhere else
        for _ in range(MAX_REDIRECTS + 1):
            scheme, netloc, path = split_url(url)
            if scheme not in ("http", "https"):
                raise ServiceUnavailable(f"{what}: redirected to an unsupported URL scheme {scheme!r}")
            try:
                address = host_and_port(netloc, 443 if scheme == "https" else 80)
            except BadURL as exc:
                raise BadInput(f"{what}: {exc}") from None
            origin = origin or netloc
            send = dict(headers)
            if netloc != origin:
                send.pop("Authorization", None)
            response = self._once(method, scheme, netloc, address, path, send, max_bytes, what, body)
            if response.status in (301, 302, 303, 307, 308) and "location" in response.headers:
                try:
                    url = join_url(url, response.headers["location"])
                except ValueError:  # urljoin refusing a malformed Location (a bracket, say)
                    raise BadInput(f"{what}: redirected to a malformed URL") from None
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
        address: tuple[str, int],
        path: str,
        headers: dict[str, str],
        max_bytes: int,
        what: str,
        body: bytes | None,
    ) -> Response:
        for attempt in (1, 2):
            try:
                conn = self._connection(scheme, netloc, address)
                return self._exchange(conn, method, scheme, netloc, path, headers, max_bytes, what, body)
            except _Closed:
                self._drop(scheme, netloc)
                if attempt == 2:
                    raise ServiceUnavailable(f"{what}: connection closed without an answer") from None
            except TimeoutError:
                self._drop(scheme, netloc)
                raise ServiceUnavailable(f"{what}: timed out after {self.timeout_s:g}s") from None
            except (ServiceUnavailable, BadInput):
                self._drop(scheme, netloc)
                raise
            except OSError as exc:
                self._drop(scheme, netloc)
                raise ServiceUnavailable(f"{what}: {_describe(exc)}") from None
        raise AssertionError("unreachable")

    def _connection(self, scheme: str, netloc: str, address: tuple[str, int]) -> _Connection:
        key = (scheme, netloc)
        conn = self._connections.get(key)
        if conn is None:
            sock = _connect(*address, self.timeout_s)
            if scheme == "https":
                sock = self._tls(sock, address[0])
            conn = self._connections[key] = _Connection(sock)
        return conn

    def _tls(self, raw: sockets.socket, host: str) -> ssl.SSLSocket:
        """The connected socket wrapped in TLS; ssl wants a `socket.socket`, so the https
        branch (and only it) imports socket and hands the descriptor over to one."""
        try:
            context = self._context()
        except BaseException:
            raw.close()
            raise
        import socket

        sock = socket.socket(raw.family, raw.type, raw.proto, raw.detach())
        sock.settimeout(self.timeout_s)  # a socket made from a descriptor starts blocking
        try:
            return context.wrap_socket(sock, server_hostname=host)
        except BaseException:
            sock.close()
            raise

    def _context(self) -> ssl.SSLContext:
        import ssl

        if self._ssl_context is None:
            try:
                self._ssl_context = ssl.create_default_context(cafile=self.ca_bundle)
            except (OSError, ssl.SSLError) as exc:
                raise BadInput(f"cannot use CA bundle {self.ca_bundle}: {exc.__class__.__name__}") from None
        return self._ssl_context  # type: ignore[return-value]

    def _exchange(
        self,
        conn: _Connection,
        method: str,
        scheme: str,
        netloc: str,
        path: str,
        headers: dict[str, str],
        max_bytes: int,
        what: str,
        body: bytes | None,
    ) -> Response:
        lines = [
            f"{method} {path} HTTP/1.1",
            f"Host: {netloc}",
            "Accept-Encoding: identity",
        ]
        lines.extend(f"{name}: {value}" for name, value in headers.items())
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        reused, conn.used = conn.used, True
        try:
            conn.sock.sendall("\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + (body or b""))
            status, reason, version, received = self._status_line(conn, what)
        except (ConnectionResetError, BrokenPipeError):
            if reused:  # the server closed a kept-alive connection: not this request's failure
                raise _Closed from None
            raise
        while 100 <= status < 200:  # 100 Continue and friends: the real answer follows
            received += self._headers(conn, what)[1]
            status, reason, version, more = self._status_line(conn, what)
            received += more
        response_headers, header_bytes = self._headers(conn, what)
        received += header_bytes
        declared = response_headers.get("content-length", "").strip()
        if status < 300 and declared.isdigit() and int(declared) > max_bytes:
            raise BadInput(f"{what}: response of {int(declared)} bytes is over the {max_bytes}-byte cap")
        reader = _Body(
            conn, max_bytes, time.monotonic() + self.body_deadline_s,
            f"{what}: answer not complete within {self.body_deadline_s:g}s",
        )  # fmt: skip
        complete = self._read_body(reader, method, status, response_headers)
        self.bytes_received += received + reader.received
        if not complete:
            raise BadInput(f"{what}: response is over the {max_bytes}-byte cap")
        keep = version == "HTTP/1.1" and "close" not in response_headers.get("connection", "").lower()
        conn.reusable = conn.reusable and keep
        if not conn.reusable:
            self._drop(scheme, netloc)
        return Response(status, reason, response_headers, reader.value(), f"{scheme}://{netloc}{path}")

    @staticmethod
    def _read_body(reader: _Body, method: str, status: int, headers: dict[str, str]) -> bool:
        """The body by its framing; False when it is over the cap (the connection is then spent)."""
        if method == "HEAD" or status in _NO_BODY:
            return True
        if "chunked" in headers.get("transfer-encoding", "").lower():
            complete = reader.chunked()
        elif headers.get("content-length", "").strip().isdigit():
            complete = reader.exactly(int(headers["content-length"].strip()))
        else:
            reader.conn.reusable = False  # framed by the end of the connection
            reader.until_close()
            complete = reader.left > 0
        if not complete:
            reader.conn.reusable = False
        return complete

    @staticmethod
    def _status_line(conn: _Connection, what: str) -> tuple[int, str, str, int]:
        line = conn.reader.readline(MAX_HEADER_LINE)
        if not line:
            raise ConnectionResetError("connection closed without an answer")
        version, _, rest = line.decode("latin-1").strip().partition(" ")
        code, _, reason = rest.partition(" ")
        if not version.startswith("HTTP/") or not code.isdigit():
            raise ServiceUnavailable(f"{what}: not an HTTP answer: {line[:40]!r}")
        return int(code), reason, version, len(line)

    @staticmethod
    def _headers(conn: _Connection, what: str) -> tuple[dict[str, str], int]:
        headers: dict[str, str] = {}
        received = 0
        for _ in range(MAX_HEADERS + 1):
            line = conn.reader.readline(MAX_HEADER_LINE)
            received += len(line)
            if line in (b"\r\n", b"\n", b""):
                return headers, received
            name, sep, value = line.decode("latin-1").partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        raise ServiceUnavailable(f"{what}: answer has more than {MAX_HEADERS} headers")

    def _drop(self, scheme: str, netloc: str) -> None:
        conn = self._connections.pop((scheme, netloc), None)
        if conn is not None:
            conn.close()


def _connect(host: str, port: int, timeout_s: float) -> sockets.socket:
    """A TCP connection as socket.create_connection makes one. An IP literal is connected
    to directly: connect() parses a numeric address with inet_pton, whereas the first
    getaddrinfo() in a process costs ~4 ms of resolver set-up even for "127.0.0.1". A name
    is resolved and each address tried in turn; the last failure is raised."""
    family = literal_family(host)
    if family is not None:
        targets = [(family, 0, (host, port))]
    else:
        # As bytes (host_and_port admits only ASCII): a str would load the idna codec.
        found = sockets.getaddrinfo(host.encode("ascii"), port, 0, sockets.SOCK_STREAM)
        targets = [(info[0], info[2], info[4]) for info in found]
    error = OSError("getaddrinfo returns an empty list")
    for family, proto, sockaddr in targets:
        sock = None
        try:
            sock = sockets.socket(family, sockets.SOCK_STREAM, proto)
            sock.settimeout(timeout_s)
            sock.connect(sockaddr)
            # A request is one write: Nagle's algorithm would only hold it back.
            sock.setsockopt(sockets.IPPROTO_TCP, sockets.TCP_NODELAY, 1)
            return sock
        except OSError as exc:
            if sock is not None:
                sock.close()
            error = exc
    raise error


def _describe(exc: OSError) -> str:
    """One line for a socket or TLS failure, without importing ssl for plain HTTP."""
    if type(exc).__module__ == "ssl":
        reason = getattr(exc, "reason", None) or exc.__class__.__name__
        if exc.__class__.__name__ == "SSLCertVerificationError":
            reason = f"certificate verify failed: {getattr(exc, 'verify_message', '')}"
        return f"TLS failure ({reason})"
    if isinstance(exc, ConnectionResetError | BrokenPipeError):
        return f"connection lost ({exc.__class__.__name__})"
    return f"cannot connect ({exc.strerror or exc.__class__.__name__})"
