"""The socket HTTP/1.1 client against a scripted loopback server that writes raw bytes:
framings (Content-Length, chunked, end of connection), keep-alive reuse, a kept-alive
connection the server closed, interim 1xx answers, caps and malformed answers; IPv4 and
IPv6 literals and a resolved name, redirects, timeouts and URLs the client refuses."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest

from gpudoctor.errors import BadInput, ServiceUnavailable
from gpudoctor.images.transport import Response, Transport
from tests.support.imports import modules_loaded_by

# One script per accepted connection: a list of raw answers, one per request read; "{host}"
# in an answer becomes the server's host:port.
Script = list[bytes]


class RawServer:
    def __init__(self, scripts: list[Script], bind: str = "127.0.0.1") -> None:
        family = socket.AF_INET6 if ":" in bind else socket.AF_INET
        self.listener = socket.create_server((bind, 0), family=family)
        self.port = self.listener.getsockname()[1]
        self.host = f"[{bind}]:{self.port}" if ":" in bind else f"{bind}:{self.port}"
        self.scripts = scripts
        self.connections = 0
        self.requests: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        for script in self.scripts:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                for answer in script:
                    request = _read_request(conn)
                    if not request:
                        break
                    self.requests.append(request)
                    conn.sendall(answer.replace(b"{host}", self.host.encode()))

    def close(self) -> None:
        self.listener.close()
        self.thread.join(timeout=5)


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    return data


@contextlib.contextmanager
def serving(*scripts: Script, bind: str = "127.0.0.1") -> Iterator[RawServer]:
    server = RawServer(list(scripts), bind)
    try:
        yield server
    finally:
        server.close()


def get(
    server: RawServer,
    path: str = "/v2/",
    max_bytes: int = 1 << 20,
    transport: Transport | None = None,
    host: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    transport = transport or Transport(insecure_hosts=frozenset({server.host}), timeout_s=2)
    url = f"http://{host or server.host}{path}"
    return transport.request("GET", url, headers or {"User-Agent": "t"}, max_bytes, "test")


def ok(body: bytes, extra: str = "") -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


def test_content_length_body_and_request_line() -> None:
    with serving([ok(b'{"a": 1}', "Docker-Content-Digest: sha256:x\r\n")]) as server:
        response = get(server, "/v2/app/manifests/1?x=y")
    assert (response.status, response.reason, response.body) == (200, "OK", b'{"a": 1}')
    assert response.headers["docker-content-digest"] == "sha256:x"
    assert server.requests[0].startswith(b"GET /v2/app/manifests/1?x=y HTTP/1.1\r\n")
    assert f"Host: {server.host}\r\n".encode() in server.requests[0]


def test_chunked_body_with_extensions_and_trailers() -> None:
    answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;name=v\r\nWiki\r\n5\r\npedia\r\n0\r\nX-Trailer: 1\r\n\r\n"
    with serving([answer, ok(b"second")]) as server:
        transport = Transport(insecure_hosts=frozenset({server.host}), timeout_s=2)
        assert get(server, transport=transport).body == b"Wikipedia"
        # The chunked body was read to its end, so the connection carries the next request.
        assert get(server, transport=transport).body == b"second"
    assert server.connections == 1


def test_keep_alive_reuses_one_connection_and_counts_bytes() -> None:
    first, second = ok(b"one"), ok(b"two-two")
    with serving([first, second]) as server:
        transport = Transport(insecure_hosts=frozenset({server.host}), timeout_s=2)
        assert [get(server, transport=transport).body for _ in range(2)] == [b"one", b"two-two"]
        transport.close()
    assert server.connections == 1
    assert transport.bytes_received == len(first) + len(second)


def test_kept_alive_connection_closed_by_the_server_is_retried_once() -> None:
    with serving([ok(b"one")], [ok(b"fresh")]) as server:
        transport = Transport(insecure_hosts=frozenset({server.host}), timeout_s=2)
        assert get(server, transport=transport).body == b"one"
        assert get(server, transport=transport).body == b"fresh"
    assert server.connections == 2


def test_connection_close_and_http10_bodies_end_with_the_connection() -> None:
    with serving([b"HTTP/1.0 200 OK\r\n\r\nuntil the end"], [ok(b"next", "Connection: close\r\n")]) as server:
        transport = Transport(insecure_hosts=frozenset({server.host}), timeout_s=2)
        assert get(server, transport=transport).body == b"until the end"
        assert get(server, transport=transport).body == b"next"
        assert transport._connections == {}
    assert server.connections == 2


def test_interim_100_answer_is_skipped() -> None:
    with serving([b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"real")]) as server:
        assert get(server).body == b"real"


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 100,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n" + b"x" * 100 + b"\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b"x" * 100,
    ],
    ids=["content-length", "chunked", "until-close"],
)
def test_body_over_the_cap_is_refused_whatever_the_framing(answer: bytes) -> None:
    with serving([answer]) as server, pytest.raises(BadInput, match="over the 10-byte cap"):
        get(server, max_bytes=10)


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"SSH-2.0-OpenSSH_9.2\r\n", "test: not an HTTP answer"),
        (b"HTTP/1.1 200 OK\r\n" + b"X-A: 1\r\n" * 101 + b"\r\n", "test: answer has more than 100 headers"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "test: connection lost"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort", "test: connection lost"),
        (b"", "test: connection lost"),
    ],
    ids=["not-http", "header-flood", "bad-chunk", "short-body", "no-answer"],
)
def test_malformed_answers_are_one_line_errors(answer: bytes, message: str) -> None:
    with serving([answer]) as server, pytest.raises((ServiceUnavailable, BadInput)) as err:
        get(server)
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_nothing_listening_is_cannot_connect() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    transport = Transport(insecure_hosts=frozenset({f"127.0.0.1:{port}"}), timeout_s=2)
    with pytest.raises(ServiceUnavailable, match="test: cannot connect"):
        transport.request("GET", f"http://127.0.0.1:{port}/v2/", {}, 100, "test")


def ipv6_loopback() -> bool:
    try:
        with socket.create_server(("::1", 0), family=socket.AF_INET6):
            return True
    except OSError:
        return False


@pytest.mark.skipif(not ipv6_loopback(), reason="::1 cannot be bound here")
def test_ipv6_literal_is_connected_and_named_in_brackets() -> None:
    with serving([ok(b"six")], bind="::1") as server:
        assert get(server).body == b"six"
    assert f"Host: [::1]:{server.port}\r\n".encode() in server.requests[0]


def test_a_host_name_is_resolved() -> None:
    with serving([ok(b"by name")]) as server:
        assert get(server, host=f"localhost:{server.port}").body == b"by name"
    assert f"Host: localhost:{server.port}\r\n".encode() in server.requests[0]


def moved(status: int, location: str) -> bytes:
    return f"HTTP/1.1 {status} Moved\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n".encode()


@pytest.mark.parametrize(
    ("location", "target"),
    [
        ("/v2/elsewhere?x=1", "/v2/elsewhere?x=1"),
        ("../other", "/v2/other"),
        ("sibling#part", "/v2/app/sibling"),
        ("?page=2", "/v2/app/blob?page=2"),
        ("http://{host}/absolute#fragment", "/absolute"),
        ("HTTP://{host}", "/"),
    ],
    ids=["path", "dot-dot", "relative-fragment", "query-only", "absolute", "absolute-no-path"],
)
def test_redirects_on_the_same_host_keep_the_connection_and_credentials(location: str, target: str) -> None:
    with serving([moved(302, location), ok(b"moved")]) as server:
        response = get(server, "/v2/app/blob", headers={"Authorization": "Bearer t"})
    assert response.body == b"moved"
    assert response.url == f"http://{server.host}{target}"
    assert server.requests[1].startswith(f"GET {target} HTTP/1.1\r\n".encode())
    assert b"Authorization: Bearer t\r\n" in server.requests[1]
    assert server.connections == 1


def test_a_303_after_a_post_is_followed_with_a_get() -> None:
    with serving([moved(303, "/done"), ok(b"done")]) as server:
        transport = Transport(insecure_hosts=frozenset({server.host}), timeout_s=2)
        response = transport.request("POST", f"http://{server.host}/form", {}, 100, "test", body=b"a=1")
    assert response.body == b"done"
    assert server.requests[1].startswith(b"GET /done HTTP/1.1\r\n")
    assert b"Content-Length" not in server.requests[1]


@pytest.mark.parametrize(
    ("location", "error", "message"),
    [
        ("ftp://{host}/x", ServiceUnavailable, "test: redirected to an unsupported URL scheme 'ftp'"),
        ("http://127.0.0.1:99999/x", BadInput, "test: bad port in '127.0.0.1:99999'"),
        ("http://user:secret@{host}/x", BadInput, "test: URLs with user info are not supported"),
        ("http://[127.0.0.1]/x", BadInput, "test: bad IPv6 address in '[127.0.0.1]'"),
        ("//[::1/x", BadInput, "test: redirected to a malformed URL"),
    ],
    ids=["scheme", "port", "user-info", "bracketed-ipv4", "unclosed-bracket"],
)
def test_redirects_the_client_refuses_are_one_line_errors(
    location: str, error: type[Exception], message: str
) -> None:
    with serving([moved(301, location)]) as server, pytest.raises(error) as err:
        get(server)
    assert str(err.value) == message
    assert len(server.requests) == 1


def test_too_many_redirects() -> None:
    with serving([moved(302, "/again")] * 6) as server, pytest.raises(ServiceUnavailable) as err:
        get(server)
    assert str(err.value) == "test: more than 5 redirects"


@pytest.mark.parametrize(
    ("netloc", "message"),
    [
        ("127.0.0.1:65536", "test: bad port in '127.0.0.1:65536'"),
        ("127.0.0.1:0", "test: bad port in '127.0.0.1:0'"),
        ("registry:5o00", "test: bad port in 'registry:5o00'"),
        ("[::1]:x", "test: bad port in '[::1]:x'"),
        ("[registry]:5000", "test: bad IPv6 address in '[registry]:5000'"),
    ],
)
def test_urls_the_client_refuses_name_what_was_asked(netloc: str, message: str) -> None:
    transport = Transport(timeout_s=1)
    with pytest.raises(BadInput) as err:
        transport.request("GET", f"http://{netloc}/v2/", {}, 100, "test")
    assert str(err.value) == message


@contextlib.contextmanager
def silent_listener() -> Iterator[str]:
    """Accepts connections in the kernel's backlog and never answers."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield f"127.0.0.1:{listener.getsockname()[1]}"


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_silent_server_is_a_one_line_timeout(scheme: str) -> None:
    # https times out in the TLS handshake: the descriptor handed to ssl keeps the timeout.
    with silent_listener() as host:
        transport = Transport(insecure_hosts=frozenset({host} if scheme == "http" else ()), timeout_s=0.3)
        with pytest.raises(ServiceUnavailable) as err:
            transport.request("GET", f"{transport.base_url(host)}/v2/", {}, 100, "test")
    assert str(err.value) == "test: timed out after 0.3s"


# A real plain-HTTP request in a fresh interpreter whose own server is built on _socket,
# so that whatever loads socket, urllib.parse, base64 or pathlib is the client's doing.
PLAIN_HTTP_REQUEST = """
import _socket, threading
import gpudoctor.images, gpudoctor.images.registry
from gpudoctor.images.transport import Transport
listener = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
listener.bind(("127.0.0.1", 0))
listener.listen()
host = "{name}:%d" % listener.getsockname()[1]
def answer():
    conn = _socket.socket(fileno=listener._accept()[0])
    conn.recv(65536)
    conn.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\n{{}}")
    conn.close()
threading.Thread(target=answer).start()
assert Transport(insecure_hosts=frozenset({{host}})).request("GET", f"http://{{host}}/v2/", {{}}, 100, "t").body == b"{{}}"
"""
CLIENT_MUST_NOT_LOAD = (
    "socket", "urllib", "ipaddress", "base64", "pathlib", "ssl", "http.client", "email", "encodings.idna"
)  # fmt: skip


@pytest.mark.parametrize("name", ["127.0.0.1", "localhost"])
def test_a_plain_http_request_imports_no_socket_url_ssl_http_client_or_idna(name: str) -> None:
    assert modules_loaded_by(PLAIN_HTTP_REQUEST.format(name=name), CLIENT_MUST_NOT_LOAD) == []
