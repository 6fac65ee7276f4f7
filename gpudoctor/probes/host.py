"""Host facts: hostname, OS release, kernel, CPU architecture."""

from __future__ import annotations

import platform
import shlex

from gpudoctor.facts import HostFacts
from gpudoctor.probes.fsroot import FsRoot


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
    # /proc/sys/kernel/* rather than uname: they follow --sysfs-root.
    host.hostname = (fs.read_text("/proc/sys/kernel/hostname") or "").strip() or None
    host.kernel = (fs.read_text("/proc/sys/kernel/osrelease") or "").strip() or None
    if not fs.is_host:
        # A container's own hostname is its pod's: under --host-root the host's /etc/hostname.
        host.hostname = host.hostname or (fs.read_text("/etc/hostname") or "").strip() or None
    if fs.live_kernel:
        uname = platform.uname()  # a container shares the host's kernel
        if fs.is_host:
            host.hostname = host.hostname or uname.node or None
        host.kernel = host.kernel or uname.release or None
        host.cpu_arch = uname.machine or None
    else:
        host.unknown["cpu_arch"] = "not recorded in the --sysfs-root tree"
    os_release = fs.read_text("/etc/os-release") or fs.read_text("/usr/lib/os-release")
    host.os_release = parse_os_release(os_release) if os_release else None
    for name in ("hostname", "kernel", "os_release"):
        if getattr(host, name) is None:
            host.unknown[name] = "not readable"
    return host
