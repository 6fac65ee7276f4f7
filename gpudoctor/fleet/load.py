"""Read node reports: gpudoctor scan JSON (fast path) and saved nvidia-smi XML.

A scan report already carries the node's findings and verdict, so loading it
costs one json.loads and no rule evaluation; only nvidia-smi XML is diagnosed
here. Every file becomes either a NodeRecord or an InvalidReport with a
one-line reason: nothing is dropped silently.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from gpudoctor.errors import one_line
from gpudoctor.exitcodes import SEVERITY_ORDER
from gpudoctor.fleet.classes import class_facts, evaluation_signature
from gpudoctor.inputs import NODE_REPORT_MAX_BYTES, UnusableInput, lone_surrogate, read_capped

# In directories, these are the report files; a file named on the command line
# is read whatever its name. Hidden files are skipped: write_atomic's temp files
# are hidden and are half-written by definition.
REPORT_SUFFIXES = (".json", ".xml")
SUPPORTED_MAJOR = "1"
_VERDICTS = frozenset(SEVERITY_ORDER)


@dataclass(slots=True)
class NodeRecord:
    path: str
    hostname: str
    verdict: str
    findings: tuple[tuple[str, str], ...]  # (rule_id, severity)
    class_facts: dict[str, str]
    evaluation_signature: str
    named: bool = False  # the hostname is the report's own (not the file name standing in)


@dataclass(slots=True)
class InvalidReport:
    path: str
    error: str


class ReportError(ValueError):
    """Why a file is not a usable node report (one line)."""


def iter_report_paths(paths: Iterable[str]) -> Iterator[str]:
    """Files as named, directories walked recursively in a stable order."""
    seen: set[tuple[int, int]] = set()
    for path in paths:
        if os.path.isdir(path):
            yield from _walk(path, seen, os.path.realpath(path))
        else:
            yield path


class _OutsideTree(str):
    """A walked path whose symlink leads out of the directory given: not read (read_record)."""

    __slots__ = ()


def _inside(path: str, root: str) -> bool:
    real = os.path.realpath(path)
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def _walk(directory: str, seen: set[tuple[int, int]], root: str) -> Iterator[str]:
    try:
        info = os.stat(directory)
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError:
        # An unreadable directory is reported by read_record as an invalid input.
        yield directory
        return
    if (info.st_dev, info.st_ino) in seen:
        return  # a symlink back into a directory already walked
    seen.add((info.st_dev, info.st_ino))
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_symlink() and not _inside(entry.path, root):
            if entry.name.lower().endswith(REPORT_SUFFIXES):
                yield _OutsideTree(entry.path)
            continue
        try:
            is_dir = entry.is_dir(follow_symlinks=True)
        except OSError:  # a symlink loop: read_record reports it
            is_dir = False
        if is_dir:
            yield from _walk(entry.path, seen, root)
        elif entry.name.lower().endswith(REPORT_SUFFIXES):
            yield entry.path


def read_record(
    path: str, titles: dict[str, str], rule_dirs: tuple[str, ...] = ()
) -> NodeRecord | InvalidReport:
    """One file -> its record; `titles` collects rule_id -> title across the fleet.

    `rule_dirs` (site rules) apply to nvidia-smi XML, which is diagnosed here; a scan
    report keeps the findings its node computed."""
    if isinstance(path, _OutsideTree):
        return InvalidReport(str(path), "a symlink that leads out of the directory given: not read")
    if os.path.isdir(path):
        return InvalidReport(path, _directory_error(path))
    try:
        data = read_capped(path, NODE_REPORT_MAX_BYTES, "a node report")
    except UnusableInput as exc:
        return InvalidReport(path, exc.reason)
    try:
        if _is_xml(data):
            return _xml_record(path, data, titles, rule_dirs)
        return _record(path, _parse_json(data), titles)
    except ReportError as exc:
        return InvalidReport(path, one_line(str(exc)))
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
        # A report whose shape no check above foresaw: this file is invalid, the fleet goes on.
        return InvalidReport(path, one_line(f"not a usable report: {type(exc).__name__}: {exc}"))


def _directory_error(path: str) -> str:
    try:
        os.scandir(path).close()
    except OSError as exc:
        return f"cannot list directory: {exc.strerror or exc}"
    return "cannot read: is a directory"


# XML content digest -> the record's node-independent parts (or the reason it is invalid).
# Diagnosing an XML costs milliseconds; fleets of identical captures (images of one
# machine, replicated test fleets) pay it once. Entries are small: no report is kept.
_XML_RESULTS: dict[
    tuple[bytes, tuple[str, ...]], tuple[str, tuple[tuple[str, str], ...], dict[str, str], str] | str
] = {}


def _xml_record(
    path: str, data: bytes, titles: dict[str, str], rule_dirs: tuple[str, ...]
) -> NodeRecord | InvalidReport:
    digest = (hashlib.blake2b(data, digest_size=16).digest(), rule_dirs)
    cached = _XML_RESULTS.get(digest)
    if cached is None:
        try:
            record = _record(path, _diagnose_xml(path, rule_dirs), titles)
        except ReportError as exc:
            _XML_RESULTS[digest] = str(exc)
            return InvalidReport(path, str(exc))
        _XML_RESULTS[digest] = (
            record.verdict,
            record.findings,
            record.class_facts,
            record.evaluation_signature,
        )
        return record
    if isinstance(cached, str):
        return InvalidReport(path, cached)
    # nvidia-smi XML names no host: the file name stands in for it.
    return NodeRecord(path, Path(path).stem, *cached)


def _is_xml(data: bytes) -> bool:
    # nvidia-smi XML starts with '<?xml' or '<!DOCTYPE'; a gpudoctor report with '{'.
    return data.lstrip()[:1] == b"<"


def _parse_json(data: bytes) -> dict[str, Any]:
    if not data.strip():
        raise ReportError("empty file")
    try:
        # orjson parses a report about 2.5x faster than the json module: at 10,000 reports this
        # is most of the fleet's time. Its errors are re-derived with json's clearer messages.
        report = orjson.loads(data)
    except ValueError:
        report = _checked_loads(data)
    if not isinstance(report, dict):
        raise ReportError(f"not a gpudoctor report: top level is a JSON {type(report).__name__}")
    if lone_surrogate(data, report):
        raise ReportError("invalid JSON: a string holds a lone UTF-16 surrogate (\\ud800-\\udfff)")
    return report


def _checked_loads(data: bytes) -> Any:
    """json.loads with one-line reasons; also accepts what only orjson refuses (huge integers)."""
    try:
        return json.loads(data)
    except UnicodeDecodeError:
        raise ReportError("not a gpudoctor report: not UTF-8 text") from None
    except RecursionError:
        raise ReportError("not a gpudoctor report: JSON nested too deeply") from None
    except json.JSONDecodeError as exc:
        # A string can hold no raw newline, so "Unterminated string" means the data ran out.
        if exc.pos >= len(data.rstrip()) or exc.msg.startswith("Unterminated string"):
            raise ReportError(f"truncated JSON (ends at line {exc.lineno} column {exc.colno})") from None
        raise ReportError(f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except ValueError as exc:  # an integer over 4300 digits
        raise ReportError(f"invalid JSON: {exc}") from None


def _load_xml_node(path: str) -> Any:
    from gpudoctor.errors import GpudoctorError
    from gpudoctor.nodeinput import load_node

    try:
        return load_node(Path(path))
    except GpudoctorError as exc:
        raise ReportError(str(exc).replace(f"{path}: ", "", 1)) from None


def _diagnose_xml(path: str, rule_dirs: tuple[str, ...]) -> dict[str, Any]:
    from gpudoctor.pipeline import diagnose

    return diagnose(_load_xml_node(path), rule_dirs=rule_dirs)


def _record(path: str, report: dict[str, Any], titles: dict[str, str]) -> NodeRecord:
    schema = report.get("schema_version")
    if not isinstance(schema, str):
        raise ReportError("not a gpudoctor report: no schema_version")
    if schema.split(".", 1)[0] != SUPPORTED_MAJOR:
        raise ReportError(f"unsupported report schema_version {schema!r} (this gpudoctor reads 1.x)")
    tool = report.get("tool")
    if isinstance(tool, dict) and tool.get("name") not in (None, "gpudoctor"):
        raise ReportError(f"not a gpudoctor report: written by {tool.get('name')!r}")
    if report.get("image") is not None:
        # Its findings and verdict mix the image in; classes must describe nodes alone.
        raise ReportError(
            "a preflight report (node + image), not a node scan: use gpudoctor scan --format json"
        )
    node = report.get("node")
    if not isinstance(node, dict):
        raise ReportError("not a gpudoctor node report: no node object")
    verdict = report.get("verdict")
    if not isinstance(verdict, str) or verdict not in _VERDICTS:
        raise ReportError(f"bad verdict {one_line(repr(verdict), 80)}")
    raw_findings = report.get("findings")
    if not isinstance(raw_findings, list):
        raise ReportError("bad report: findings is not a list")
    findings = []
    for index, finding in enumerate(raw_findings):
        if not isinstance(finding, dict):
            raise ReportError(f"bad report: findings[{index}] is not an object")
        rule_id, severity = finding.get("rule_id"), finding.get("severity")
        if not isinstance(rule_id, str) or not isinstance(severity, str) or severity not in _VERDICTS:
            raise ReportError(f"bad report: findings[{index}] has no rule_id or a bad severity")
        findings.append((rule_id, severity))
        if rule_id not in titles:
            titles[rule_id] = str(finding.get("title") or "")
    _check_node(node)
    facts = class_facts(node)
    signature = evaluation_signature(node)
    hostname = node["host"].get("hostname") if isinstance(node.get("host"), dict) else None
    return NodeRecord(
        path=path,
        hostname=str(hostname or Path(path).stem),
        verdict=verdict,
        findings=tuple(findings),
        class_facts=facts,
        evaluation_signature=signature,
        named=bool(hostname),
    )


# The node facts the fleet reads, with their JSON types (None always allowed). A full
# NodeFacts.from_dict per report would cost 0.1-0.5 ms a node; this check costs microseconds
# and still rejects a report whose parts the classes or the matrix would misread.
_SECTION_FIELDS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "host": {"hostname": str, "cpu_arch": str},
    "driver": {"present": bool, "version": str, "branch": int, "cuda_version": str, "kernel_module": str},
    "fabric": {"nvswitch_count": int},
    "container_runtime": {"toolkit_version": str, "cdi_specs": list},
}
_GPU_FIELDS: dict[str, type | tuple[type, ...]] = {
    "name": str,
    "brand": str,
    "pci_device_id": str,
    "compute_capability": str,
    "architecture": str,
    "mig_mode": str,
}


def _check_fields(obj: Any, fields: dict[str, type | tuple[type, ...]], where: str) -> None:
    if not isinstance(obj, dict):
        raise ReportError(f"bad report: {where} is not an object")
    for name, kind in fields.items():
        value = obj.get(name)
        if value is not None and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
            raise ReportError(
                f"bad report: {where}.{name} is {type(value).__name__}, not {getattr(kind, '__name__', kind)}"
            )


def _check_node(node: dict[str, Any]) -> None:
    for section, fields in _SECTION_FIELDS.items():
        if section in node:
            _check_fields(node[section], fields, f"node.{section}")
    gpus = node.get("gpus", [])
    if not isinstance(gpus, list):
        raise ReportError("bad report: node.gpus is not a list")
    for index, gpu in enumerate(gpus):
        _check_fields(gpu, _GPU_FIELDS, f"node.gpus[{index}]")
    topology = node.get("topology", {})
    pairs = topology.get("pairs", []) if isinstance(topology, dict) else None
    if not isinstance(pairs, list):
        raise ReportError("bad report: node.topology.pairs is not a list")
    # 28 pairs on an 8-GPU node: checked inline, this loop runs 280,000 times for 10,000 nodes.
    for index, pair in enumerate(pairs):
        if type(pair) is not dict:
            raise ReportError(f"bad report: node.topology.pairs[{index}] is not an object")
        links, ancestor = pair.get("nvlink_count"), pair.get("common_ancestor")
        if (links is not None and type(links) is not int) or (
            ancestor is not None and type(ancestor) is not str
        ):
            raise ReportError(
                f"bad report: node.topology.pairs[{index}] has a malformed nvlink_count or common_ancestor"
            )


def load_node_report(path: str) -> dict[str, Any]:
    """The full node object of a file already accepted by read_record (for the matrix)."""
    with open(path, "rb") as handle:
        data = handle.read()
    if _is_xml(data):
        node: dict[str, Any] = _load_xml_node(path).to_dict()
        return node
    report: dict[str, Any] = _parse_json(data)["node"]
    return report
