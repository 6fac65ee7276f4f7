"""`gpudoctor kernels PATH...`: CUDA kernels in binaries, and per GPU native / jit / none."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from gpudoctor.commands.common import (
    Command,
    format_option,
    node_option,
    output_option,
    rule_dirs_from,
    rules_option,
    write_text,
)

if TYPE_CHECKING:
    from gpudoctor.facts import KernelScanFacts, NodeFacts
    from gpudoctor.findings import Finding


@click.command(
    "kernels",
    cls=Command,
    epilog="""\b
Examples:
  gpudoctor kernels /usr/lib/python3/dist-packages/torch/lib
  gpudoctor kernels flash_attn-2.7.4-cp312-linux_x86_64.whl --gpu 9.0,10.0
  gpudoctor kernels app.tar --node node.xml --format json
""",
)
@click.argument("paths", nargs=-1, required=True)
@click.option(
    "--gpu",
    "gpus",
    multiple=True,
    help="Compute capability to judge, e.g. 9.0 or sm_90 (repeatable, or comma-separated: 8.0,9.0).",
)
@node_option("Judge for the GPUs of a saved gpudoctor JSON report or `nvidia-smi -q -x` XML.")
@format_option("table", "json")
@output_option
@rules_option
def command(
    paths: tuple[str, ...],
    gpus: tuple[str, ...],
    node_file: str | None,
    fmt: str,
    output: str | None,
    rule_dirs: tuple[str, ...],
) -> int:
    """List the cubin and PTX targets in PATHS (directory, wheel, tar, docker save /
    OCI archive, OCI layout or local Docker image) and say, per compute capability,
    native, jit or none."""
    from gpudoctor import exitcodes
    from gpudoctor.errors import UsageError
    from gpudoctor.kernels.compat import DEFAULT_CCS, cc_from_text, fill_per_gpu
    from gpudoctor.kernels.report import build, render_table
    from gpudoctor.kernels.sources import scan_targets

    try:
        ccs_given = tuple(cc_from_text(cc) for value in gpus for cc in value.split(",") if cc.strip())
    except ValueError as exc:
        raise UsageError(f"--gpu: {exc}") from exc
    node = None
    if node_file:
        from gpudoctor.nodeinput import load_node

        node = load_node(node_file)
    scan = scan_targets(list(paths))
    findings, node_ccs = _findings(scan, node, ccs_given, rule_dirs) if (node or ccs_given) else (None, [])
    ccs = _unique([*ccs_given, *node_ccs]) or list(DEFAULT_CCS)
    driver_cuda = node.driver.cuda_version if node else None
    for binary in scan.binaries:
        fill_per_gpu(binary, ccs, driver_cuda)
    report = build(scan, ccs, findings)
    write_text(
        json.dumps(report, indent=2) + "\n" if fmt == "json" else render_table(report),
        output,
        report["verdict"],
    )
    return exitcodes.for_verdict(report["verdict"])


def _findings(
    scan: KernelScanFacts, node: NodeFacts | None, gpus: tuple[str, ...], rule_dirs: tuple[str, ...]
) -> tuple[list[Finding], list[str]]:
    """The kernel rules' findings, and the node's compute capabilities (facts or
    derived from the GPU table, e.g. for an nvidia-smi XML that lacks them)."""
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
