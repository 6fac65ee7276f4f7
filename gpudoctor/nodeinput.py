"""Load a node from a file: a saved gpudoctor JSON report or `nvidia-smi -q -x` XML.

This is how a node where gpudoctor is not installed gets diagnosed: save the
XML there, scan it here. Errors are one line: InputMissing (66) when the file
cannot be read, BadInput (65) when it is neither format.
"""

from __future__ import annotations

import json
import os
from typing import Any

from gpudoctor.errors import BadInput, InputMissing
from gpudoctor.facts import FactsFormatError, NodeFacts

# A real nvidia-smi XML of a 16-GPU node is well under 2 MiB; the cap keeps a
# wrong file (a core dump, a tarball) from being read into memory whole.
MAX_INPUT_BYTES = 64 * 1024 * 1024


def read_input(path: str | os.PathLike[str]) -> bytes:
    target = os.fspath(path)
    try:
        if os.path.isdir(target):
            raise InputMissing(f"{target}: is a directory, expected a file")
        with open(target, "rb") as handle:
            data = handle.read(MAX_INPUT_BYTES + 1)
    except FileNotFoundError:
        raise InputMissing(f"{target}: no such file") from None
    except OSError as exc:
        raise InputMissing(f"{target}: cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_INPUT_BYTES:
        raise BadInput(f"{target}: larger than {MAX_INPUT_BYTES // (1024 * 1024)} MiB, not a node report")
    return data


def load_node(path: str | os.PathLike[str]) -> NodeFacts:
    data = read_input(path)
    head = data.lstrip()[:1]
    if head in (b"{", b"["):
        return node_from_report(data, str(path))
    if head == b"<":
        from gpudoctor.probes.nvsmi_xml import parse_nvidia_smi_xml

        return parse_nvidia_smi_xml(data, str(path))
    raise BadInput(f"{path}: neither a gpudoctor JSON report nor nvidia-smi -q -x XML")


def node_from_report(data: bytes, origin: str) -> NodeFacts:
    try:
        document: Any = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput(f"{origin}: malformed JSON: {exc}") from None
    if not isinstance(document, dict):
        raise BadInput(f"{origin}: expected a JSON object (a gpudoctor report)")
    # A full report carries the node under "node"; a bare node object is accepted too.
    node_data = document.get("node", document)
    if not isinstance(node_data, dict) or "driver" not in node_data:
        raise BadInput(f"{origin}: not a gpudoctor report (no node.driver object)")
    try:
        node = NodeFacts.from_dict(node_data)
    except FactsFormatError as exc:
        raise BadInput(f"{origin}: {exc}") from None
    return node
