"""`gpudoctor explain LOG|-`: name the cause of a GPU stack failure from its log."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, BinaryIO

import click

from gpudoctor import exitcodes
from gpudoctor.commands.common import (
    Command,
    format_option,
    node_option,
    output_option,
    rule_dirs_from,
    rules_option,
    write_text,
)
from gpudoctor.errors import InputMissing, UsageError

if TYPE_CHECKING:
    from gpudoctor.facts import NodeFacts


def _open_log(log: str) -> tuple[BinaryIO, str]:
    if log == "-":
        if sys.stdin.isatty():
            # Reading a terminal would wait for input that never comes.
            raise UsageError(
                "explain -: stdin is a terminal; pipe a log into it (e.g. kubectl logs POD | gpudoctor explain -)"
            )
        return sys.stdin.buffer, "<stdin>"
    from gpudoctor.inputs import open_regular

    # A pipe is read through `-`: a FIFO named here could block forever with no writer.
    return open_regular(log), log


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


@click.command("explain", cls=Command, epilog=_EPILOG)
@click.argument("log", metavar="LOG|-")
@node_option("Correlate with a saved gpudoctor JSON report or `nvidia-smi -q -x` XML.")
@click.option("--scan", "live", is_flag=True, help="Probe this node live and correlate with its facts.")
@format_option("table", "json")
@output_option
@rules_option
def command(
    log: str, node_file: str | None, live: bool, fmt: str, output: str | None, rule_dirs: tuple[str, ...]
) -> int:
    """Name the cause of a GPU stack failure from its log (a file, or - for stdin), with the fix."""
    from gpudoctor.explain import load_signatures
    from gpudoctor.explain.matcher import Matcher
    from gpudoctor.explain.render import render_table
    from gpudoctor.explain.report import build_explain_report

    if node_file and live:
        raise UsageError("--node and --scan are exclusive: give saved facts or probe this node, not both")
    signatures = load_signatures(rule_dirs_from(rule_dirs))
    node = None
    if node_file:
        from gpudoctor.nodeinput import load_node

        node = load_node(node_file)
    elif live:
        node = _live_node()
    context = None
    if node is not None:
        from gpudoctor.derive import build_context

        context = build_context(node)
    stream, source = _open_log(log)
    try:
        scan = Matcher(signatures.signatures).scan(stream)
    except OSError as exc:
        raise InputMissing(f"{source}: cannot read: {exc.strerror or exc}") from None
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    report = build_explain_report(scan, source, node, context)
    if fmt == "json":
        from gpudoctor.report.json_render import render as render_json

        text = render_json(report)
    else:
        from gpudoctor.report.style import colour

        text = render_table(report, colour=output is None and colour())
    write_text(text, output, report["verdict"])
    return exitcodes.for_verdict(report["verdict"])
