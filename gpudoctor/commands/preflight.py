"""`gpudoctor preflight IMAGE...`: decide before the pull whether an image will run on a node."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from gpudoctor import exitcodes
from gpudoctor.commands.common import (
    Command,
    collect_live,
    emit,
    format_option,
    node_option,
    output_option,
    registry_options,
    registry_options_from,
    render,
    root_options,
    rule_dirs_from,
    rules_option,
    timed,
    write_text,
)
from gpudoctor.errors import GpudoctorError

if TYPE_CHECKING:
    from gpudoctor.facts import ImageFacts


@click.command(
    "preflight",
    cls=Command,
    epilog="""\b
Examples:
  gpudoctor preflight nvcr.io/nvidia/pytorch:25.01-py3
  gpudoctor preflight vllm/vllm-openai:latest --node node.xml --format json
  gpudoctor preflight ./app.tar --platform linux/arm64 --node report.json
  gpudoctor preflight localhost:5000/app:1 --deep --pull-layers
  gpudoctor preflight app:1 app:2 app:3 --node report.json --format json
  HTTPS_PROXY=http://proxy:3128 gpudoctor preflight nvcr.io/nvidia/cuda:12.4.1-base-ubuntu22.04
""",
)
@click.argument("images", nargs=-1, required=True, metavar="IMAGE...")
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
@registry_options
@click.option(
    "--docker-host", default=None, metavar="URL", help="Docker engine to ask (default: $DOCKER_HOST)."
)
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
@format_option("table", "json", "oneline", "html")
@output_option
@rules_option
def command(
    images: tuple[str, ...],
    node_file: str | None,
    host_root: str | None,
    sysfs_root: str | None,
    platform_text: str | None,
    source: str | None,
    insecure_registries: tuple[str, ...],
    ca_bundle: str | None,
    proxy: str | None,
    registry_mirrors: tuple[str, ...],
    docker_host: str | None,
    deep: bool,
    pull_layers: bool,
    fmt: str,
    output: str | None,
    rule_dirs: tuple[str, ...],
) -> int:
    """Read IMAGE's manifest and config only (never a layer) and judge it against a node.

    IMAGE is a reference (ubuntu, nvcr.io/nvidia/pytorch:25.01-py3, host:5000/app@sha256:...)
    or a path to a `docker save` tarball or an OCI layout (directory or tar). Several images
    are fetched concurrently and judged one after the other (--format json: a list).

    Exit code is the verdict (the worst of several): 0 ok, 1 warn, 2 fail, 3 unknown;
    65 bad image data, 66 no such image, tag or file, 69 registry or engine unavailable,
    75 rate limited or timed out after retries (try later), 77 credentials refused.
    """
    from gpudoctor.derive.platform import OCI_TO_CPU, node_architecture
    from gpudoctor.images import Fetcher
    from gpudoctor.images.platform import parse_platform
    from gpudoctor.pipeline import diagnose

    options = registry_options_from(insecure_registries, ca_bundle, proxy, registry_mirrors, host_root or "/")
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
    judged: list[ImageFacts] = []
    failures: list[GpudoctorError] = []
    with Fetcher(options, docker_host) as fetcher:
        with timed("image"):
            fetched = fetcher.fetch_many([(image, wanted) for image in images], source=source)
        for image, facts in zip(images, fetched, strict=True):
            if isinstance(facts, GpudoctorError):
                if len(images) == 1:
                    raise facts
                print(f"gpudoctor: {image}: {facts}", file=sys.stderr)
                failures.append(facts)
                continue
            judged.append(facts)
            if deep or pull_layers:
                # Fill facts.kernels (gpudoctor.kernels.deep); a remote image needs --pull-layers.
                from gpudoctor.kernels.deep import scan_image

                facts.kernels = scan_image(
                    image,
                    facts,
                    pull_layers=pull_layers,
                    docker_host=docker_host,
                    registries=fetcher.registries if facts.source == "registry" else None,
                    announce=lambda text: print(f"gpudoctor: {text}", file=sys.stderr),
                )
        if not pull_layers:
            # Kernels attestations pushed by `kernels IMAGE --attach`: kernel facts before any
            # layer, through the same clients (token, connections) as the manifests and configs.
            from gpudoctor.kernels.deep import look_up_attestations

            look_up_attestations(
                [f for f in judged if f.kernels is None and f.source == "registry" and f.digest],
                fetcher.registries,
                warn=lambda text: print(f"gpudoctor: warning: {text}", file=sys.stderr),
            )
    with timed("rules"):
        reports = [diagnose(node, facts, rule_dirs=rule_dirs_from(rule_dirs)) for facts in judged]
    if len(images) == 1:
        return emit(reports[0], fmt, output)
    return _emit_many(reports, failures, fmt, output)


def _emit_many(
    reports: list[dict[str, object]], failures: list[GpudoctorError], fmt: str, output: str | None
) -> int:
    """Several reports: a JSON list, one line each (oneline), or the tables one after the
    other. The exit code is the first fetch failure's, else the worst verdict."""
    texts = [render(report, fmt).rstrip("\n") for report in reports]
    if fmt == "json":
        text = "[\n" + ",\n".join(texts) + "\n]\n"
    else:
        text = ("\n" if fmt == "oneline" else "\n\n").join(texts) + "\n"
    verdict = exitcodes.worst(str(r["verdict"]) for r in reports)
    write_text(text, output, verdict)
    if failures:
        return failures[0].exit_code
    return exitcodes.for_verdict(verdict)
