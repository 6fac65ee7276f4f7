"""Where a registry answers: its mirrors, as the node's runtime would use them, then itself.

* containerd: `/etc/containerd/certs.d/NAMESPACE/hosts.toml` for any registry, NAMESPACE
  being `host_port_`, `host:port` or `_default`, first found. Its `[host."URL"]` entries
  are tried in order, each only for what its `capabilities` allow (`resolve`: a tag to a
  manifest; `pull`: anything by digest), then `server` (default: the registry itself).
  `skip_verify`, `ca` (the first file: requests takes one), `proxy` and `override_path`
  are honoured; a mirror is asked with `?ns=REGISTRY` as containerd asks it.
* Docker: `registry-mirrors` in `/etc/docker/daemon.json`, for Docker Hub only (as dockerd
  uses them), tried before Docker Hub itself.
* `--registry-mirror URL` (Docker Hub) or `--registry-mirror REGISTRY=URL`, tried first.

Files are read under the host root (`--host-root`, default /) so a container with the
host mounted elsewhere reads the host's. Plain HTTP: `--insecure-registry HOST:PORT` (only
HTTP), and loopback registries (127.0.0.0/8, ::1, localhost) as dockerd treats them: TLS
without verification, then plain HTTP.
Reference: https://github.com/containerd/containerd/blob/main/docs/hosts.md
"""

from __future__ import annotations

import ipaddress
import os
import posixpath
from dataclasses import dataclass, replace
from typing import Any

from gpudoctor.errors import BadInput, UsageError
from gpudoctor.images import RegistryOptions
from gpudoctor.images.reference import DOCKER_HUB, DOCKER_HUB_API, api_host
from gpudoctor.images.transport import Target
from gpudoctor.inputs import parse_json, parse_toml

ALL_CAPABILITIES = frozenset({"pull", "resolve"})
DAEMON_JSON = "/etc/docker/daemon.json"
CERTS_D = "/etc/containerd/certs.d"
MAX_CONFIG_BYTES = 1 << 20


@dataclass(frozen=True)
class Endpoint:
    """One place to send a registry's API requests."""

    base: str  # up to and including the API root: "https://mirror.example/v2"
    netloc: str  # host[:port], for credentials and messages
    target: Target = Target()
    capabilities: frozenset[str] = ALL_CAPABILITIES
    namespace: str | None = None  # a mirror is asked with ?ns=REGISTRY
    origin: str = "registry"  # "registry", "hosts.toml PATH", "daemon.json", "--registry-mirror"
    mirror: bool = False  # read-only: writes (kernels --attach) go to the registry itself

    @property
    def plain_http(self) -> bool:
        return self.base.startswith("http://")

    def url(self, path: str) -> str:
        return f"{self.base}/{path}" + (f"?ns={self.namespace}" if self.namespace else "")

    def describe(self) -> str:
        return self.base.removesuffix("/v2") + ("" if self.origin == "registry" else f" ({self.origin})")


def is_loopback(netloc: str) -> bool:
    host = netloc.rsplit(":", 1)[0] if not netloc.endswith("]") else netloc
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def endpoints_for(registry: str, options: RegistryOptions) -> list[Endpoint]:
    """Mirrors first, then the registry (or the `server` hosts.toml names)."""
    found = [_flag_mirror(value, registry, options) for value in options.mirrors]
    mirrors = [endpoint for endpoint in found if endpoint is not None]
    upstream = _upstream(registry, options)
    if options.read_runtime_config:
        hosts = _hosts_toml(registry, options)
        if hosts is not None:
            toml_mirrors, server = hosts
            mirrors += toml_mirrors
            upstream = [server] if server is not None else upstream
        elif registry == DOCKER_HUB:
            mirrors += _daemon_mirrors(options)
    return [replace(endpoint, mirror=True) for endpoint in mirrors] + upstream


def _upstream(registry: str, options: RegistryOptions) -> list[Endpoint]:
    host = api_host(registry)
    if registry in options.insecure_registries:
        return [Endpoint(f"http://{host}/v2", host)]
    if is_loopback(host):
        loose = Target(verify=options.ca_bundle or False)
        return [Endpoint(f"https://{host}/v2", host, loose), Endpoint(f"http://{host}/v2", host)]
    return [Endpoint(f"https://{host}/v2", host, Target(verify=options.ca_bundle or True))]


def _from_url(
    url: str, registry: str, options: RegistryOptions, origin: str, *, namespace: bool, **extra: Any
) -> Endpoint:
    """An endpoint for a mirror or server URL (`https://host[:port][/path]`, scheme optional)."""
    if "://" not in url:
        url = f"https://{url}"
    scheme, _, rest = url.partition("://")
    netloc, _, path = rest.partition("/")
    if scheme not in ("http", "https") or not netloc or any(c in url for c in " \t\r\n?#@"):
        raise BadInput(f"{origin}: not a registry URL: {url[:100]!r}")
    path = posixpath.normpath("/" + path).rstrip("/") if path else ""
    if not extra.pop("override_path", False) and not path.endswith("/v2"):
        path += "/v2"
    verify: bool | str = extra.pop("verify") if "verify" in extra else (options.ca_bundle or True)
    if scheme == "https" and netloc in options.insecure_registries:
        verify = False
    return Endpoint(
        f"{scheme}://{netloc}{path}",
        netloc,
        Target(verify=verify, proxy=extra.pop("proxy", None)),
        extra.pop("capabilities", ALL_CAPABILITIES),
        registry if namespace else None,
        origin,
    )


def _flag_mirror(value: str, registry: str, options: RegistryOptions) -> Endpoint | None:
    """`--registry-mirror URL` (Docker Hub) or `--registry-mirror REGISTRY=URL`."""
    target, equals, url = value.partition("=")
    if not equals:
        target, url = DOCKER_HUB, value
    if target != registry:
        return None
    try:
        return _from_url(url, registry, options, "--registry-mirror", namespace=True)
    except BadInput as exc:
        raise UsageError(str(exc)) from None


def _read(options: RegistryOptions, absolute: str) -> str | None:
    path = os.path.join(options.host_root, absolute.lstrip("/"))
    try:
        if not os.path.isfile(path):
            return None
        with open(path, encoding="utf-8") as handle:
            return handle.read(MAX_CONFIG_BYTES + 1)
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: cannot read ({exc.__class__.__name__})") from None


def _daemon_mirrors(options: RegistryOptions) -> list[Endpoint]:
    text = _read(options, DAEMON_JSON)
    if text is None:
        return []
    config = parse_json(text, DAEMON_JSON)
    mirrors = config.get("registry-mirrors") if isinstance(config, dict) else None
    if not isinstance(mirrors, list):
        return []
    return [
        _from_url(url, DOCKER_HUB, options, DAEMON_JSON, namespace=False)
        for url in mirrors
        if isinstance(url, str)
    ]


def _namespaces(registry: str) -> list[str]:
    host, colon, port = registry.rpartition(":")
    names = [f"{host}_{port}_", registry] if colon and port.isdigit() and "]" not in port else [registry]
    return [*names, "_default"]


def _hosts_toml(registry: str, options: RegistryOptions) -> tuple[list[Endpoint], Endpoint | None] | None:
    """(mirrors, server) from the first hosts.toml for the registry, None when there is none."""
    for namespace in _namespaces(registry):
        where = f"{CERTS_D}/{namespace}/hosts.toml"
        text = _read(options, where)
        if text is None:
            continue
        config = parse_toml(text, where)
        directory = posixpath.dirname(where)
        hosts = config.get("host") if isinstance(config.get("host"), dict) else {}
        mirrors = [
            _from_url(
                url, registry, options, where, namespace=True, **_host_settings(entry, directory, options)
            )
            for url, entry in hosts.items()
            if isinstance(entry, dict)
        ]
        server = None
        if isinstance(config.get("server"), str):
            server_url = config["server"]
            if server_url.rstrip("/").endswith("://docker.io"):  # containerd's alias for Hub's API
                server_url = server_url.replace("://docker.io", f"://{DOCKER_HUB_API}")
            server = _from_url(
                server_url,
                registry,
                options,
                where,
                namespace=False,
                **_host_settings(config, directory, options),
            )
        return mirrors, server
    return None


def _host_settings(entry: dict[str, Any], directory: str, options: RegistryOptions) -> dict[str, Any]:
    settings: dict[str, Any] = {"override_path": entry.get("override_path") is True}
    capabilities = entry.get("capabilities")
    if isinstance(capabilities, list):
        settings["capabilities"] = frozenset(c for c in capabilities if isinstance(c, str)) & ALL_CAPABILITIES
    ca = entry.get("ca")
    first_ca = ca[0] if isinstance(ca, list) and ca else ca
    if isinstance(first_ca, str) and first_ca:
        absolute = first_ca if first_ca.startswith("/") else posixpath.join(directory, first_ca)
        settings["verify"] = os.path.join(options.host_root, absolute.lstrip("/"))
    if entry.get("skip_verify") is True:
        settings["verify"] = False
    if isinstance(entry.get("proxy"), str) and entry["proxy"]:
        settings["proxy"] = entry["proxy"]
    return settings
