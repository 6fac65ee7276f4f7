"""`--host-root` and `--sysfs-root`: where a live scan reads the node's files from.

--host-root DIR   a host mounted into a container on that host (the Kubernetes DaemonSet:
                  `/host`). Host files (procfs, sysfs, /etc, package databases, CDI specs)
                  are read under DIR; NVML is still queried, through the libnvidia-ml the
                  NVIDIA container runtime injected; the kernel (uname) is the host's.
--sysfs-root DIR  a recorded tree (tests, bug reports): files only, nothing live, no NVML.
"""

from __future__ import annotations

import os

import click

from gpudoctor.errors import InputMissing, UsageError

TYPE_CHECKING = False  # typing is not imported at run time: see docs/startup.md
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from gpudoctor.facts import NodeFacts


def root_options(function: Callable[..., Any]) -> Callable[..., Any]:
    function = click.option(
        "--sysfs-root",
        type=click.Path(file_okay=False),
        default=None,
        help="Read /proc, /sys and /etc of a RECORDED tree under DIRECTORY; nothing live (no NVML).",
    )(function)
    return click.option(
        "--host-root",
        type=click.Path(file_okay=False),
        default=None,
        help="Read the host's files under DIRECTORY (a host mounted into a container) and still "
        "query NVML through the library the container runtime injected.",
    )(function)


def collect_live(host_root: str | None, sysfs_root: str | None, other: str | None = None) -> NodeFacts:
    """The node a live scan sees, after checking the root options (other: a conflicting input option)."""
    from gpudoctor.probes.collect import collect_node

    if host_root is not None and sysfs_root is not None:
        raise UsageError("--host-root and --sysfs-root cannot be combined: one root is read")
    for name, root in (("--host-root", host_root), ("--sysfs-root", sysfs_root)):
        if root is None:
            continue
        if other is not None:
            raise UsageError(f"{name} is for a live scan; it cannot be combined with {other}")
        if not os.path.isdir(root):
            raise InputMissing(f"{root}: no such directory ({name})")
    return collect_node(sysfs_root=sysfs_root, host_root=host_root)
