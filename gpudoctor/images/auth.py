"""Registry credentials from the user's Docker config and credential helpers, and
the WWW-Authenticate challenge parser.

Lookup order as the docker CLI does it: `credHelpers[host]`, then `auths[host]`
(inline `auth` / `username`+`password` / `identitytoken`), then `credsStore`.
Secrets stay in memory: never logged, never in an error message.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from dataclasses import dataclass, field
from typing import Any

from gpudoctor.errors import BadInput, ServiceUnavailable

HELPER_TIMEOUT_S = 10.0
# A Docker config holds a few credentials and settings, kilobytes; a bigger file is no config.
MAX_DOCKER_CONFIG_BYTES = 4 * 1024 * 1024
DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_HUB_ALIASES = ("docker.io", "index.docker.io", "registry-1.docker.io")
_CHALLENGE_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')


@dataclass
class Credentials:
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    identity_token: str | None = field(default=None, repr=False)  # OAuth2 refresh token

    def basic(self) -> str | None:
        if self.username is None or self.password is None:
            return None
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


def config_path() -> str:
    """The Docker CLI's config file."""
    directory = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return os.path.join(directory, "config.json")


def _load_config(path: str) -> dict[str, Any]:
    # Through gpudoctor.inputs like every supplied file: a FIFO there would block the read
    # forever, a symlink to /dev/zero would never end (66); malformed JSON is 65.
    from gpudoctor.inputs import parse_json, read_capped

    if not os.path.exists(path):
        return {}
    data = parse_json(read_capped(path, MAX_DOCKER_CONFIG_BYTES, "a Docker config"), f"Docker config {path}")
    return data if isinstance(data, dict) else {}


def _host_of(key: str) -> str:
    """'https://host:5000/v1/' -> 'host:5000'"""
    key = key.split("://", 1)[-1]
    return key.split("/", 1)[0]


def _keys_for(registry: str) -> set[str]:
    return set(_HUB_ALIASES) if registry in _HUB_ALIASES else {registry}


def _from_auths(auths: Any, registry: str) -> Credentials | None:
    if not isinstance(auths, dict):
        return None
    wanted = _keys_for(registry)
    for key, entry in auths.items():
        if _host_of(key) not in wanted or not isinstance(entry, dict):
            continue
        creds = Credentials(
            username=entry.get("username") or None,
            password=entry.get("password") or None,
            identity_token=entry.get("identitytoken") or None,
        )
        if entry.get("auth"):
            try:
                user, _, secret = base64.b64decode(entry["auth"]).decode("utf-8").partition(":")
            except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
                raise BadInput(
                    f"Docker config: the auth entry for {key} is not base64 user:password"
                ) from None
            creds.username, creds.password = user, secret
        if creds.basic() or creds.identity_token:
            return creds
    return None


def _helper(name: str, registry: str) -> Credentials | None:
    program = f"docker-credential-{name}"
    server = DOCKER_HUB_KEY if registry in _HUB_ALIASES else registry
    try:
        done = subprocess.run(
            [program, "get"],
            input=server.encode(),
            capture_output=True,
            timeout=HELPER_TIMEOUT_S,
            check=False,
        )
    except FileNotFoundError:
        raise ServiceUnavailable(f"credential helper {program} is configured but not installed") from None
    except subprocess.TimeoutExpired:
        raise ServiceUnavailable(
            f"credential helper {program} timed out after {HELPER_TIMEOUT_S:g}s"
        ) from None
    if done.returncode != 0:
        if b"credentials not found" in done.stdout.lower() + done.stderr.lower():
            return None
        # Its output may hold secrets: only the exit status is reported.
        raise ServiceUnavailable(f"credential helper {program} failed (exit {done.returncode})")
    try:
        data = json.loads(done.stdout)
    except (ValueError, RecursionError):  # JSONDecodeError, not UTF-8, over 4300 digits, too deep
        data = None
    if not isinstance(data, dict):
        raise BadInput(f"credential helper {program} returned invalid JSON")
    username, secret = data.get("Username"), data.get("Secret")
    if not secret:
        return None
    if username == "<token>":
        return Credentials(identity_token=secret)
    return Credentials(username=username, password=secret)


def credentials_for(registry: str) -> Credentials | None:
    """Credentials for a registry host (as in the image reference), or None for anonymous."""
    config = _load_config(config_path())
    helpers = config.get("credHelpers")
    if isinstance(helpers, dict):
        for key in _keys_for(registry):
            if isinstance(helpers.get(key), str):
                return _helper(helpers[key], registry)
    inline = _from_auths(config.get("auths"), registry)
    if inline is not None:
        return inline
    store = config.get("credsStore")
    if isinstance(store, str) and store:
        return _helper(store, registry)
    return None


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """'Bearer realm="https://auth",service="reg",scope="repository:x:pull"' -> ("bearer", {...})"""
    scheme, _, rest = header.strip().partition(" ")
    params = {
        m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
        for m in _CHALLENGE_PARAM.finditer(rest)
    }
    return scheme.lower(), params
