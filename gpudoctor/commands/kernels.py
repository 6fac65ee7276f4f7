"""`gpudoctor kernels PATH...`: CUDA kernels in binaries, and per GPU native / jit / none."""

from __future__ import annotations

import argparse
import json
import sys

from gpudoctor.commands.common import add_format, add_output, add_rules, file_path

TYPE_CHECKING = False  # typing is not imported at run time: see docs/startup.md
if TYPE_CHECKING:
    from gpudoctor.facts import KernelScanFacts, NodeFacts
    from gpudoctor.findings import Finding


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.usage = "%(prog)s [OPTIONS] PATHS..."
    parser.description = """List the cubin and PTX targets in PATH (directory, wheel, tar, docker save /
OCI archive, OCI layout or local Docker image) and say, per compute capability, native, jit or none."""
    parser.add_argument("paths", nargs="+", metavar="PATHS", help=argparse.SUPPRESS)
    parser.add_argument(
        "--gpu",
        dest="gpus",
        action="append",
        default=[],
        metavar="TEXT",
        help="Compute capability to judge, e.g. 9.0 (repeatable, or comma-separated: 8.0,9.0).",
    )
    parser.add_argument(
        "--node",
        dest="node_file",
        type=file_path,
        metavar="FILE",
        help="A saved report or nvidia-smi -q -x XML.",
    )
    add_format(parser, "table", "json")
    add_output(parser)
    add_rules(parser)


def run(args: argparse.Namespace) -> int:
    from gpudoctor import exitcodes
    from gpudoctor.errors import UsageError
    from gpudoctor.kernels.compat import DEFAULT_CCS, cc_number, fill_per_gpu
    from gpudoctor.kernels.report import build, render_table
    from gpudoctor.kernels.sources import scan_targets

    gpus = tuple(cc.strip() for value in args.gpus for cc in value.split(",") if cc.strip())
    for cc in gpus:
        try:
            cc_number(cc)
        except ValueError as exc:
            raise UsageError(f"--gpu: {exc}") from exc
    node = None
    if args.node_file:
        from gpudoctor.nodeinput import load_node

        node = load_node(args.node_file)
    scan = scan_targets(list(args.paths))
    findings, node_ccs = _findings(scan, node, gpus, args.rule_dirs) if (node or gpus) else (None, [])
    ccs = _unique([*gpus, *node_ccs]) or list(DEFAULT_CCS)
    driver_cuda = node.driver.cuda_version if node else None
    for binary in scan.binaries:
        fill_per_gpu(binary, ccs, driver_cuda)
    report = build(scan, ccs, findings)
    text = json.dumps(report, indent=2) + "\n" if args.fmt == "json" else render_table(report)
    if args.output:
        from gpudoctor.fileio import write_atomic

        write_atomic(args.output, text)
    else:
        sys.stdout.write(text)
    return exitcodes.for_verdict(report["verdict"])


def _findings(
    scan: KernelScanFacts, node: NodeFacts | None, gpus: tuple[str, ...], rule_dirs: list[str]
) -> tuple[list[Finding], list[str]]:
    """The kernel rules' findings, and the node's compute capabilities (facts or
    derived from the GPU table, e.g. for an nvidia-smi XML that lacks them)."""
    from gpudoctor.commands.ruledirs import rule_dirs_from
    from gpudoctor.derive import build_context
    from gpudoctor.engine import evaluate
    from gpudoctor.facts import GpuFacts, ImageFacts, NodeFacts
    from gpudoctor.knowledge import RuleSet, load_rules

    node = node or NodeFacts(source="kernels --gpu")
    for cc in gpus:
        node.gpus.append(
            GpuFacts(index=len(node.gpus), name=f"compute capability {cc}", compute_capability=cc)
        )
    image = ImageFacts(reference="kernels scan", source="kernels", kernels=scan)
    ruleset = load_rules(rule_dirs_from(rule_dirs))
    kernel_rules = RuleSet()
    for rule in ruleset:
        if rule.id.startswith("GD-KERN-"):
            kernel_rules.add(rule, site=False)
    context = build_context(node, image)
    ccs = [
        str(g.get("compute_capability") or g["derived"].get("compute_capability") or "")
        for g in context["gpus"]
    ]
    return evaluate(kernel_rules, context, applies_to="node+image"), [cc for cc in ccs if cc]


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))
