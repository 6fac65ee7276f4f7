"""`gpudoctor kernels PATH...`: CUDA kernels in binaries, and per GPU native / jit / none."""

from __future__ import annotations

import json
from pathlib import Path
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
  gpudoctor kernels registry.example.com/app:1.4 --attach
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
@click.option(
    "--attach",
    is_flag=True,
    help="PATHS is one registry image: download its layers, scan them, and push the scan to the "
    "registry as a kernels attestation of the image (read by `preflight` without --deep).",
)
@click.option(
    "--platform",
    "platform_text",
    default="linux/amd64",
    show_default=True,
    metavar="OS/ARCH[/VARIANT]",
    help="With --attach: the platform of a multi-platform image to scan and attest.",
)
@click.option(
    "--insecure-registry",
    "insecure",
    multiple=True,
    metavar="HOST:PORT",
    help="With --attach: plain HTTP for this registry (repeatable).",
)
@click.option(
    "--ca-bundle", default=None, metavar="FILE", help="With --attach: CA certificates for registry TLS."
)
@format_option("table", "json")
@output_option
@rules_option
def command(
    paths: tuple[str, ...],
    gpus: tuple[str, ...],
    node_file: str | None,
    attach: bool,
    platform_text: str,
    insecure: tuple[str, ...],
    ca_bundle: str | None,
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
    if attach:
        if len(paths) != 1:
            raise UsageError("--attach takes exactly one registry image")
        scan = _scan_and_attach(paths[0], platform_text, insecure, ca_bundle)
    else:
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


def _scan_and_attach(
    image: str, platform_text: str, insecure: tuple[str, ...], ca_bundle: str | None
) -> KernelScanFacts:
    """Scan a registry image's layers (the chosen platform's) and push the scan as its attestation."""
    import sys

    from gpudoctor.errors import UsageError
    from gpudoctor.images import RegistryOptions, fetch_image
    from gpudoctor.images.platform import parse_platform
    from gpudoctor.images.reference import parse_reference
    from gpudoctor.kernels.artifacts import attach
    from gpudoctor.kernels.deep import scan_image

    if Path(image).exists():
        raise UsageError(f"--attach: {image} is a path; give the image's registry reference")
    options = RegistryOptions(insecure_registries=insecure, ca_bundle=ca_bundle)
    facts = fetch_image(image, source="registry", platform=parse_platform(platform_text), options=options)
    scan = scan_image(
        image,
        facts,
        pull_layers=True,
        options=options,
        announce=lambda text: print(f"gpudoctor: {text}", file=sys.stderr),
    )
    assert scan is not None and facts.digest is not None
    digest, how = attach(parse_reference(image), facts.digest, scan, insecure, ca_bundle)
    print(f"gpudoctor: attached kernels attestation {digest} to {facts.digest} ({how})", file=sys.stderr)
    return scan


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
