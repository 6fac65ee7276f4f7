"""Registry error paths and the bearer-token flow against a tiny loopback HTTP server
(statuses a real registry will not emit on demand: 429, 5xx, oversize, bad JSON,
wrong digests, stalls), and the rule that credentials and tokens never reach output."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from gpudoctor.errors import BadInput, GpudoctorError, PermissionRefused, TemporaryFailure
from gpudoctor.facts import ImageFacts, Platform
from gpudoctor.images import RegistryOptions
from gpudoctor.images.reference import parse_reference
from gpudoctor.images.registry import RegistryClient, fetch_from_registry
from gpudoctor.images.transport import Transport
from tests.support.cli import run_gpudoctor
from tests.support.relay import serving_in_thread
from tests.support.services import DOCKER_MANIFEST, build_image, digest_of

REPO = Path(__file__).resolve().parent.parent
USER, PASSWORD, TOKEN = "robot", "pw-Very-Secret-42", "tok-Bearer-Secret-9000"
Route = Callable[[BaseHTTPRequestHandler], "tuple[int, dict[str, str], bytes] | None"]


@dataclass
class Stub:
    port: int
    routes: dict[str, Route] = field(default_factory=dict)
    seen: list[tuple[str, str, str | None]] = field(default_factory=list)  # method, path, Authorization

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"


def _handler(stub: Stub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            stub.seen.append((self.command, self.path, self.headers.get("Authorization")))
            route = stub.routes.get(self.path.split("?")[0])
            with contextlib.suppress(OSError):  # the client may hang up first (caps, deadlines)
                answer = route(self) if route else (404, {}, b'{"errors":[{"code":"NAME_UNKNOWN"}]}')
                if answer is None:
                    return  # the route wrote its own response
                status, headers, body = answer
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                if "Content-Length" not in headers and "Transfer-Encoding" not in headers:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        do_GET = do_POST = _serve  # noqa: N815

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def stub() -> Iterator[Stub]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    state = Stub(server.server_address[1])
    server.RequestHandlerClass = _handler(state)
    with serving_in_thread(server):
        yield state


IMAGE = build_image({"CUDA_VERSION": "12.4.1", "NVIDIA_REQUIRE_CUDA": "cuda>=12.4"})


def serve_image(stub: Stub, *, manifest: bytes = IMAGE.manifest, config: bytes = IMAGE.config,
                headers: dict[str, str] | None = None) -> None:  # fmt: skip
    stub.routes["/v2/app/manifests/1"] = lambda h: (
        200,
        {"Content-Type": DOCKER_MANIFEST, **(headers or {})},
        manifest,
    )
    stub.routes[f"/v2/app/blobs/{digest_of(IMAGE.config)}"] = lambda h: (200, {}, config)


def fetch(stub: Stub, **transport_settings: float) -> ImageFacts:
    """The image app:1 from the stub, over plain HTTP, with quick retries."""
    settings = {"timeout_s": 5.0, "backoff_s": 0.05, "total_deadline_s": 5.0, **transport_settings}
    with Transport(**settings) as transport:
        options = RegistryOptions(insecure_registries=(stub.host,), read_runtime_config=False)
        client = RegistryClient(stub.host, transport, options)
        return fetch_from_registry(parse_reference(f"{stub.host}/app:1"), Platform("linux", "amd64"), client)


def test_stub_serves_a_good_image(stub: Stub) -> None:
    serve_image(stub)
    facts = fetch(stub)
    assert facts.require == ["cuda>=12.4"]


@pytest.mark.parametrize(
    ("status", "meaning", "exit_code", "attempts"),
    [
        (429, "rate limited", 75, 5),
        (500, "server error", 69, 1),
        (502, "server error", 69, 5),
        (503, "service unavailable", 75, 5),
        (504, "gateway timeout", 75, 5),
        (403, "access denied", 77, 1),
        (404, "no such repository", 66, 1),
    ],
)
def test_statuses_are_one_line_naming_registry_and_status(
    stub: Stub, status: int, meaning: str, exit_code: int, attempts: int
) -> None:
    stub.routes["/v2/app/manifests/1"] = lambda h: (status, {}, b"nope")
    with pytest.raises(GpudoctorError) as err:
        fetch(stub)
    message = str(err.value)
    assert message.startswith(f"registry {stub.host}: manifest app:1: HTTP {status} ")
    assert meaning in message and "\n" not in message
    assert err.value.exit_code == exit_code
    assert len(stub.seen) == attempts  # 429, 502, 503 and 504 are retried, with backoff


def test_retry_after_is_honoured_then_the_answer_is_used(stub: Stub) -> None:
    serve_image(stub)
    image = stub.routes["/v2/app/manifests/1"]
    asked: list[float] = []

    def limited(handler: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes] | None:
        asked.append(time.monotonic())
        if len(asked) == 1:
            return 429, {"Retry-After": "1"}, b'{"errors":[{"code":"TOOMANYREQUESTS"}]}'
        return image(handler)

    stub.routes["/v2/app/manifests/1"] = limited
    assert fetch(stub).require == ["cuda>=12.4"]
    assert len(asked) == 2 and asked[1] - asked[0] >= 0.95


def test_retry_after_past_the_deadline_gives_up_at_once(stub: Stub) -> None:
    stub.routes["/v2/app/manifests/1"] = lambda h: (503, {"Retry-After": "3600"}, b"")
    started = time.monotonic()
    with pytest.raises(TemporaryFailure, match="HTTP 503") as err:
        fetch(stub)
    assert err.value.exit_code == 75 and time.monotonic() - started < 2 and len(stub.seen) == 1


def test_oversize_manifest_by_content_length(stub: Stub) -> None:
    stub.routes["/v2/app/manifests/1"] = lambda h: (200, {"Content-Length": str(1 << 30)}, b"")
    with pytest.raises(BadInput, match="over the 4194304-byte cap") as err:
        fetch(stub)
    assert err.value.exit_code == 65


def test_oversize_manifest_without_content_length(stub: Stub) -> None:
    def chunked(handler: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        return 200, {"Connection": "close", "Content-Length": ""}, b"{" + b" " * (5 << 20)

    stub.routes["/v2/app/manifests/1"] = chunked
    with pytest.raises(BadInput, match="cap"):
        fetch(stub)


def test_invalid_json_manifest(stub: Stub) -> None:
    serve_image(stub, manifest=b"<html>proxy error</html>")
    with pytest.raises(BadInput, match=f"registry {stub.host}: manifest app:1: invalid JSON"):
        fetch(stub)


def test_manifest_digest_mismatch(stub: Stub) -> None:
    serve_image(stub, headers={"Docker-Content-Digest": "sha256:" + "0" * 64})
    with pytest.raises(BadInput, match="digest mismatch"):
        fetch(stub)


def test_config_digest_mismatch(stub: Stub) -> None:
    serve_image(stub, config=IMAGE.config.replace(b"12.4", b"13.0"))
    with pytest.raises(BadInput, match="config blob sha256:.*digest mismatch"):
        fetch(stub)


def test_stalled_registry_times_out(stub: Stub) -> None:
    def stall(handler: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        time.sleep(2)
        return 200, {}, b"{}"

    stub.routes["/v2/app/manifests/1"] = stall
    started = time.monotonic()
    with pytest.raises(TemporaryFailure, match="(timed out|no complete answer).*gave up after") as err:
        fetch(stub, timeout_s=0.3, total_deadline_s=1.0)
    assert err.value.exit_code == 75
    assert time.monotonic() - started < 2


def test_dripping_registry_hits_the_body_deadline(stub: Stub) -> None:
    def drip(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", "100000")
        handler.end_headers()
        for _ in range(100):
            handler.wfile.write(b" ")
            handler.wfile.flush()
            time.sleep(0.05)

    stub.routes["/v2/app/manifests/1"] = drip
    started = time.monotonic()
    with pytest.raises(TemporaryFailure, match="no complete answer from .* within .*gave up after"):
        fetch(stub, timeout_s=1.0, request_deadline_s=0.5, total_deadline_s=0.8)
    assert time.monotonic() - started < 2


def test_schema1_manifest_is_refused_clearly(stub: Stub) -> None:
    serve_image(stub, manifest=json.dumps({"schemaVersion": 1, "name": "app", "fsLayers": []}).encode())
    with pytest.raises(BadInput, match="schema 1"):
        fetch(stub)


# --- bearer token flow ----------------------------------------------------------------


def bearer_registry(stub: Stub, *, token_status: int = 200) -> None:
    expected_basic = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    challenge = f'Bearer realm="http://{stub.host}/token",service="stub-registry",scope="repository:app:pull"'

    def guarded(route: Route) -> Route:
        def check(handler: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
            if handler.headers.get("Authorization") != f"Bearer {TOKEN}":
                return 401, {"WWW-Authenticate": challenge}, b'{"errors":[{"code":"UNAUTHORIZED"}]}'
            return route(handler)

        return check

    def token(handler: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        if (
            handler.headers.get("Authorization") != expected_basic
            or "service=stub-registry" not in handler.path
        ):
            return 401, {}, b'{"details":"incorrect username or password"}'
        return token_status, {}, json.dumps({"token": TOKEN, "expires_in": 300}).encode()

    serve_image(stub)
    for path, route in list(stub.routes.items()):
        stub.routes[path] = guarded(route)
    stub.routes["/token"] = token


def test_bearer_flow_with_basic_credentials(
    stub: Stub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bearer_registry(stub)
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (tmp_path / "config.json").write_text(json.dumps({"auths": {f"http://{stub.host}/v2/": {"auth": auth}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    facts = fetch(stub)
    assert facts.cuda_version == "12.4.1"
    token_calls = [s for s in stub.seen if s[1].startswith("/token")]
    assert len(token_calls) == 1 and "scope=repository%3Aapp%3Apull" in token_calls[0][1]


def test_bearer_flow_anonymous_token_refused(
    stub: Stub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bearer_registry(stub)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    with pytest.raises(
        PermissionRefused, match=f"registry {stub.host}: token service: HTTP 401 .*authentication required"
    ):
        fetch(stub)


def test_redirect_to_another_host_drops_credentials(
    stub: Stub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    other_state = Stub(other.server_address[1])
    other.RequestHandlerClass = _handler(other_state)
    other_state.routes["/cdn/config"] = lambda h: (200, {}, IMAGE.config)
    with serving_in_thread(other):
        bearer_registry(stub)
        stub.routes[f"/v2/app/blobs/{digest_of(IMAGE.config)}"] = lambda h: (
            307, {"Location": f"http://localhost:{other_state.port}/cdn/config"}, b"",
        )  # fmt: skip
        auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        (tmp_path / "config.json").write_text(json.dumps({"auths": {stub.host: {"auth": auth}}}))
        monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
        assert fetch(stub).cuda_version == "12.4.1"
        assert other_state.seen == [("GET", "/cdn/config", None)]


# --- secrets never in output (the real CLI, a subprocess) -------------------------------


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_gpudoctor(*args, timeout=60, cwd=REPO, env=env)


def test_credentials_and_tokens_never_in_output(stub: Stub, tmp_path: Path) -> None:
    bearer_registry(stub)
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (tmp_path / "config.json").write_text(json.dumps({"auths": {stub.host: {"auth": auth}}}))
    node = REPO / "fixtures" / "facts" / "nodes" / "A100-SXM4-80GB_535.54.03.json"
    report = tmp_path / "node.json"
    report.write_text(json.dumps({"node": json.loads(node.read_text())}))
    ok = run_cli("preflight", f"{stub.host}/app:1", "--insecure-registry", stub.host, "--node", str(report),
                 "--format", "json", env={"DOCKER_CONFIG": str(tmp_path)})  # fmt: skip
    assert ok.returncode in (0, 1, 2, 3), ok.stderr
    assert json.loads(ok.stdout)["image"]["require"] == ["cuda>=12.4"]
    # a refused token request
    stub.routes["/v2/app/manifests/1"] = lambda h: (403, {}, b'{"errors":[{"code":"DENIED"}]}')
    denied = run_cli("preflight", f"{stub.host}/app:1", "--insecure-registry", stub.host, "--node", str(report),
                     env={"DOCKER_CONFIG": str(tmp_path)})  # fmt: skip
    assert denied.returncode == 77
    assert denied.stderr.count("\n") == 1 and "Traceback" not in denied.stderr
    for result in (ok, denied):
        for secret in (PASSWORD, TOKEN, auth):
            assert secret not in result.stdout and secret not in result.stderr


def test_identity_token_from_a_credential_helper(
    stub: Stub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `docker login` with an OAuth identity token stores Username "<token>": the token
    # service is asked with grant_type=refresh_token (POST), never with Basic auth.
    refresh = "refresh-Token-Secret-77"
    serve_image(stub)
    challenge = f'Bearer realm="http://{stub.host}/token",service="stub-registry"'
    image_routes = dict(stub.routes)

    def guarded(path: str) -> Route:
        def check(handler: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
            if handler.headers.get("Authorization") != f"Bearer {TOKEN}":
                return 401, {"WWW-Authenticate": challenge}, b"{}"
            return image_routes[path](handler)

        return check

    def token(handler: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        length = int(handler.headers.get("Content-Length", "0"))
        form = handler.rfile.read(length).decode()
        ok = (
            handler.command == "POST"
            and "grant_type=refresh_token" in form
            and f"refresh_token={refresh}" in form
        )
        return (200, {}, json.dumps({"access_token": TOKEN}).encode()) if ok else (400, {}, b"{}")

    for path in image_routes:
        stub.routes[path] = guarded(path)
    stub.routes["/token"] = token
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-oauth"
    helper.write_text(f'#!/bin/sh\nread server\nprintf \'{{"Username":"<token>","Secret":"{refresh}"}}\'\n')
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    (tmp_path / "config.json").write_text(json.dumps({"credHelpers": {stub.host: "oauth"}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    assert fetch(stub).cuda_version == "12.4.1"
    assert [s[0] for s in stub.seen if s[1].startswith("/token")] == ["POST"]


def test_many_images_of_one_registry_share_one_token(
    stub: Stub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gpudoctor.images import Fetcher, RegistryOptions

    bearer_registry(stub)
    for repository in ("two", "three"):
        stub.routes[f"/v2/{repository}/manifests/1"] = stub.routes["/v2/app/manifests/1"]
        stub.routes[f"/v2/{repository}/blobs/{digest_of(IMAGE.config)}"] = stub.routes[
            f"/v2/app/blobs/{digest_of(IMAGE.config)}"
        ]
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (tmp_path / "config.json").write_text(json.dumps({"auths": {stub.host: {"auth": auth}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    refs = [f"{stub.host}/{repository}:1" for repository in ("app", "two", "three")]
    options = RegistryOptions(insecure_registries=(stub.host,), read_runtime_config=False)
    with Fetcher(options) as fetcher:
        results = fetcher.fetch_many([(ref, Platform("linux", "amd64")) for ref in refs], source="registry")
    assert [r.cuda_version for r in results if isinstance(r, ImageFacts)] == ["12.4.1"] * 3
    token_calls = [path for _, path, _ in stub.seen if path.startswith("/token")]
    assert len(token_calls) == 1, token_calls
    for repository in ("app", "two", "three"):
        assert f"scope=repository%3A{repository}%3Apull" in token_calls[0]
