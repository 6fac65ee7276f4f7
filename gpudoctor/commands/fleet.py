"""`gpudoctor fleet PATH... [--image REF ...]`: node classes and the image runnability matrix."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from gpudoctor import exitcodes
from gpudoctor.commands.common import add_format, add_output, add_rules
from gpudoctor.errors import BadInput, InputMissing

# --format NAME -> gpudoctor.report.<module>.render(fleet_document) -> str
FLEET_RENDERERS = {"table": "fleet_table", "json": "fleet_json", "csv": "fleet_csv"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.usage = "%(prog)s [OPTIONS] PATHS..."
    parser.description = """Aggregate node reports (gpudoctor scan --format json, or nvidia-smi -q -x XML) found in
PATHS into node classes; with --image, say per image and class: ok, warn, fail or unknown.

Exit code: the worst verdict over classes and matrix (0 ok, 1 warn, 2 fail, 3 unknown);
unreadable or foreign files are listed and do not change it.
"""
    parser.add_argument("paths", nargs="+", metavar="PATHS", help=argparse.SUPPRESS)
    parser.add_argument(
        "--image",
        dest="images",
        action="append",
        default=[],
        metavar="REF",
        help="Image to evaluate on every node class (repeatable).",
    )
    parser.add_argument(
        "--insecure-registry",
        dest="insecure_registries",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="Registry to reach over plain HTTP (repeatable).",
    )
    add_format(parser, *FLEET_RENDERERS)
    add_output(parser)
    add_rules(parser)


def run(args: argparse.Namespace) -> int:
    from gpudoctor.commands.ruledirs import rule_dirs_from
    from gpudoctor.fleet.build import build_fleet

    paths = args.paths
    missing = [path for path in paths if not os.path.exists(path)]
    if missing:
        raise InputMissing(f"no such file or directory: {missing[0]}")
    document = build_fleet(paths, args.images, args.insecure_registries, rule_dirs_from(args.rule_dirs))
    if document["nodes_total"] == 0:
        if document["invalid_total"]:
            first = document["invalid_reports"][0]
            raise BadInput(
                f"no valid node report among {document['invalid_total']} file(s); "
                f"first: {first['path']}: {first['error']}"
            )
        raise InputMissing(f"no report files (*.json, *.xml) found in {', '.join(paths)}")
    renderer = importlib.import_module(f"gpudoctor.report.{FLEET_RENDERERS[args.fmt]}")
    text: str = renderer.render(document)
    if args.output:
        from gpudoctor.fileio import write_atomic

        write_atomic(args.output, text)
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        sys.stdout.flush()  # before the note on stderr, which refers to it
    if document["invalid_total"]:
        print(
            f"gpudoctor: {document['invalid_total']} invalid report file(s) listed in the output",
            file=sys.stderr,
        )
    return exitcodes.for_verdict(document["verdict"])
