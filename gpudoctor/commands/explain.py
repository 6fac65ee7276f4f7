"""`gpudoctor explain LOG|-`: name the cause of a GPU stack failure from its log."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gpudoctor import exitcodes
from gpudoctor.commands.common import add_format, add_output, add_rules
from gpudoctor.errors import InputMissing, UsageError

TYPE_CHECKING = False  # typing is not imported at run time: see docs/startup.md
if TYPE_CHECKING:
    from typing import BinaryIO

    from gpudoctor.facts import NodeFacts


def _open_log(log: str) -> tuple[BinaryIO, str]:
    if log == "-":
        if sys.stdin.isatty():
            # Reading a terminal would wait for input that never comes.
            raise UsageError(
                "explain -: stdin is a terminal; pipe a log into it (e.g. kubectl logs POD | gpudoctor explain -)"
            )
        return sys.stdin.buffer, "<stdin>"
    path = Path(log)
    if path.is_dir():
        raise InputMissing(f"{path}: is a directory, expected a log file")
    try:
        return path.open("rb"), str(path)
    except FileNotFoundError:
        raise InputMissing(f"{path}: no such file") from None
    except OSError as exc:
        raise InputMissing(f"{path}: cannot read: {exc.strerror or exc}") from None


def _live_node() -> NodeFacts:
    from gpudoctor.probes.collect import collect_node

    return collect_node()


_EPILOG = """\b
Examples:
  kubectl logs POD | gpudoctor explain -
  journalctl -k | gpudoctor explain - --node nvidia-smi.xml
  gpudoctor explain train.log --scan --format json

\b
Exit codes: 0 no known failure (or info only), 1 warn, 2 fail;
64 usage, 65 bad signature file or node file, 66 log or node file missing,
69 --scan without a live probe.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.usage = "%(prog)s [OPTIONS] LOG|-"
    parser.description = (
        "Name the cause of a GPU stack failure from its log (a file, or - for stdin), with the fix."
    )
    parser.epilog = _EPILOG
    parser.add_argument("log", metavar="LOG|-", help=argparse.SUPPRESS)
    parser.add_argument(
        "--node",
        dest="node_file",
        default=None,
        metavar="TEXT",
        help="Node facts: a saved gpudoctor JSON report or nvidia-smi -q -x XML.",
    )
    parser.add_argument(
        "--scan", dest="live", action="store_true", help="Probe this node live and correlate with its facts."
    )
    add_format(parser, "table", "json")
    add_output(parser)
    add_rules(parser)


def run(args: argparse.Namespace) -> int:
    from gpudoctor.commands.ruledirs import rule_dirs_from
    from gpudoctor.explain import load_signatures
    from gpudoctor.explain.matcher import Matcher
    from gpudoctor.explain.render import render_json, render_table
    from gpudoctor.explain.report import build_explain_report

    if args.node_file and args.live:
        raise UsageError("--node and --scan are exclusive: give saved facts or probe this node, not both")
    signatures = load_signatures(rule_dirs_from(args.rule_dirs))
    node = None
    if args.node_file:
        from gpudoctor.nodeinput import load_node

        node = load_node(args.node_file)
    elif args.live:
        node = _live_node()
    context = None
    if node is not None:
        from gpudoctor.derive import build_context

        context = build_context(node)
    stream, source = _open_log(args.log)
    try:
        scan = Matcher(signatures.signatures).scan(stream)
    except OSError as exc:
        raise InputMissing(f"{source}: cannot read: {exc.strerror or exc}") from None
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    report = build_explain_report(scan, source, node, context)
    text = render_json(report) if args.fmt == "json" else render_table(report)
    if args.output:
        from gpudoctor.fileio import write_atomic

        write_atomic(args.output, text)
    else:
        sys.stdout.write(text)
    return exitcodes.for_verdict(report["verdict"])
