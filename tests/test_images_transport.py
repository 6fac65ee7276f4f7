"""The registry transport (requests + urllib3) against a scripted loopback server that writes
raw bytes: keep-alive reuse, caps whatever the framing, malformed and hostile answers
(header floods, endless 1xx, dripping headers, absurd Content-Length), redirects (origin
= scheme + host + port, no downgrade), deadlines, and a real forward proxy (tinyproxy)."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import pytest

from gpudoctor.errors import BadInput, ServiceUnavailable, TemporaryFailure
from gpudoctor.images.transport import Response, Transport
from tests.support.rawserver import RawServer, moved, ok, serving


def get(
    server: RawServer,
    path: str = "/v2/",
    max_bytes: int = 1 << 20,
    transport: Transport | None = None,
    host: str | None = None,
    headers: dict[str, str] | None = None,
    scheme: str = "http",
) -> Response:
    transport = transport or quick()
    url = f"{scheme}://{host or server.host}{path}"
    return transport.request("GET", url, headers or {"User-Agent": "t"}, max_bytes, "test")


def quick(**settings: float) -> Transport:
    """Short timeouts and one attempt, unless a test asks for more."""
    return Transport(**{"timeout_s": 2.0, "total_deadline_s": 0.5, "request_deadline_s": 3.0, **settings})


def test_content_length_body_and_request_line() -> None:
    with serving([ok(b'{"a": 1}', "Docker-Content-Digest: sha256:x\r\n")]) as server:
        response = get(server, "/v2/app/manifests/1?x=y")
    assert (response.status, response.reason, response.body) == (200, "OK", b'{"a": 1}')
    assert response.headers["docker-content-digest"] == "sha256:x"
    assert server.requests[0].startswith(b"GET /v2/app/manifests/1?x=y HTTP/1.1\r\n")
    assert f"Host: {server.host}\r\n".encode() in server.requests[0]


def test_keep_alive_reuses_one_connection() -> None:
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n"
    with serving([ok(b"one"), chunked, ok(b"three")]) as server, quick() as transport:
        assert [get(server, transport=transport).body for _ in range(3)] == [b"one", b"Wikipedia", b"three"]
    assert server.connections == 1


def test_a_kept_alive_connection_the_server_closed_is_replaced() -> None:
    with (
        serving([ok(b"one")], [ok(b"fresh")]) as server,
        quick(total_deadline_s=5, backoff_s=0.01) as transport,
    ):
        assert get(server, transport=transport).body == b"one"
        assert get(server, transport=transport).body == b"fresh"
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
    "answer",
    [
        b"SSH-2.0-OpenSSH_9.2\r\n",
        b"HTTP/1.1 200 OK\r\n" + b"X-A: 1\r\n" * 101 + b"\r\n",
        b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 70000 + b"\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort",
        b"",
    ],
    ids=["not-http", "header-flood", "header-line-too-long", "bad-chunk", "short-body", "no-answer"],
)
def test_malformed_answers_are_one_line_errors(answer: bytes) -> None:
    with serving([answer]) as server, pytest.raises((ServiceUnavailable, BadInput, TemporaryFailure)) as err:
        get(server)
    message = str(err.value)
    assert message.startswith("test: ") and "\n" not in message and len(message) < 300


def test_content_length_in_unicode_digits_is_not_a_crash() -> None:
    # "²" passes str.isdigit() but not int(): the old client died with exit 70 on it.
    answer = "HTTP/1.1 200 OK\r\nContent-Length: \u00b2\r\nConnection: close\r\n\r\n{}".encode()
    with serving([answer]) as server:
        try:
            assert get(server).body == b"{}"
        except (BadInput, ServiceUnavailable, TemporaryFailure) as exc:
            assert "\n" not in str(exc)


def test_a_10_gb_content_length_is_refused_before_the_body() -> None:
    sent: list[int] = []

    def huge(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10000000000\r\n\r\n")
        total = 0
        with contextlib.suppress(OSError):
            for _ in range(10_000):  # up to 640 MB if nobody stops it
                total += conn.send(b"x" * 65536)
        sent.append(total)

    with (
        serving([huge]) as server,
        pytest.raises(BadInput, match="10000000000 bytes is over the 100-byte cap"),
    ):
        get(server, max_bytes=100)
    server.close()
    assert sent and sent[0] < 64 << 20


def test_headers_dripping_a_byte_at_a_time_hit_the_request_deadline() -> None:
    def drip(conn: socket.socket) -> None:
        for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 100:
            conn.sendall(bytes([byte]))
            time.sleep(0.05)

    with serving([drip]) as server, pytest.raises(TemporaryFailure, match="no complete answer .* within"):
        started = time.monotonic()
        get(server, transport=quick(request_deadline_s=0.5, total_deadline_s=0.6))
    assert time.monotonic() - started < 2


def test_an_endless_run_of_100_continue_hits_the_request_deadline() -> None:
    def endless(conn: socket.socket) -> None:
        for _ in range(10_000):
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            time.sleep(0.001)

    with serving([endless]) as server, pytest.raises(TemporaryFailure, match="no complete answer"):
        started = time.monotonic()
        get(server, transport=quick(request_deadline_s=0.5, total_deadline_s=0.6))
    assert time.monotonic() - started < 2


def test_nothing_listening_is_cannot_connect() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    with pytest.raises(ServiceUnavailable, match="test: cannot connect to 127.0.0.1:.* refused") as err:
        quick().request("GET", f"http://127.0.0.1:{port}/v2/", {}, 100, "test")
    assert err.value.exit_code == 69


@pytest.mark.parametrize(
    ("location", "target"),
    [
        ("/v2/elsewhere?x=1", "/v2/elsewhere?x=1"),
        ("../other", "/v2/other"),
        ("?page=2", "/v2/app/blob?page=2"),
        ("http://{host}/absolute#fragment", "/absolute"),
    ],
    ids=["path", "dot-dot", "query-only", "absolute"],
)
def test_redirects_on_the_same_origin_keep_the_connection_and_credentials(location: str, target: str) -> None:
    with serving([moved(302, location), ok(b"moved")]) as server:
        response = get(server, "/v2/app/blob", headers={"Authorization": "Bearer t"})
    assert response.body == b"moved"
    assert response.url.startswith(f"http://{server.host}{target.split('#')[0]}")
    assert server.requests[1].startswith(f"GET {target} HTTP/1.1\r\n".encode())
    assert b"Authorization: Bearer t\r\n" in server.requests[1]
    assert server.connections == 1


def test_a_redirect_to_another_port_of_the_same_host_drops_credentials() -> None:
    with serving([ok(b"elsewhere")]) as other, serving([moved(307, f"http://{other.host}/x")]) as server:
        assert get(server, headers={"Authorization": "Basic c2VjcmV0"}).body == b"elsewhere"
    assert b"Authorization" in server.requests[0] and b"Authorization" not in other.requests[0]


def test_a_303_after_a_post_is_followed_with_a_get() -> None:
    with serving([moved(303, "/done"), ok(b"done")]) as server:
        response = quick().request("POST", f"http://{server.host}/form", {}, 100, "test", body=b"a=1")
    assert response.body == b"done"
    assert b"GET /done HTTP/1.1\r\n" in server.requests[1]


@pytest.mark.parametrize(
    ("location", "error", "message"),
    [
        ("ftp://{host}/x", ServiceUnavailable, "test: redirected to an unsupported URL scheme 'ftp'"),
        ("http://[::1/x", BadInput, "test: malformed answer from 127.0.0.1"),
    ],
    ids=["scheme", "unclosed-bracket"],
)
def test_redirects_the_client_refuses_are_one_line_errors(
    location: str, error: type[Exception], message: str
) -> None:
    with serving([moved(301, location)]) as server, pytest.raises(error) as err:
        get(server)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)
    assert len(server.requests) == 1


def test_too_many_redirects() -> None:
    with serving([moved(302, "/again")] * 6) as server, pytest.raises(ServiceUnavailable) as err:
        get(server)
    assert str(err.value) == "test: more than 5 redirects"


@contextlib.contextmanager
def silent_listener() -> Iterator[str]:
    """Accepts connections in the kernel's backlog and never answers."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield f"127.0.0.1:{listener.getsockname()[1]}"


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_silent_server_is_a_one_line_temporary_failure(scheme: str) -> None:
    with silent_listener() as host, pytest.raises(TemporaryFailure) as err:
        quick(timeout_s=0.3, total_deadline_s=0.5).request("GET", f"{scheme}://{host}/v2/", {}, 100, "test")
    assert str(err.value).startswith("test: ") and "gave up after" in str(err.value)
    assert err.value.exit_code == 75
