"""Container engines' GPU settings, read from their configuration files.

Docker: /etc/docker/daemon.json `runtimes`, `default-runtime` (runc when unset) and
`features.cdi` (opt-in since Docker 25; its default differs between releases, so an
unset value is unknown). containerd: /etc/containerd/config.toml and the files its
`imports` name (where `nvidia-ctk runtime configure` writes a drop-in), the CRI
plugin's runtimes, `default_runtime_name` and `enable_cdi`: plugin "cri" in config
version 1, "io.containerd.grpc.v1.cri" in version 2, "io.containerd.cri.v1.runtime" in
version 3 (containerd 2.x, where CDI is on unless disabled).
"""

from __future__ import annotations

from typing import Any

from gpudoctor.errors import BadInput
from gpudoctor.facts import ContainerRuntimeFacts, mark_all
from gpudoctor.inputs import parse_json, parse_toml
from gpudoctor.probes.fsroot import FsRoot, SourceUnreadable

DOCKER_CONFIG = "/etc/docker/daemon.json"
CONTAINERD_CONFIG = "/etc/containerd/config.toml"
_CRI_PLUGINS = {1: "cri", 2: "io.containerd.grpc.v1.cri", 3: "io.containerd.cri.v1.runtime"}


def probe_docker(fs: FsRoot, facts: ContainerRuntimeFacts) -> None:
    names = ("docker_nvidia_runtime", "docker_default_runtime", "docker_cdi")
    try:
        text = fs.read_source(DOCKER_CONFIG)
    except SourceUnreadable as exc:
        mark_all(facts, names, str(exc))
        return
    if text is None:
        reason = f"{DOCKER_CONFIG} absent"
        if fs.exists("/etc/docker"):
            # Docker is configured here without a daemon.json: its built-in defaults apply.
            facts.docker_nvidia_runtime, facts.docker_default_runtime = False, "runc"
            facts.unknown["docker_cdi"] = f"{reason}: the default depends on the Docker Engine release"
        else:
            for name in names:
                facts.unknown[name] = reason
        return
    try:
        config = parse_json(text, DOCKER_CONFIG)
    except BadInput as exc:
        mark_all(facts, names, str(exc))
        return
    if not isinstance(config, dict):
        mark_all(facts, names, f"{DOCKER_CONFIG} is not a JSON object")
        return
    runtimes = config.get("runtimes")
    facts.docker_nvidia_runtime = isinstance(runtimes, dict) and "nvidia" in runtimes
    default = config.get("default-runtime")
    # Docker's own default when daemon.json does not name one.
    facts.docker_default_runtime = default if isinstance(default, str) else "runc"
    features = config.get("features")
    cdi = features.get("cdi") if isinstance(features, dict) else None
    if isinstance(cdi, bool):
        facts.docker_cdi = cdi
    else:
        facts.unknown["docker_cdi"] = (
            f"{DOCKER_CONFIG} does not set features.cdi: the default depends on the Docker Engine release"
        )


def probe_containerd(fs: FsRoot, facts: ContainerRuntimeFacts) -> None:
    names = ("containerd_nvidia_runtime", "containerd_default_runtime", "containerd_cdi")
    try:
        text = fs.read_source(CONTAINERD_CONFIG)
    except SourceUnreadable as exc:
        mark_all(facts, names, str(exc))
        return
    if text is None:
        for name in names:
            facts.unknown[name] = f"{CONTAINERD_CONFIG} absent"
        return
    documents: list[tuple[str, dict[str, Any]]] = []
    try:
        main = parse_toml(text, CONTAINERD_CONFIG)
    except BadInput as exc:
        mark_all(facts, names, str(exc))
        return
    documents.append((CONTAINERD_CONFIG, main))
    imports = main.get("imports")
    for pattern in imports if isinstance(imports, list) else []:
        for path in fs.glob(str(pattern)):
            try:
                documents.append((path, parse_toml(fs.read_source(path) or "", path)))
            except (SourceUnreadable, BadInput) as exc:
                mark_all(facts, names, str(exc))
                return
    version = main.get("version", 1)
    plugin = _CRI_PLUGINS.get(version) if isinstance(version, int) else None
    if plugin is None:
        for name in names:
            facts.unknown[name] = f"{CONTAINERD_CONFIG}: config version {version!r} is not read by gpudoctor"
        return
    runtimes: set[str] = set()
    default: str | None = None
    cdi: bool | None = None
    for _, document in documents:  # later files override earlier ones, as containerd merges imports
        cri = (document.get("plugins") or {}).get(plugin)
        if not isinstance(cri, dict):
            continue
        section = cri.get("containerd") if isinstance(cri.get("containerd"), dict) else {}
        runtimes |= set((section.get("runtimes") or {}).keys())
        if isinstance(section.get("default_runtime_name"), str):
            default = section["default_runtime_name"]
        for holder in (cri, section):  # version 1 configs keep it beside the runtimes
            if isinstance(holder.get("enable_cdi"), bool):
                cdi = holder["enable_cdi"]
    facts.containerd_nvidia_runtime = "nvidia" in runtimes
    facts.containerd_default_runtime = default or "runc"  # containerd's built-in default
    if cdi is None and version == 3:
        cdi = True  # containerd 2.x enables CDI by default
    facts.containerd_cdi = cdi
    if cdi is None:
        facts.unknown["containerd_cdi"] = (
            "enable_cdi not set in a version 2 config: off in containerd 1.7, on in containerd 2.x"
        )
