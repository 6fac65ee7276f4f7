"""Issue 18 against the registry client and OCI layouts, each with a real loopback server or
a real layout on disk: secrets only over TLS to their own origin (no https->http redirect,
no plain-HTTP token realm on a host that is not insecure), header values from a server
refused when they carry CR/LF or anything not visible ASCII, integers past Python's
4,300-digit limit as bad data (65, not 70), unknown digest algorithms refused, and
`preflight --deep` that stays inside an OCI layout (checked digests, no symlinks, no FIFOs)."""

from __future__ import annotations

import json
import os
import ssl
from pathlib import Path

import pytest

from gpudoctor.errors import BadInput, ServiceUnavailable
from gpudoctor.images.transport import Target, Transport
from tests.support.cli import run_gpudoctor
from tests.support.rawserver import moved, ok, serving
from tests.support.services import (
    OCI_MANIFEST,
    build_image,
    canonical,
    digest_of,
    make_tls,
    oci_layout,
)

REPO = Path(__file__).resolve().parent.parent
XML = REPO / "fixtures" / "nvidia-smi" / "A100-SXM4-80GB_535.54.03.xml"
SECRET = "Basic c2VjcmV0LXVzZXI6c2VjcmV0LXBhc3N3b3Jk"


def tls_context(tmp_path: Path) -> tuple[ssl.SSLContext, str]:
    files = make_tls(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(files.cert, files.key)
    return context, str(files.ca_cert)


# --- 2. secrets only over TLS to their own origin ------------------------------------------------


def test_an_https_redirect_to_plain_http_on_the_same_host_and_port_is_refused(tmp_path: Path) -> None:
    context, ca = tls_context(tmp_path)
    with serving([moved(307, "http://{host}/v2/elsewhere")], tls=context) as server:
        transport = Transport(timeout_s=2, total_deadline_s=2)
        with pytest.raises(ServiceUnavailable, match="refused a redirect from https to plain http") as err:
            transport.request("GET", f"https://{server.host}/v2/", {"Authorization": SECRET}, 100, "test",
                              target=Target(verify=ca))  # fmt: skip
    assert err.value.exit_code == 69
    assert len(server.requests) == 1  # the plain-HTTP request never went out


def test_the_origin_is_scheme_host_and_port(tmp_path: Path) -> None:
    # the same host on another port is another origin: no Authorization there
    context, ca = tls_context(tmp_path)
    with (
        serving([ok(b"{}")], tls=context) as other,
        serving([moved(302, f"https://{other.host}/x")], tls=context) as server,
    ):
        response = Transport(timeout_s=2).request(
            "GET",
            f"https://{server.host}/v2/",
            {"Authorization": SECRET},
            100,
            "test",
            target=Target(verify=ca),
        )
    assert response.body == b"{}"
    assert b"Authorization" in server.requests[0] and b"Authorization" not in other.requests[0]


def token_registry(realm: str, token_answer: bytes) -> list[list[bytes]]:
    """Scripts for a registry that challenges, a token service, and the retried request."""
    challenge = (
        "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n"
        f'WWW-Authenticate: Bearer realm="{realm}",service="reg",scope="repository:app:pull"\r\n\r\n'
    ).encode()
    return [[challenge, ok(token_answer), ok(b"{}")]]


def fetch_manifest(host: str, insecure: tuple[str, ...]) -> None:
    from gpudoctor.images import RegistryOptions
    from gpudoctor.images.registry import RegistryClient

    with Transport(timeout_s=2, total_deadline_s=2) as transport:
        options = RegistryOptions(insecure_registries=insecure, read_runtime_config=False)
        RegistryClient(host, transport, options).manifest("app", "1", "manifest app:1")


def test_a_plain_http_token_realm_on_a_host_that_is_not_insecure_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 0.0.0.0 reaches the loopback listener, but is neither loopback nor an --insecure-registry
    (tmp_path / "config.json").write_text(json.dumps({"auths": {}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    with serving([]) as realm_server:
        realm = f"http://0.0.0.0:{realm_server.port}/token"
        with (
            serving(*token_registry(realm, b'{"token": "t"}')) as registry,
            pytest.raises(ServiceUnavailable, match="refused a token realm over plain HTTP"),
        ):
            fetch_manifest(registry.host, insecure=(registry.host,))
    assert realm_server.requests == [] and len(registry.requests) == 1


@pytest.mark.parametrize(
    "token",
    ["abc\r\nX-Injected: evil", "abc\r\n\tX-Folded: evil", "abc\x00def", "t\u00f8ken-\u2713", "abc def"],
    ids=["crlf", "folded", "nul", "non-latin-1", "space"],
)
def test_a_token_that_is_not_a_visible_header_value_is_refused(
    token: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    answer = json.dumps({"token": token}).encode()
    with (
        serving(*token_registry("http://{host}/token", answer)) as registry,
        pytest.raises(BadInput, match="token has characters a header cannot carry") as err,
    ):
        fetch_manifest(registry.host, insecure=(registry.host,))
    assert err.value.exit_code == 65 and "\n" not in str(err.value)
    assert len(registry.requests) == 2  # the challenge and the token request; nothing sent with it
    assert not any(b"Injected" in r or b"Folded" in r for r in registry.requests)


def test_a_realm_with_a_line_break_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    realm = "http://{host}/token\\r\\nX-Injected: 1"
    with serving(*token_registry(realm, b"{}")) as registry, pytest.raises(BadInput, match="realm"):
        fetch_manifest(registry.host, insecure=(registry.host,))


# --- 6. integers past the 4,300-digit limit are bad data -----------------------------------------


def test_a_huge_integer_in_a_manifest_is_bad_data() -> None:
    body = b'{"schemaVersion": 2, "size": ' + b"9" * 5000 + b"}"
    with serving([ok(body)] * 5) as registry, pytest.raises(BadInput, match="invalid JSON") as err:
        fetch_manifest(registry.host, insecure=(registry.host,))
    assert err.value.exit_code == 65 and len(str(err.value)) < 300


def test_a_huge_integer_in_a_token_answer_is_bad_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    answer = b'{"token": "t", "expires_in": ' + b"1" * 5000 + b"}"
    with (
        serving(*token_registry("http://{host}/token", answer)) as registry,
        pytest.raises(BadInput, match="token service: invalid JSON") as err,
    ):
        fetch_manifest(registry.host, insecure=(registry.host,))
    assert err.value.exit_code == 65


def test_an_error_quoting_a_server_is_capped() -> None:
    answer = b"HTTP/1.1 500 " + b"x" * 60000 + b"\r\nContent-Length: 0\r\n\r\n"
    with serving([answer] * 5) as registry, pytest.raises(ServiceUnavailable) as err:
        fetch_manifest(registry.host, insecure=(registry.host,))
    assert "HTTP 500" in str(err.value) and len(str(err.value)) < 300


# --- 7 and 9. OCI layouts: checked digests, regular files inside the layout ----------------------


def preflight(*args: str) -> tuple[int, str]:
    done = run_gpudoctor("preflight", *args, "--node", str(XML), "--format", "json", timeout=30, cwd=REPO,
                         env={"DOCKER_HOST": "unix:///nonexistent"})  # fmt: skip
    assert "Traceback" not in done.stderr
    return done.returncode, done.stderr


def layout_with_manifest(tmp_path: Path, manifest: dict[str, object]) -> Path:
    """A real OCI layout whose index points at `manifest` (written as a blob)."""
    layout = oci_layout(tmp_path / "layout", [(build_image({"CUDA_VERSION": "12.4.1"}, media_type=OCI_MANIFEST), None)],
                        as_tar=False)  # fmt: skip
    data = canonical(manifest)
    (layout / "blobs" / "sha256" / digest_of(data).split(":")[1]).write_bytes(data)
    index = json.loads((layout / "index.json").read_text())
    index["manifests"][0].update(digest=digest_of(data), size=len(data))
    (layout / "index.json").write_text(json.dumps(index))
    return layout


def image_manifest(config_digest: str, layer_digests: list[str]) -> dict[str, object]:
    return {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 10, "digest": config_digest},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "size": 10, "digest": d}
                   for d in layer_digests],
    }  # fmt: skip


@pytest.mark.parametrize(
    ("config_digest", "message"),
    [
        ("sha256:/etc/passwd", "invalid digest"),
        ("sha256:../../../../etc/passwd", "invalid digest"),
        ("sha256:" + "A" * 64, "invalid digest"),
        ("md5:" + "0" * 32, "unsupported digest algorithm 'md5'"),
        ("foo:" + "0" * 64, "unsupported digest algorithm 'foo'"),
    ],
)
def test_layout_digests_are_checked_before_any_path_is_built(
    tmp_path: Path, config_digest: str, message: str
) -> None:
    layout = layout_with_manifest(tmp_path, image_manifest(config_digest, []))
    code, stderr = preflight(str(layout))
    assert code == 65 and message in stderr
    assert stderr.startswith(f"gpudoctor: {layout}")  # the archive is named


def test_a_layer_digest_that_climbs_out_is_refused_by_deep(tmp_path: Path) -> None:
    image = build_image({"CUDA_VERSION": "12.4.1"}, media_type=OCI_MANIFEST)
    layout = layout_with_manifest(
        tmp_path, image_manifest(digest_of(image.config), ["sha256:../../../../../etc/shadow"])
    )
    (layout / "blobs" / "sha256" / digest_of(image.config).split(":")[1]).write_bytes(image.config)
    code, stderr = preflight(str(layout), "--deep")
    assert code == 65 and "invalid digest" in stderr


@pytest.mark.parametrize("kind", ["symlink", "fifo"])
def test_deep_opens_only_regular_files_inside_the_layout(tmp_path: Path, kind: str) -> None:
    image = build_image({"CUDA_VERSION": "12.4.1"}, media_type=OCI_MANIFEST)
    layout = oci_layout(tmp_path / "layout", [(image, None)], as_tar=False)
    blob = layout / "blobs" / "sha256" / digest_of(image.layers[0]).split(":")[1]
    blob.unlink()
    if kind == "symlink":
        outside = tmp_path / "outside.tar.gz"
        outside.write_bytes(image.layers[0])
        blob.symlink_to(outside)
    else:
        os.mkfifo(blob)
    code, stderr = preflight(str(layout), "--deep")  # a FIFO must not block: the run has 30 s
    assert code == 65 and "not a regular file inside the layout" in stderr
