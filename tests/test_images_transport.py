"""The socket HTTP/1.1 client against a scripted loopback server that writes raw bytes:
framings (Content-Length, chunked, end of connection), keep-alive reuse, a kept-alive
connection the server closed, interim 1xx answers, caps and malformed answers."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest

from gpudoctor.errors import BadInput, ServiceUnavailable
from gpudoctor.images.transport import Response, Transport
from tests.support.imports import modules_loaded_by

# One script per accepted connection: a list of raw answers, one per request read.
Script = list[bytes]


class RawServer:
    def __init__(self, scripts: list[Script]) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.host = f"127.0.0.1:{self.listener.getsockname()[1]}"
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
                    conn.sendall(answer)

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
def serving(*scripts: Script) -> Iterator[RawServer]:
    server = RawServer(list(scripts))
    try:
        yield server
    finally:
        server.close()


def get(
    server: RawServer, path: str = "/v2/", max_bytes: int = 1 << 20, transport: Transport | None = None
) -> Response:
    transport = transport or Transport(insecure_hosts=frozenset({server.host}), timeout_s=2)
    return transport.request("GET", f"http://{server.host}{path}", {"User-Agent": "t"}, max_bytes, "test")


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


PLAIN_HTTP_REQUEST = """
import socket, threading
from gpudoctor.images.transport import Transport
listener = socket.create_server(("127.0.0.1", 0))
host = f"127.0.0.1:{listener.getsockname()[1]}"
def answer():
    conn, _ = listener.accept()
    conn.recv(65536)
    conn.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\n{}")
    conn.close()
threading.Thread(target=answer).start()
assert Transport(insecure_hosts=frozenset({host})).request("GET", f"http://{host}/v2/", {}, 100, "t").body == b"{}"
"""


def test_a_plain_http_request_imports_no_ssl_http_client_email_or_idna() -> None:
    loaded = modules_loaded_by(PLAIN_HTTP_REQUEST, ("ssl", "http.client", "email", "encodings.idna"))
    assert loaded == []
