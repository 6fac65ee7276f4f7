"""`gpudoctor preflight IMAGE`: decide before the pull whether an image will run on a node."""

from __future__ import annotations

import argparse
import os
import sys

from gpudoctor.commands.common import add_format, add_output, add_rules, emit, file_path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.usage = "%(prog)s [OPTIONS] IMAGE"
    parser.description = """Read IMAGE's manifest and config only (never a layer) and judge it against a node.

IMAGE is a reference (ubuntu, nvcr.io/nvidia/pytorch:25.01-py3, host:5000/app@sha256:...)
or a path to a `docker save` tarball or an OCI layout (directory or tar).
Exit code is the verdict: 0 ok, 1 warn, 2 fail, 3 unknown; 65 bad image data,
66 missing input, 69 registry or engine unavailable.
"""
    parser.add_argument("image", metavar="IMAGE", help=argparse.SUPPRESS)
    parser.add_argument(
        "--node",
        dest="node_file",
        type=file_path,
        default=None,
        metavar="FILE",
        help="Judge against a saved gpudoctor JSON report or `nvidia-smi -q -x` XML instead of this node.",
    )
    parser.add_argument(
        "--platform",
        dest="platform_text",
        default=None,
        metavar="OS/ARCH[/VARIANT]",
        help="Platform to pick from a multi-platform image (default: the node's CPU, else this machine's).",
    )
    parser.add_argument(
        "--source",
        choices=("registry", "docker", "archive"),
        default=None,
        metavar="[registry|docker|archive]",
        help="Where to read the image metadata (default: an existing path is an archive; "
        "else the local engine if it has the image; else the registry).",
    )
    parser.add_argument(
        "--insecure-registry",
        dest="insecure",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="Use plain HTTP for this registry (repeatable). Every other registry uses verified TLS.",
    )
    parser.add_argument(
        "--ca-bundle",
        type=file_path,
        default=None,
        metavar="FILE",
        help="PEM file of CA certificates to trust for registry TLS.",
    )
    parser.add_argument(
        "--docker-host", default=None, metavar="URL", help="Docker engine to ask (default: $DOCKER_HOST)."
    )
    # --- kernels scan (issue #5, owned by the kernels module) ---
    parser.add_argument(
        "--deep",
        action="store_true",
        help="Also scan the image's layers for CUDA kernels (local image or archive; streamed, nothing extracted).",
    )
    parser.add_argument(
        "--pull-layers",
        action="store_true",
        help="With --deep on a remote image: DOWNLOAD every layer of the chosen platform to scan it.",
    )
    # --- end kernels scan ---
    add_format(parser, "table", "json", "oneline")
    add_output(parser)
    add_rules(parser)


def run(args: argparse.Namespace) -> int:
    from gpudoctor.commands.ruledirs import rule_dirs_from
    from gpudoctor.derive.platform import OCI_TO_CPU, node_architecture
    from gpudoctor.images import fetch_image
    from gpudoctor.images.platform import parse_platform
    from gpudoctor.pipeline import diagnose

    insecure = tuple(args.insecure)
    wanted = parse_platform(args.platform_text) if args.platform_text else None
    if args.node_file is not None:
        from gpudoctor.nodeinput import load_node

        node = load_node(args.node_file)
    else:
        from gpudoctor.probes.collect import collect_node

        node = collect_node()
    if wanted is None:
        arch, _ = node_architecture(node.host.cpu_arch, [(g.name, g.pci_device_id) for g in node.gpus])
        wanted = parse_platform(f"linux/{arch}") if arch else None
    elif node.host.cpu_arch is None and wanted.architecture in OCI_TO_CPU:
        # A saved nvidia-smi XML has no CPU architecture: --platform is the
        # user's statement of it, and the platform rules should use it.
        node.host.cpu_arch = OCI_TO_CPU[wanted.architecture]
        node.host.unknown.pop("cpu_arch", None)
    facts = fetch_image(
        args.image,
        source=args.source,
        platform=wanted,
        insecure_registries=insecure,
        ca_bundle=_existing(args.ca_bundle),
        docker_host=args.docker_host,
    )
    if args.deep or args.pull_layers:
        # Fill facts.kernels (gpudoctor.kernels.deep); a remote image needs --pull-layers.
        from gpudoctor.kernels.deep import scan_image

        facts.kernels = scan_image(
            args.image,
            facts,
            pull_layers=args.pull_layers,
            docker_host=args.docker_host,
            insecure_registries=insecure,
            ca_bundle=args.ca_bundle,
            announce=lambda text: print(f"gpudoctor: {text}", file=sys.stderr),
        )
    report = diagnose(node, facts, rule_dirs=rule_dirs_from(args.rule_dirs))
    return emit(report, args.fmt, args.output)


def _existing(path: str | None) -> str | None:
    if path is None:
        return None
    from gpudoctor.errors import InputMissing

    if not os.path.isfile(path):
        raise InputMissing(f"{path}: no such file (--ca-bundle)")
    return path
