"""`gpudoctor scan`: probe this node (or load a saved nvidia-smi XML / report) and diagnose it."""

from __future__ import annotations

from pathlib import Path

import click

from gpudoctor.commands.common import (
    FILE,
    Command,
    emit,
    format_option,
    output_option,
    rule_dirs_from,
    rules_option,
    timed,
)
from gpudoctor.errors import InputMissing, UsageError


@click.command(
    "scan",
    cls=Command,
    epilog="""\b
Examples:
  gpudoctor scan
  gpudoctor scan --format prometheus -o /var/lib/node_exporter/gpudoctor.prom
  nvidia-smi -q -x > node.xml && gpudoctor scan --from-nvidia-smi node.xml --format json
  gpudoctor scan --sysfs-root /host --format nfd
""",
)
@format_option("table", "json", "prometheus", "nfd", "oneline", "html")
@output_option
@click.option(
    "--from-nvidia-smi",
    "from_file",
    type=FILE,
    default=None,
    help="Diagnose a saved `nvidia-smi -q -x` output (or a saved gpudoctor JSON report) instead of this node.",
)
@click.option(
    "--sysfs-root",
    type=click.Path(file_okay=False),
    default=None,
    help="Read /proc, /sys and /etc under DIRECTORY (a host mounted into a container, or a test tree).",
)
@rules_option
def command(
    fmt: str, output: str | None, from_file: str | None, sysfs_root: str | None, rule_dirs: tuple[str, ...]
) -> int:
    """Probe this node (or a saved nvidia-smi XML) and diagnose it.

    Exit code is the verdict: 0 ok, 1 warn, 2 fail, 3 unknown.
    """
    from gpudoctor.pipeline import diagnose

    if from_file is not None:
        from gpudoctor.nodeinput import load_node

        if sysfs_root is not None:
            raise UsageError("--sysfs-root is for a live scan; it cannot be combined with --from-nvidia-smi")
        with timed("load"):
            node = load_node(from_file)
    else:
        from gpudoctor.probes.collect import collect_node

        if sysfs_root is not None and not Path(sysfs_root).is_dir():
            raise InputMissing(f"{sysfs_root}: no such directory (--sysfs-root)")
        with timed("probes"):
            node = collect_node(sysfs_root=sysfs_root)
    with timed("rules"):
        report = diagnose(node, rule_dirs=rule_dirs_from(rule_dirs))
    return emit(report, fmt, output)
