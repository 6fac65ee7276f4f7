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
    registry_options,
    registry_options_from,
    rule_dirs_from,
    rules_option,
    write_text,
)

if TYPE_CHECKING:
    from gpudoctor.facts import KernelScanFacts, NodeFacts
    from gpudoctor.findings import Finding
    from gpudoctor.images import RegistryOptions


@click.command(
    "kernels",
    cls=Command,
    epilog="""\b
Examples:
  gpudoctor kernels /usr/lib/python3/dist-packages/torch/lib
  gpudoctor kernels flash_attn-2.7.4-cp312-linux_x86_64.whl --gpu 9.0,10.0
  gpudoctor kernels app.tar --node node.xml --format json
  gpudoctor kernels registry.example.com/app:1.4 --attach
  gpudoctor kernels app.tar --attach registry.example.com/app:1.4
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
    "attach_to",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[REFERENCE]",
    help="PATHS is one image (registry reference, local Docker image, or docker save / OCI archive): "
    "scan it and push the scan to the registry as a kernels attestation of the image REFERENCE names "
    "(default: PATHS itself), read by `preflight` without --deep. The local image must have the "
    "registry image's layers.",
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
    "--source",
    type=click.Choice(("registry", "docker", "archive")),
    default=None,
    help="With --attach: where to read the image (default: an existing path is an archive; else the "
    "local engine if it has the image; else the registry, downloading every layer).",
)
@registry_options
@format_option("table", "json")
@output_option
@rules_option
def command(
    paths: tuple[str, ...],
    gpus: tuple[str, ...],
    node_file: str | None,
    attach_to: str | None,
    platform_text: str,
    source: str | None,
    insecure_registries: tuple[str, ...],
    ca_bundle: str | None,
    proxy: str | None,
    registry_mirrors: tuple[str, ...],
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
    if gpus and not ccs_given:
        # `--gpu ""` (an unset shell variable) would silently mean "no GPU asked" and an ok
        # verdict with no rule run.
        raise UsageError("--gpu: no compute capability given (expected e.g. 9.0 or sm_90)")
    node = None
    if node_file:
        from gpudoctor.nodeinput import load_node

        node = load_node(node_file)
    if attach_to is not None:
        if len(paths) != 1:
            raise UsageError("--attach takes exactly one image")
        options = registry_options_from(insecure_registries, ca_bundle, proxy, registry_mirrors, "/")
        scan = _scan_and_attach(paths[0], attach_to or paths[0], platform_text, source, options)
    else:
        scan = scan_targets(list(paths))
    findings, node_ccs = _findings(scan, node, ccs_given, rule_dirs) if (node or ccs_given) else (None, [])
    ccs = list(dict.fromkeys([*ccs_given, *node_ccs])) or list(DEFAULT_CCS)
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
    image: str, target: str, platform_text: str, source: str | None, options: RegistryOptions
) -> KernelScanFacts:
    """Scan `image` where it is and push the scan as the attestation of the registry image
    `target` (the manifest of the chosen platform). A local image (engine or archive) is
    scanned only if its layers are the registry image's: never attested to a wrong subject."""
    import sys

    from gpudoctor.errors import BadInput, InputMissing, UsageError
    from gpudoctor.images import Fetcher, looks_like_path
    from gpudoctor.images.platform import parse_platform
    from gpudoctor.images.reference import parse_reference
    from gpudoctor.kernels.artifacts import attach
    from gpudoctor.kernels.deep import scan_image

    if target == image and (Path(image).exists() or looks_like_path(image) or source == "archive"):
        raise UsageError(
            f"--attach: {image} is an archive; name the registry image: --attach REGISTRY/REPO:TAG"
        )
    wanted = parse_platform(platform_text)
    ref = parse_reference(target)
    with Fetcher(options) as fetcher:
        local = fetcher.fetch(image, source=source, platform=wanted)
        remote = local
        if local.source != "registry" or image != target:
            remote = fetcher.fetch(target, source="registry", platform=wanted)
        for facts in {id(local): local, id(remote): remote}.values():
            if facts.platform_not_offered is not None:
                raise InputMissing(f"--attach: {facts.reference}: {facts.unknown['platform']}")
        if remote.digest is None:
            raise BadInput(f"--attach: {target}: the registry gave no manifest digest")
        if local.source == "archive" and Path(image).is_file() and len(local.platforms) > 1:
            raise UsageError(f"--attach: {image} holds {len(local.platforms)} platforms; extract it "
                             "(tar -xf) and give the OCI layout directory, which is read per platform")  # fmt: skip
        if local.diff_ids != remote.diff_ids:
            raise BadInput(
                f"--attach: {image} ({local.source}) is not the image {target} has for {wanted}: their layers "
                f"differ ({len(local.diff_ids)} local, {len(remote.diff_ids)} in the registry); push it first"
            )
        scan = scan_image(
            image,
            local,
            pull_layers=True,
            registries=fetcher.registries,
            announce=lambda text: print(f"gpudoctor: {text}", file=sys.stderr),
        )
        assert scan is not None
        client = fetcher.registries.client(ref.registry)
        digest, how = attach(client, ref.repository, remote.digest, scan)
    print(f"gpudoctor: attached kernels attestation {digest} to {remote.digest} ({how})", file=sys.stderr)
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
