"""`gpudoctor scan`: probe this node (or load a saved nvidia-smi XML / report) and diagnose it."""

from __future__ import annotations

import argparse

from gpudoctor.commands.common import add_format, add_output, add_rules, dir_path, emit, file_path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.usage = "%(prog)s [OPTIONS]"
    parser.description = """Probe this node (or a saved nvidia-smi XML) and diagnose it.

Exit code is the verdict: 0 ok, 1 warn, 2 fail, 3 unknown.
"""
    add_format(parser, "table", "json", "prometheus", "nfd", "oneline")
    add_output(parser)
    parser.add_argument(
        "--from-nvidia-smi",
        dest="from_file",
        type=file_path,
        default=None,
        metavar="FILE",
        help="Diagnose a saved `nvidia-smi -q -x` output (or a saved gpudoctor JSON report) instead of this node.",
    )
    parser.add_argument(
        "--sysfs-root",
        type=dir_path,
        default=None,
        metavar="DIRECTORY",
        help="Read /proc, /sys and /etc under DIR (a host mounted into a container, or a test tree).",
    )
    add_rules(parser)


def run(args: argparse.Namespace) -> int:
    from gpudoctor.commands.ruledirs import rule_dirs_from
    from gpudoctor.pipeline import diagnose

    if args.from_file is not None:
        from gpudoctor.nodeinput import load_node

        if args.sysfs_root is not None:
            from gpudoctor.errors import UsageError

            raise UsageError("--sysfs-root is for a live scan; it cannot be combined with --from-nvidia-smi")
        node = load_node(args.from_file)
    else:
        from gpudoctor.errors import InputMissing
        from gpudoctor.probes.collect import collect_node

        if args.sysfs_root is not None and not _is_dir(args.sysfs_root):
            raise InputMissing(f"{args.sysfs_root}: no such directory (--sysfs-root)")
        node = collect_node(sysfs_root=args.sysfs_root)
    report = diagnose(node, rule_dirs=rule_dirs_from(args.rule_dirs))
    return emit(report, args.fmt, args.output)


def _is_dir(path: str) -> bool:
    import os

    return os.path.isdir(path)
