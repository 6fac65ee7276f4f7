"""`gpudoctor scan`: probe this node (or load a saved nvidia-smi XML / report) and diagnose it."""

from __future__ import annotations

import click

from gpudoctor.commands.common import (
    FILE,
    Command,
    collect_live,
    emit,
    format_option,
    output_option,
    root_options,
    rule_dirs_from,
    rules_option,
    timed,
)


@click.command(
    "scan",
    cls=Command,
    epilog="""\b
Examples:
  gpudoctor scan
  gpudoctor scan --format prometheus -o /var/lib/node_exporter/gpudoctor.prom
  nvidia-smi -q -x > node.xml && gpudoctor scan --from-nvidia-smi node.xml --format json
  gpudoctor scan --host-root /host --format json    # in a container, the host mounted at /host
  gpudoctor scan --sysfs-root recorded-tree/          # a recorded tree: files only, no NVML
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
@root_options
@rules_option
def command(
    fmt: str,
    output: str | None,
    from_file: str | None,
    host_root: str | None,
    sysfs_root: str | None,
    rule_dirs: tuple[str, ...],
) -> int:
    """Probe this node (or a saved nvidia-smi XML) and diagnose it.

    Exit code is the verdict: 0 ok, 1 warn, 2 fail, 3 unknown.
    """
    from gpudoctor.pipeline import diagnose

    if from_file is not None:
        from gpudoctor.nodeinput import load_node

        if host_root is not None or sysfs_root is not None:
            collect_live(host_root, sysfs_root, "--from-nvidia-smi")  # a usage error: one input only
        with timed("load"):
            node = load_node(from_file)
    else:
        with timed("probes"):
            node = collect_live(host_root, sysfs_root)
    with timed("rules"):
        report = diagnose(node, rule_dirs=rule_dirs_from(rule_dirs))
    return emit(report, fmt, output)
