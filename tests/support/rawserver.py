"""A scripted server on 127.0.0.1 (or ::1) that writes raw bytes: what a hostile or broken
registry sends, byte for byte. Plain TCP, or TLS with a certificate from services.make_tls."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Callable, Iterator

# One script per accepted connection: a list of answers, one per request read: bytes ("{host}"
# becomes the server's host:port), or a callable that writes to the connection itself.
Answer = bytes | Callable[[socket.socket], None]
Script = list[Answer]


class RawServer:
    def __init__(
        self, scripts: list[Script], bind: str = "127.0.0.1", tls: ssl.SSLContext | None = None
    ) -> None:
        family = socket.AF_INET6 if ":" in bind else socket.AF_INET
        self.listener = socket.create_server((bind, 0), family=family)
        self.port = self.listener.getsockname()[1]
        self.host = f"[{bind}]:{self.port}" if ":" in bind else f"{bind}:{self.port}"
        self.scripts = scripts
        self.tls = tls
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
            with contextlib.suppress(OSError):  # the client may hang up first
                if self.tls is not None:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                with conn:
                    for answer in script:
                        request = _read_request(conn)
                        if not request:
                            break
                        self.requests.append(request)
                        if callable(answer):
                            answer(conn)
                        else:
                            conn.sendall(answer.replace(b"{host}", self.host.encode()))

    def close(self) -> None:
        self.listener.close()
        self.thread.join(timeout=15)


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    return data


@contextlib.contextmanager
def serving(
    *scripts: Script, bind: str = "127.0.0.1", tls: ssl.SSLContext | None = None
) -> Iterator[RawServer]:
    server = RawServer(list(scripts), bind, tls)
    try:
        yield server
    finally:
        server.close()


def ok(body: bytes, extra: str = "") -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


def moved(status: int, location: str) -> bytes:
    return f"HTTP/1.1 {status} Moved\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n".encode()
