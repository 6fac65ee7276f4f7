"""Assemble the fleet JSON document (schema: gpudoctor/fleet/schema/fleet.schema.json)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from gpudoctor import __version__
from gpudoctor.exitcodes import SEVERITY_RANK, worst
from gpudoctor.fleet import FLEET_SCHEMA_VERSION
from gpudoctor.fleet.aggregate import NodeClass, aggregate, findings_by_rule
from gpudoctor.fleet.classes import class_key
from gpudoctor.fleet.load import InvalidReport, NodeRecord, iter_report_paths, read_record
from gpudoctor.progress import progress

if TYPE_CHECKING:
    from gpudoctor.fleet.matrix import MatrixEvaluator
    from gpudoctor.images import RegistryOptions


# Below this many files a worker pool costs more than it saves.
PARALLEL_FROM = 2000
# Files read between progress-bar updates (a terminal only; see gpudoctor/progress.py).
PROGRESS_STEP = 256


def _read_chunk(
    paths: list[str], rule_dirs: tuple[str, ...] = ()
) -> tuple[list[NodeRecord | InvalidReport], dict[str, str]]:
    titles: dict[str, str] = {}
    return [read_record(path, titles, rule_dirs) for path in paths], titles


def _workers(files: int) -> int:
    if files < PARALLEL_FROM or not hasattr(os, "sched_getaffinity") or sys.platform != "linux":
        return 1
    return max(1, min(len(os.sched_getaffinity(0)), 8))


def load_fleet(
    paths: Sequence[str], rule_dirs: Sequence[str] = ()
) -> tuple[list[NodeRecord], list[InvalidReport], dict[str, str]]:
    """Every file -> a record or an invalid entry, in walk order; parsed on all CPUs for big fleets."""
    files = list(iter_report_paths(paths))
    site_rules = tuple(rule_dirs)
    workers = _workers(len(files))
    chunks = []
    with progress("reading node reports", len(files)) as bar:
        if workers == 1:
            for start in range(0, len(files), PROGRESS_STEP):
                chunks.append(_read_chunk(files[start : start + PROGRESS_STEP], site_rules))
                bar.advance(len(chunks[-1][0]))
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # Contiguous chunks keep the output in walk order; several per worker even out slow disks.
            size = -(-len(files) // (workers * 4))
            parts = [files[i : i + size] for i in range(0, len(files), size)]
            # fork: the workers inherit the imported modules instead of importing them again.
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
                for chunk in pool.map(_read_chunk, parts, [site_rules] * len(parts)):
                    chunks.append(chunk)
                    bar.advance(len(chunk[0]))
    records: list[NodeRecord] = []
    invalid: list[InvalidReport] = []
    titles: dict[str, str] = {}
    for results, chunk_titles in chunks:
        for key, title in chunk_titles.items():
            titles.setdefault(key, title)
        for result in results:
            if isinstance(result, NodeRecord):
                records.append(result)
            else:
                invalid.append(result)
    return _one_per_host(records, invalid), invalid, titles


def _one_per_host(records: list[NodeRecord], invalid: list[InvalidReport]) -> list[NodeRecord]:
    """A host reported by several files is counted once (its first in walk order); each
    other file becomes an invalid entry saying so."""
    first: dict[str, str] = {}
    kept = []
    for record in records:
        if record.named and record.hostname in first:
            where = first[record.hostname]
            invalid.append(
                InvalidReport(record.path, f"hostname {record.hostname!r} already reported by {where}")
            )
            continue
        if record.named:
            first[record.hostname] = record.path
        kept.append(record)
    return kept


def _class_row(node_class: NodeClass, titles: dict[str, str]) -> dict[str, Any]:
    return {
        "key": node_class.key,
        **node_class.facts,
        "nodes": node_class.nodes,
        "verdict": node_class.verdict,
        "verdicts": dict(node_class.verdicts),
        "evaluation_groups": len(node_class.groups),
        "findings": findings_by_rule(node_class.findings, titles),
        "worst_nodes": [
            {
                "hostname": record.hostname,
                "path": record.path,
                "verdict": record.verdict,
                "rule_ids": sorted({rule_id for rule_id, _ in record.findings}),
            }
            for record in node_class.worst_nodes
        ],
    }


def build_fleet(
    paths: Sequence[str],
    images: Sequence[str] = (),
    registry_options: RegistryOptions | None = None,
    rule_dirs: Sequence[str] = (),
    what_if: Sequence[str] = (),
    plan: bool = False,
) -> dict[str, Any]:
    """The fleet document; `what_if`: change texts (see fleet/whatif.py), `plan`: per image and
    class the smallest change that makes the image run (see fleet/plan.py)."""
    changes = _parse_changes(what_if)
    records, invalid, titles = load_fleet(paths, rule_dirs)
    evaluator = None
    if images or changes:
        from gpudoctor.fleet.matrix import MatrixEvaluator

        evaluator = MatrixEvaluator(rule_dirs)
    classes = _classes(records, invalid, evaluator)
    del records  # the classes keep what the output needs; free the rest before the matrix
    document: dict[str, Any] = {
        "schema_version": FLEET_SCHEMA_VERSION,
        "tool": {"name": "gpudoctor", "version": __version__},
        "nodes_total": sum(c.nodes for c in classes),
        "invalid_total": len(invalid),
        "invalid_reports": [{"path": item.path, "error": item.error} for item in invalid],
        "verdict": worst(c.verdict for c in classes) if classes else "unknown",
        "classes": [_class_row(c, titles) for c in classes],
    }
    fleet_image_list: list[Any] = []
    if evaluator is not None:
        from gpudoctor.fleet.matrix import fleet_images, prefetch

        fleet_image_list = fleet_images(images, registry_options)
        cpu_archs = [json.loads(signature)["cpu_arch"] for c in classes for signature in c.groups]
        prefetch(fleet_image_list, cpu_archs, registry_options)
    if images:
        document["matrix"] = [evaluator.row(image, c) for image in fleet_image_list for c in classes]
        document["images"] = [image.summary() for image in fleet_image_list]
        for row in document["matrix"]:
            row["findings"].sort(key=lambda f: (-SEVERITY_RANK[f["severity"]], f["rule_id"]))
        if classes:
            # Exit code answers "can these images run on this fleet" too.
            document["verdict"] = worst(
                [document["verdict"], *(row["verdict"] for row in document["matrix"])]
            )
    if changes and evaluator is not None:
        from gpudoctor.fleet.whatif import what_if as evaluate_what_if

        document["what_if"] = evaluate_what_if(classes, fleet_image_list, changes, evaluator)
    if plan and evaluator is not None:
        from gpudoctor.fleet.plan import plan as make_plan

        document["plan"] = make_plan(classes, fleet_image_list, evaluator)
    return document


def _classes(
    records: list[NodeRecord], invalid: list[InvalidReport], evaluator: MatrixEvaluator | None
) -> list[NodeClass]:
    """The node classes. With an evaluator (matrix, what-if), whose rules read all of a group's
    representative, each representative is read in full first: a report whose other facts are
    malformed becomes an invalid entry, like one malformed at loading, and the next node of
    its group stands in (its group checked whole, so this runs at most twice)."""
    from gpudoctor.fleet.load import ReportError

    while True:
        classes = aggregate(records)
        if evaluator is None:
            return classes
        broken = set()
        for node_class in classes:
            for _count, representative, _findings in node_class.groups.values():
                try:
                    evaluator.node(representative)
                except ReportError:
                    broken.add(node_class.key)
        if not broken:
            return classes
        kept = []
        for record in records:
            try:
                if class_key(record.class_facts) in broken:
                    evaluator.node(record.path)
                kept.append(record)
            except ReportError as exc:
                invalid.append(InvalidReport(record.path, str(exc)))
        records = kept


def _parse_changes(texts: Sequence[str]) -> list[Any]:
    if not texts:
        return []
    from gpudoctor.fleet.whatif import parse_change

    return [parse_change(text) for text in texts]
