"""`gpudoctor fleet PATH... [--image REF ...]`: node classes and the image runnability matrix."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import click

from gpudoctor import exitcodes
from gpudoctor.commands.common import (
    Command,
    format_option,
    output_option,
    registry_host_root_option,
    registry_options,
    registry_options_from,
    rule_dirs_from,
    rules_option,
    timed,
    write_text,
)
from gpudoctor.errors import BadInput, InputMissing, UsageError

# --format NAME -> gpudoctor.report.<module>.render(fleet_document) -> str
FLEET_RENDERERS = {
    "table": "fleet_table",
    "json": "json_render",
    "csv": "fleet_csv",
    "html": "fleet_html",
}


@click.command(
    "fleet",
    cls=Command,
    epilog="""\b
Examples:
  gpudoctor fleet reports/
  gpudoctor fleet reports/ --image nvcr.io/nvidia/pytorch:25.01-py3 --image vllm/vllm-openai:latest
  gpudoctor fleet node-*.xml --format csv -o fleet.csv
  gpudoctor fleet reports/ --image REF --what-if driver=650.12 --what-if 'driver=580.95.05@class~A800'
  gpudoctor fleet reports/ --image REF --plan
""",
)
@click.argument("paths", nargs=-1, required=True)
@click.option(
    "--image",
    "images",
    multiple=True,
    metavar="REF",
    help="Image to evaluate on every node class (repeatable).",
)
@registry_options
@registry_host_root_option
@click.option(
    "--what-if",
    "what_if",
    multiple=True,
    metavar="CHANGE",
    help="Re-evaluate every class with a hypothetical change and show the difference (repeatable): "
    "driver=VERSION, cuda-compat=VERSION, toolkit=VERSION, runtime-mode=MODE; append @class~TEXT to limit it to "
    "classes whose key contains TEXT (e.g. driver=650.12@class~A800).",
)
@click.option(
    "--plan",
    is_flag=True,
    help="With --image: per class where an image does not run cleanly, propose the smallest "
    "change (driver branch, forward compatibility, another --image) that makes it run.",
)
@click.option(
    "--details",
    is_flag=True,
    help="Table: the long form (every class's findings and worst nodes, every non-ok cell's "
    "findings with fix and refs) instead of the compact matrix.",
)
@format_option(*FLEET_RENDERERS)
@output_option
@rules_option
def command(
    paths: tuple[str, ...],
    images: tuple[str, ...],
    insecure_registries: tuple[str, ...],
    ca_bundle: str | None,
    proxy: str | None,
    registry_mirrors: tuple[str, ...],
    host_root: str,
    what_if: tuple[str, ...],
    plan: bool,
    details: bool,
    fmt: str,
    output: str | None,
    rule_dirs: tuple[str, ...],
) -> int:
    """Aggregate node reports (gpudoctor scan --format json, or nvidia-smi -q -x XML) found in
    PATHS into node classes; with --image, say per image and class: ok, warn, fail or unknown.

    Exit code: the worst verdict over classes and matrix (0 ok, 1 warn, 2 fail, 3 unknown);
    unreadable or foreign files are listed and do not change it. An image that cannot be
    fetched is `unknown` in the matrix, with the reason.
    """
    from gpudoctor.fleet.build import build_fleet

    missing = [path for path in paths if not Path(path).exists()]
    if missing:
        raise InputMissing(f"no such file or directory: {missing[0]}")
    if plan and not images:
        raise UsageError("--plan needs at least one --image")
    options = None
    if images:  # the images are fetched concurrently: one token and one connection pool per registry
        options = registry_options_from(insecure_registries, ca_bundle, proxy, registry_mirrors, host_root)
    with timed("fleet"):
        document = build_fleet(paths, images, options, rule_dirs_from(rule_dirs), what_if=what_if, plan=plan)
    if document["nodes_total"] == 0:
        if document["invalid_total"]:
            first = document["invalid_reports"][0]
            raise BadInput(
                f"no valid node report among {document['invalid_total']} file(s); "
                f"first: {first['path']}: {first['error']}"
            )
        raise InputMissing(f"no report files (*.json, *.xml) found in {', '.join(paths)}")
    renderer = importlib.import_module(f"gpudoctor.report.{FLEET_RENDERERS[fmt]}")
    text = (
        renderer.render(document, details=True) if details and fmt == "table" else renderer.render(document)
    )
    write_text(text, output, document["verdict"])
    if not output:
        sys.stdout.flush()  # before the note on stderr, which refers to it
    for image in document.get("images", []):
        if image.get("error"):  # once per image, not once per class
            print(f"gpudoctor: image {image['reference']} not fetched: {image['error']}", file=sys.stderr)
    if document["invalid_total"]:
        print(
            f"gpudoctor: {document['invalid_total']} invalid report file(s) listed in the output",
            file=sys.stderr,
        )
    return exitcodes.for_verdict(document["verdict"])
