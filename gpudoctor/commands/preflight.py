"""`gpudoctor preflight IMAGE`: decide before the pull whether an image will run on a node."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from gpudoctor.commands.common import (
    FILE,
    Command,
    collect_live,
    emit,
    format_option,
    node_option,
    output_option,
    root_options,
    rule_dirs_from,
    rules_option,
    timed,
)
from gpudoctor.errors import InputMissing


@click.command(
    "preflight",
    cls=Command,
    epilog="""\b
Examples:
  gpudoctor preflight nvcr.io/nvidia/pytorch:25.01-py3
  gpudoctor preflight vllm/vllm-openai:latest --node node.xml --format json
  gpudoctor preflight ./app.tar --platform linux/arm64 --node report.json
  gpudoctor preflight localhost:5000/app:1 --deep --pull-layers
""",
)
@click.argument("image")
@node_option("Judge against a saved gpudoctor JSON report or `nvidia-smi -q -x` XML instead of this node.")
@root_options
@click.option(
    "--platform",
    "platform_text",
    default=None,
    metavar="OS/ARCH[/VARIANT]",
    help="Platform to pick from a multi-platform image (default: the node's CPU, else this machine's).",
)
@click.option(
    "--source",
    type=click.Choice(("registry", "docker", "archive")),
    default=None,
    help="Where to read the image metadata (default: an existing path is an archive; "
    "else the local engine if it has the image; else the registry).",
)
@click.option(
    "--insecure-registry",
    "insecure",
    multiple=True,
    metavar="HOST:PORT",
    help="Use plain HTTP for this registry (repeatable). Every other registry uses verified TLS.",
)
@click.option(
    "--ca-bundle", type=FILE, default=None, help="PEM file of CA certificates to trust for registry TLS."
)
@click.option(
    "--docker-host", default=None, metavar="URL", help="Docker engine to ask (default: $DOCKER_HOST)."
)
# --- kernels scan (issue #5, owned by the kernels module) ---
@click.option(
    "--deep",
    is_flag=True,
    help="Also scan the image's layers for CUDA kernels (local image or archive; streamed, nothing extracted).",
)
@click.option(
    "--pull-layers",
    is_flag=True,
    help="With --deep on a remote image: DOWNLOAD every layer of the chosen platform to scan it.",
)
# --- end kernels scan ---
@format_option("table", "json", "oneline", "html")
@output_option
@rules_option
def command(
    image: str,
    node_file: str | None,
    host_root: str | None,
    sysfs_root: str | None,
    platform_text: str | None,
    source: str | None,
    insecure: tuple[str, ...],
    ca_bundle: str | None,
    docker_host: str | None,
    deep: bool,
    pull_layers: bool,
    fmt: str,
    output: str | None,
    rule_dirs: tuple[str, ...],
) -> int:
    """Read IMAGE's manifest and config only (never a layer) and judge it against a node.

    IMAGE is a reference (ubuntu, nvcr.io/nvidia/pytorch:25.01-py3, host:5000/app@sha256:...)
    or a path to a `docker save` tarball or an OCI layout (directory or tar).

    Exit code is the verdict: 0 ok, 1 warn, 2 fail, 3 unknown; 65 bad image data,
    66 missing input, 69 registry or engine unavailable.
    """
    from gpudoctor.derive.platform import OCI_TO_CPU, node_architecture
    from gpudoctor.images import fetch_image
    from gpudoctor.images.platform import parse_platform
    from gpudoctor.pipeline import diagnose

    wanted = parse_platform(platform_text) if platform_text else None
    if node_file is not None and host_root is None and sysfs_root is None:
        from gpudoctor.nodeinput import load_node

        node = load_node(node_file)
    else:
        with timed("probes"):
            node = collect_live(host_root, sysfs_root, "--node" if node_file is not None else None)
    if wanted is None:
        arch, _ = node_architecture(node.host.cpu_arch, [(g.name, g.pci_device_id) for g in node.gpus])
        wanted = parse_platform(f"linux/{arch}") if arch else None
    elif node.host.cpu_arch is None and wanted.architecture in OCI_TO_CPU:
        # A saved nvidia-smi XML has no CPU architecture: --platform is the
        # user's statement of it, and the platform rules should use it.
        node.host.cpu_arch = OCI_TO_CPU[wanted.architecture]
        node.host.unknown.pop("cpu_arch", None)
    if ca_bundle is not None and not Path(ca_bundle).is_file():
        raise InputMissing(f"{ca_bundle}: no such file (--ca-bundle)")
    with timed("image"):
        facts = fetch_image(
            image,
            source=source,
            platform=wanted,
            insecure_registries=insecure,
            ca_bundle=ca_bundle,
            docker_host=docker_host,
        )
    if deep or pull_layers:
        # Fill facts.kernels (gpudoctor.kernels.deep); a remote image needs --pull-layers.
        from gpudoctor.kernels.deep import scan_image

        facts.kernels = scan_image(
            image,
            facts,
            pull_layers=pull_layers,
            docker_host=docker_host,
            insecure_registries=insecure,
            ca_bundle=ca_bundle,
            announce=lambda text: print(f"gpudoctor: {text}", file=sys.stderr),
        )
    with timed("rules"):
        report = diagnose(node, facts, rule_dirs=rule_dirs_from(rule_dirs))
    return emit(report, fmt, output)
