"""Host facts: hostname, OS release, kernel, CPU architecture."""

from __future__ import annotations

import platform
import shlex

from gpudoctor.facts import HostFacts, mark_failed
from gpudoctor.probes.fsroot import FsRoot, SourceUnreadable


def parse_os_release(text: str) -> str | None:
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            parts = shlex.split(value, posix=True) if value else [""]
            values[key.strip()] = parts[0] if parts else ""
    return values.get("PRETTY_NAME") or values.get("NAME")


def probe_host(fs: FsRoot) -> HostFacts:
    host = HostFacts()

    def text(name: str, *paths: str) -> str | None:
        """The first of `paths` that is there, stripped, for fact `name`; one that is there but
        unreadable marks `name` failed (a later path stands in for an absent file only)."""
        for path in paths:
            try:
                found = fs.read_source(path)
            except SourceUnreadable as exc:
                mark_failed(host, name, str(exc))
                return None
            if found is not None:
                return found.strip() or None
        return None

    # /proc/sys/kernel/* rather than uname: they follow --sysfs-root.
    host.hostname = text("hostname", "/proc/sys/kernel/hostname")
    host.kernel = text("kernel", "/proc/sys/kernel/osrelease")
    if not fs.is_host and host.hostname is None and "hostname" not in host.failed:
        # A container's own hostname is its pod's: under --host-root the host's /etc/hostname.
        host.hostname = text("hostname", "/etc/hostname")
    if fs.live_kernel:
        uname = platform.uname()  # a container shares the host's kernel
        if fs.is_host:
            host.hostname = host.hostname or uname.node or None
        host.kernel = host.kernel or uname.release or None
        host.cpu_arch = uname.machine or None
    else:
        host.unknown["cpu_arch"] = "not recorded in the --sysfs-root tree"
    os_release = text("os_release", "/etc/os-release", "/usr/lib/os-release")
    host.os_release = parse_os_release(os_release) if os_release else None
    for name in ("hostname", "kernel", "os_release"):
        if getattr(host, name) is None and name not in host.failed:
            host.unknown[name] = "not readable"
    return host
