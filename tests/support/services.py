"""Real services for the image tests, on 127.0.0.1 only, started and stopped here.

* `registry`: Debian's `docker-registry` (distribution v2), plain HTTP, free port.
* `auth_registry`: the same with htpasswd basic auth and TLS from a CA made here.
* `dockerd`: a private Docker engine (vfs storage, no iptables, no bridge) with its
  own socket, data-root and exec-root in a temp dir.

Plus helpers that push images through the registry HTTP API and build docker-save
tarballs and OCI layouts from real-format blobs. Import the fixtures with
`from tests.support.services import registry, dockerd` (session-scoped).
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import gzip
import hashlib
import http.client
import io
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_service

LOOPBACK = "127.0.0.1"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
_LAYER_TYPE = {
    DOCKER_MANIFEST: "application/vnd.docker.image.rootfs.diff.tar.gzip",
    OCI_MANIFEST: "application/vnd.oci.image.layer.v1.tar+gzip",
}
_CONFIG_TYPE = {
    DOCKER_MANIFEST: "application/vnd.docker.container.image.v1+json",
    OCI_MANIFEST: "application/vnd.oci.image.config.v1+json",
}
START_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"service exited early: {log.read_text(errors='replace')[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"service did not listen on {port} within {START_TIMEOUT_S}s")


def stop_process(proc: subprocess.Popen[bytes], grace_s: float = 20.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


# --- TLS material -------------------------------------------------------------------


@dataclass
class TlsFiles:
    ca_cert: Path
    cert: Path
    key: Path


def make_tls(directory: Path, name: str = "gpudoctor-test") -> TlsFiles:
    """A CA and a server certificate for 127.0.0.1 signed by it."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, LOOPBACK)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(LOOPBACK))]), critical=False
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(directory / f"{name}-ca.pem", directory / f"{name}.pem", directory / f"{name}-key.pem")
    files.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return files


# --- the registry -------------------------------------------------------------------


@dataclass
class Registry:
    """A running docker-registry; `host` is what goes into image references."""

    port: int
    root: Path
    log: Path
    proc: subprocess.Popen[bytes]
    tls: TlsFiles | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def host(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def connection(self) -> http.client.HTTPConnection:
        if self.tls is None:
            return http.client.HTTPConnection(LOOPBACK, self.port, timeout=30)
        context = ssl.create_default_context(cafile=str(self.tls.ca_cert))
        return http.client.HTTPSConnection(LOOPBACK, self.port, timeout=30, context=context)

    def headers(self) -> dict[str, str]:
        if self.username is None:
            return {}
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    def request(
        self,
        method: str,
        path: str,
        body: bytes | Iterable[bytes] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        conn = self.connection()
        try:
            conn.request(method, path, body=body, headers={**self.headers(), **(headers or {})})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def access_log(self) -> str:
        return self.log.read_text(errors="replace")

    def log_mark(self) -> int:
        return self.log.stat().st_size

    def log_since(self, mark: int) -> str:
        with self.log.open("rb") as stream:
            stream.seek(mark)
            return stream.read().decode(errors="replace")

    # -- pushing through the HTTP API --

    def push_blob(self, repository: str, data: bytes) -> str:
        digest = digest_of(data)
        return self.push_blob_stream(repository, digest, len(data), [data])

    def push_blob_stream(self, repository: str, digest: str, size: int, chunks: Iterable[bytes]) -> str:
        status, headers, _ = self.request("POST", f"/v2/{repository}/blobs/uploads/")
        assert status == 202, f"upload start: HTTP {status}"
        location = headers["location"]
        if location.startswith("http"):
            location = "/" + location.split("/", 3)[3]
        sep = "&" if "?" in location else "?"
        status, _, body = self.request(
            "PUT",
            f"{location}{sep}digest={digest}",
            body=chunks,
            headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"},
        )
        assert status == 201, f"upload: HTTP {status} {body[:200]!r}"
        return digest

    def push_manifest(self, repository: str, reference: str, body: bytes, media_type: str) -> str:
        status, _, answer = self.request(
            "PUT", f"/v2/{repository}/manifests/{reference}", body=body, headers={"Content-Type": media_type}
        )
        assert status == 201, f"manifest push: HTTP {status} {answer[:300]!r}"
        return digest_of(body)


def _registry_config(root: Path, port: int, tls: TlsFiles | None, htpasswd: Path | None) -> str:
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "info", "accesslog": {"disabled": False}, "formatter": "text"},
        "storage": {"filesystem": {"rootdirectory": str(root / "data")}, "delete": {"enabled": True}},
        "http": {"addr": f"{LOOPBACK}:{port}", "secret": "test-only-secret"},
    }
    if tls is not None:
        config["http"]["tls"] = {"certificate": str(tls.cert), "key": str(tls.key)}
    if htpasswd is not None:
        config["auth"] = {"htpasswd": {"realm": "gpudoctor-test", "path": str(htpasswd)}}
    return json.dumps(config)  # YAML is a superset of JSON


def start_registry(
    root: Path, *, tls: TlsFiles | None = None, credentials: tuple[str, str] | None = None
) -> Registry:
    binary = shutil.which("docker-registry") or shutil.which("registry")
    if binary is None:
        raise FileNotFoundError("docker-registry")
    root.mkdir(parents=True, exist_ok=True)
    htpasswd = None
    if credentials is not None:
        import bcrypt

        htpasswd = root / "htpasswd"
        hashed = bcrypt.hashpw(credentials[1].encode(), bcrypt.gensalt(rounds=5)).decode()
        htpasswd.write_text(f"{credentials[0]}:{hashed}\n")
    port = free_port()
    config = root / "config.yml"
    config.write_text(_registry_config(root, port, tls, htpasswd))
    log = root / "registry.log"
    with log.open("wb") as log_stream:
        proc = subprocess.Popen([binary, "serve", str(config)], stdout=log_stream, stderr=subprocess.STDOUT)
    try:
        _wait_for_port(port, proc, log)
    except RuntimeError:
        stop_process(proc)
        raise
    user, password = credentials if credentials else (None, None)
    return Registry(port, root, log, proc, tls, user, password)


@contextlib.contextmanager
def running_registry(**kwargs: Any) -> Iterator[Registry]:
    root = Path(tempfile.mkdtemp(prefix="gpd-registry-"))
    registry_ = None
    try:
        try:
            tls = make_tls(root) if kwargs.pop("with_tls", False) else None
            registry_ = start_registry(root, tls=tls, **kwargs)
        except (FileNotFoundError, RuntimeError) as exc:
            require_service(False, f"docker-registry ({exc})")
        assert registry_ is not None
        yield registry_
    finally:
        if registry_ is not None:
            stop_process(registry_.proc)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def registry() -> Iterator[Registry]:
    with running_registry() as reg:
        yield reg


AUTH_USER = "gpd-user"
AUTH_PASSWORD = "s3cr3t-Pa55word-never-printed"


@pytest.fixture(scope="session")
def auth_registry() -> Iterator[Registry]:
    with running_registry(with_tls=True, credentials=(AUTH_USER, AUTH_PASSWORD)) as reg:
        yield reg


# --- the Docker engine --------------------------------------------------------------


@dataclass
class Dockerd:
    root: Path
    proc: subprocess.Popen[bytes]

    @property
    def socket(self) -> Path:
        return self.root / "docker.sock"

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    def docker(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            ["docker", "-H", self.host, *args], capture_output=True, timeout=timeout, check=True
        )

    def load(self, tarball: Path) -> None:
        self.docker("load", "-i", str(tarball))


@pytest.fixture(scope="session")
def dockerd() -> Iterator[Dockerd]:
    binary = shutil.which("dockerd")
    if binary is None or shutil.which("docker") is None or os.geteuid() != 0:
        require_service(False, "dockerd (docker.io, run as root)")
    root = Path(tempfile.mkdtemp(prefix="gpd-dockerd-", dir="/tmp"))
    log = root / "dockerd.log"
    command = [
        str(binary),
        "--storage-driver", "vfs",
        "--iptables=false",
        "--bridge=none",
        "--host", f"unix://{root / 'docker.sock'}",
        "--data-root", str(root / "data"),
        "--exec-root", str(root / "exec"),
        "--pidfile", str(root / "docker.pid"),
    ]  # fmt: skip
    with log.open("wb") as log_stream:
        proc = subprocess.Popen(command, stdout=log_stream, stderr=subprocess.STDOUT)
    engine = Dockerd(root, proc)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not engine.socket.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-1500:]
                stop_process(proc)
                require_service(False, f"dockerd (did not start: {tail})")
            time.sleep(0.1)
        for _ in range(100):
            if (
                subprocess.run(
                    ["docker", "-H", engine.host, "version"], capture_output=True, timeout=10
                ).returncode
                == 0
            ):
                break
            time.sleep(0.1)
        yield engine
    finally:
        stop_process(proc, grace_s=30)
        shutil.rmtree(root, ignore_errors=True)


# --- real-format images -------------------------------------------------------------


def layer_tar(files: dict[str, bytes]) -> bytes:
    """An uncompressed layer tar (what `docker load` and diff_ids want)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def image_config(env: dict[str, str], arch: str = "amd64", labels: dict[str, str] | None = None,
                 diff_ids: list[str] | None = None, variant: str | None = None) -> dict[str, Any]:  # fmt: skip
    config: dict[str, Any] = {
        "architecture": arch,
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": {"Env": [f"{k}={v}" for k, v in env.items()], "Labels": labels or {}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids or []},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "gpudoctor test"}],
    }
    if variant:
        config["variant"] = variant
    return config


def canonical(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


@dataclass
class BuiltImage:
    config: bytes
    layers: list[bytes]  # as stored (gzip)
    manifest: bytes
    media_type: str

    @property
    def digest(self) -> str:
        return digest_of(self.manifest)


def build_image(env: dict[str, str], *, arch: str = "amd64", media_type: str = DOCKER_MANIFEST,
                labels: dict[str, str] | None = None, variant: str | None = None) -> BuiltImage:  # fmt: skip
    """One small real image: a gzip layer with one file, its config, its manifest."""
    raw_layer = layer_tar({"etc/gpudoctor-test": json.dumps(env, sort_keys=True).encode()})
    layer = gzip.compress(raw_layer, mtime=0)
    config = canonical(image_config(env, arch, labels, [digest_of(raw_layer)], variant))
    manifest = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {"mediaType": _CONFIG_TYPE[media_type], "size": len(config), "digest": digest_of(config)},
        "layers": [{"mediaType": _LAYER_TYPE[media_type], "size": len(layer), "digest": digest_of(layer)}],
    }
    return BuiltImage(config, [layer], canonical(manifest), media_type)


def index_document(images: list[tuple[BuiltImage, dict[str, str]]], media_type: str = OCI_INDEX) -> bytes:
    return canonical(
        {
            "schemaVersion": 2,
            "mediaType": media_type,
            "manifests": [
                {
                    "mediaType": img.media_type,
                    "size": len(img.manifest),
                    "digest": img.digest,
                    "platform": platform,
                }
                for img, platform in images
            ],
        }
    )


def push_image(registry_: Registry, repository: str, tag: str, image: BuiltImage) -> str:
    registry_.push_blob(repository, image.config)
    for layer in image.layers:
        registry_.push_blob(repository, layer)
    return registry_.push_manifest(repository, tag, image.manifest, image.media_type)


def push_index(registry_: Registry, repository: str, tag: str, images: list[tuple[BuiltImage, dict[str, str]]],
               media_type: str = OCI_INDEX) -> str:  # fmt: skip
    for img, _ in images:
        push_image(registry_, repository, img.digest, img)
    return registry_.push_manifest(repository, tag, index_document(images, media_type), media_type)


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    tar.addfile(info, io.BytesIO(data))


def docker_save_tar(path: Path, env: dict[str, str], repo_tag: str, arch: str = "amd64") -> Path:
    """A `docker save` style tarball (manifest.json + config + layer) that `docker load` accepts."""
    raw_layer = layer_tar({"etc/gpudoctor-test": b"docker-save\n"})
    config = canonical(image_config(env, arch, None, [digest_of(raw_layer)]))
    config_name = digest_of(config).split(":")[1] + ".json"
    layer_name = digest_of(raw_layer).split(":")[1] + "/layer.tar"
    manifest = [{"Config": config_name, "RepoTags": [repo_tag], "Layers": [layer_name]}]
    with tarfile.open(path, "w") as tar:
        _add(tar, config_name, config)
        _add(tar, layer_name, raw_layer)
        _add(tar, "manifest.json", json.dumps(manifest).encode())
    return path


def oci_layout(target: Path, entries: list[tuple[BuiltImage, dict[str, str] | None]], *, as_tar: bool,
               ref_name: str = "example.test/gpu/app:1") -> Path:  # fmt: skip
    """An OCI image layout: one manifest (platform None) or an index of several."""
    blobs: dict[str, bytes] = {}
    for img, _ in entries:
        blobs[img.digest] = img.manifest
        blobs[digest_of(img.config)] = img.config
        for layer in img.layers:
            blobs[digest_of(layer)] = layer
    if len(entries) == 1 and entries[0][1] is None:
        img = entries[0][0]
        top = {"mediaType": OCI_MANIFEST, "digest": img.digest, "size": len(img.manifest)}
    else:
        index = index_document([(img, plat or {}) for img, plat in entries])
        blobs[digest_of(index)] = index
        top = {"mediaType": OCI_INDEX, "digest": digest_of(index), "size": len(index)}
    top["annotations"] = {"org.opencontainers.image.ref.name": ref_name}
    files = {
        "oci-layout": b'{"imageLayoutVersion":"1.0.0"}',
        "index.json": canonical({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [top]}),
    }
    for digest, data in blobs.items():
        files["blobs/sha256/" + digest.split(":")[1]] = data
    if as_tar:
        with tarfile.open(target, "w") as tar:
            for name, data in files.items():
                _add(tar, name, data)
    else:
        for name, data in files.items():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            (target / name).write_bytes(data)
    return target


# --- a real forward proxy -----------------------------------------------------------


@dataclass
class ForwardProxy:
    """tinyproxy on 127.0.0.1 (plain-HTTP forwarding and CONNECT to any port)."""

    port: int
    log: Path
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def running_forward_proxy() -> Iterator[ForwardProxy]:
    binary = shutil.which("tinyproxy")
    if binary is None:
        require_service(False, "tinyproxy")
    root = Path(tempfile.mkdtemp(prefix="gpd-proxy-"))
    port = free_port()
    log = root / "tinyproxy.log"
    config = root / "tinyproxy.conf"
    config.write_text(
        f'Port {port}\nListen {LOOPBACK}\nTimeout 30\nAllow {LOOPBACK}\nLogFile "{log}"\n'
        f'LogLevel Connect\nPidFile "{root / "tinyproxy.pid"}"\nMaxClients 20\nDisableViaHeader Yes\n'
    )
    log.touch()
    proc = subprocess.Popen(
        [binary, "-d", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    try:
        _wait_for_port(port, proc, log)
        yield ForwardProxy(port, log, proc)
    finally:
        stop_process(proc)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def forward_proxy() -> Iterator[ForwardProxy]:
    with running_forward_proxy() as proxy:
        yield proxy
