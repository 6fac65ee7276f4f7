"""CDI specifications (Container Device Interface) and the driver version each was generated for.

A spec is YAML or JSON (cncf-tags/container-device-interface SPEC.md: files named
*.yaml / *.json in the spec directories). `nvidia-ctk cdi generate` writes the
driver's libraries as mounts whose file names carry the driver version
(`/usr/lib/x86_64-linux-gnu/libcuda.so.580.65.06`) and, from toolkit v1.17, an
`enable-cuda-compat --host-driver-version=580.65.06` hook. After a driver upgrade
those files are gone, and a container given the stale spec fails at create.
"""

from __future__ import annotations

import json
import re
from typing import Any

from gpudoctor.facts import CdiSpecFacts
from gpudoctor.inputs import BadYaml, parse_yaml
from gpudoctor.probes.fsroot import FsRoot

DEFAULT_SPEC_DIRS = ("/etc/cdi", "/var/run/cdi")
_SPEC_SUFFIXES = (".yaml", ".yml", ".json")
# Only libraries versioned exactly as the driver: libcuda, libnvidia-ml (NVML).
_DRIVER_LIBRARY = re.compile(r"/lib(?:cuda|nvidia-ml)\.so\.(\d+\.\d+(?:\.\d+)?)$")
_HOST_DRIVER_ARG = re.compile(r"^--host-driver-version=(\d+\.\d+(?:\.\d+)?)$")
_MAX_SPEC_BYTES = 8 << 20


def spec_paths(fs: FsRoot, directories: tuple[str, ...]) -> list[str]:
    paths: list[str] = []
    for directory in directories:
        paths.extend(p for p in fs.glob(f"{directory.rstrip('/')}/*") if p.endswith(_SPEC_SUFFIXES))
    return paths


def read_spec(fs: FsRoot, path: str) -> CdiSpecFacts:
    """The spec's facts, `error` saying why it is not a usable spec; SourceUnreadable when the
    file cannot be read at all (the caller marks the spec list failed)."""
    facts = CdiSpecFacts(path=path)
    text = fs.read_source(path, limit=_MAX_SPEC_BYTES + 1)
    if text is None:
        facts.error = "gone while being read"
        return facts
    if len(text) > _MAX_SPEC_BYTES:
        facts.error = f"larger than {_MAX_SPEC_BYTES >> 20} MiB"
        return facts
    try:
        document = json.loads(text) if path.endswith(".json") else parse_yaml(text, path)
    except BadYaml as exc:
        facts.error = f"not valid YAML: {exc.reason}"
        return facts
    except (ValueError, RecursionError) as exc:
        facts.error = f"not valid JSON: {exc or 'nested too deeply'}".splitlines()[0]
        return facts
    if not isinstance(document, dict):
        facts.error = "not a CDI spec (no top-level mapping)"
        return facts
    facts.kind = _string(document.get("kind"))
    facts.cdi_version = _string(document.get("cdiVersion"))
    devices = document.get("devices")
    if isinstance(devices, list):
        facts.devices = [str(d["name"]) for d in devices if isinstance(d, dict) and "name" in d]
    versions = sorted(_driver_versions(document))
    if len(versions) == 1:
        facts.driver_version = versions[0]
    elif len(versions) > 1:
        facts.error = f"names several driver versions: {', '.join(versions)}"
    return facts


def _string(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _driver_versions(document: dict[str, Any]) -> set[str]:
    """Driver versions named by the spec's mounts and hook arguments, top level and per device."""
    edits = [document.get("containerEdits")]
    for device in document.get("devices") or []:
        if isinstance(device, dict):
            edits.append(device.get("containerEdits"))
    versions: set[str] = set()
    for edit in edits:
        if not isinstance(edit, dict):
            continue
        for mount in edit.get("mounts") or []:
            if isinstance(mount, dict):
                for key in ("hostPath", "containerPath"):
                    match = _DRIVER_LIBRARY.search(str(mount.get(key) or ""))
                    if match:
                        versions.add(match.group(1))
        for hook in edit.get("hooks") or []:
            if isinstance(hook, dict):
                for arg in hook.get("args") or []:
                    match = _HOST_DRIVER_ARG.match(str(arg))
                    if match:
                        versions.add(match.group(1))
    return versions
