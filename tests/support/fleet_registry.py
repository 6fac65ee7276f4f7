"""A real distribution registry (Debian `docker-registry`) on 127.0.0.1, and image pushes
through the registry HTTP API. Used by the fleet tests and bench/bench_fleet.py.

Image configs carry the environment of real images from fixtures/facts/images/.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

IMAGE_FACTS = Path(__file__).resolve().parent.parent.parent / "fixtures" / "facts" / "images"
# An empty gzip stream: a valid layer blob that is never fetched anyway.
EMPTY_LAYER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\x03\x00\x00\x00\x00\x00\x00\x00\x00\x00"


def registry_binary() -> str | None:
    return shutil.which("docker-registry")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def loopback_registry(workdir: Path) -> Iterator[str]:
    """A docker-registry on 127.0.0.1:<free port>; yields HOST:PORT and stops it on exit."""
    binary = registry_binary()
    if binary is None:
        raise RuntimeError("docker-registry not found (Debian package docker-registry)")
    port = _free_port()
    config = workdir / "registry.yml"
    config.write_text(
        "version: 0.1\n"
        "log: {level: error, accesslog: {disabled: true}}\n"
        f"storage: {{filesystem: {{rootdirectory: {workdir / 'registry-data'}}}}}\n"
        f"http: {{addr: '127.0.0.1:{port}'}}\n"
    )
    process = subprocess.Popen(
        [binary, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    host = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://{host}/v2/", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("docker-registry did not start") from None
                time.sleep(0.1)
        yield host
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _request(method: str, url: str, body: bytes = b"", content_type: str | None = None) -> Any:
    request = urllib.request.Request(url, data=body, method=method)
    if content_type:
        request.add_header("Content-Type", content_type)
    return urllib.request.urlopen(request, timeout=10)


def _push_blob(host: str, repository: str, blob: bytes) -> dict[str, Any]:
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    with _request("POST", f"http://{host}/v2/{repository}/blobs/uploads/") as response:
        location = response.headers["Location"]
    if location.startswith("/"):
        location = f"http://{host}{location}"
    separator = "&" if "?" in location else "?"
    with _request("PUT", f"{location}{separator}digest={digest}", blob, "application/octet-stream"):
        pass
    return {"digest": digest, "size": len(blob)}


def push_image(host: str, repository: str, tag: str, facts_name: str) -> str:
    """Push a one-layer OCI image whose config has the env and labels of fixtures/facts/images/<facts_name>.json."""
    facts = json.loads((IMAGE_FACTS / f"{facts_name}.json").read_text(encoding="utf-8"))
    platform = facts.get("platform") or {}
    config = {
        "architecture": platform.get("architecture") or "amd64",
        "os": platform.get("os") or "linux",
        "config": {"Env": [f"{k}={v}" for k, v in facts["env"].items()], "Labels": facts["labels"]},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(b"").hexdigest()]},
    }
    config_descriptor = _push_blob(host, repository, json.dumps(config).encode())
    layer_descriptor = _push_blob(host, repository, EMPTY_LAYER)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config_descriptor},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **layer_descriptor}],
    }
    with _request(
        "PUT",
        f"http://{host}/v2/{repository}/manifests/{tag}",
        json.dumps(manifest).encode(),
        "application/vnd.oci.image.manifest.v1+json",
    ):
        pass
    return f"{host}/{repository}:{tag}"
