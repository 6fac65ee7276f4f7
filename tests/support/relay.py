"""A reverse proxy on 127.0.0.1 in front of a real registry, for what a registry will not
do on demand: answer slowly (the bench's 50 ms per request), or answer 429/503 with
`Retry-After` (or any canned answer) a given number of times, to every request or to those
naming a path, before passing requests on. It counts requests and
the bytes it relays back, and keeps one upstream connection per client connection."""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}


@dataclass
class Relay:
    upstream: str  # host:port of the plain-HTTP registry
    delay_s: float = 0.0
    # answered first, in order: (status, headers) or (status, headers, body)
    refusals: list[tuple[Any, ...]] = field(default_factory=list)
    refuse_only: str = ""  # refusals answer only requests whose "METHOD /path" contains this
    port: int = 0
    requests: list[str] = field(default_factory=list)
    bytes_out: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"


def _handler(relay: Relay) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        upstream: http.client.HTTPConnection | None = None

        def setup(self) -> None:
            super().setup()
            # Headers and body go out in separate writes: without this, Nagle's algorithm
            # holds the body for the client's delayed ACK (40 ms), on top of the set delay.
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def _relay(self) -> None:
            asked = f"{self.command} {self.path}"
            with relay._lock:
                relay.requests.append(asked)
                refusal = relay.refusals.pop(0) if relay.refusals and relay.refuse_only in asked else None
            if relay.delay_s:
                time.sleep(relay.delay_s)
            if refusal is not None:
                status, headers, *rest = refusal
                body = rest[0] if rest else b""
                self.send_response(status)
                for name, value in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)
                return
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            if self.upstream is None:
                host, port = relay.upstream.rsplit(":", 1)
                self.upstream = http.client.HTTPConnection(host, int(port), timeout=30)
            # Header by header: a client may send several Accept headers, a dict would keep one.
            self.upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in _HOP_BY_HOP:
                    self.upstream.putheader(name, value)
            self.upstream.endheaders(body)
            answer = self.upstream.getresponse()
            data = answer.read()
            self.send_response(answer.status, answer.reason)
            for name, value in answer.getheaders():
                if name.lower() not in _HOP_BY_HOP | {"content-length"}:
                    self.send_header(name, value.replace(relay.upstream, relay.host))
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            with relay._lock:
                relay.bytes_out += len(data)

        do_GET = do_HEAD = do_POST = do_PUT = _relay  # noqa: N815

        def log_message(self, *args: object) -> None:
            pass

        def finish(self) -> None:
            if self.upstream is not None:
                self.upstream.close()
            super().finish()

    return Handler


@contextlib.contextmanager
def relaying(upstream: str, *, delay_s: float = 0.0, refusals: list[tuple[Any, ...]] | None = None,
             refuse_only: str = "") -> Iterator[Relay]:  # fmt: skip
    relay = Relay(upstream, delay_s, list(refusals or []), refuse_only)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(relay))
    server.daemon_threads = True
    relay.port = server.server_address[1]
    with serving_in_thread(server):
        yield relay


@contextlib.contextmanager
def serving_in_thread(server: ThreadingHTTPServer) -> Iterator[ThreadingHTTPServer]:
    """serve_forever in a daemon thread; shut down, closed and joined on the way out."""
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
