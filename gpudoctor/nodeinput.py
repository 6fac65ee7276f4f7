"""Load a node from a file: a saved gpudoctor JSON report or `nvidia-smi -q -x` XML.

This is how a node where gpudoctor is not installed gets diagnosed: save the
XML there, scan it here. Errors are one line: InputMissing (66) when the file
cannot be read, BadInput (65) when it is neither format.
"""

from __future__ import annotations

import json
import os
from typing import Any

from gpudoctor.errors import BadInput
from gpudoctor.facts import FactsFormatError, NodeFacts
from gpudoctor.inputs import NODE_REPORT_MAX_BYTES, lone_surrogate, read_capped


def read_input(path: str | os.PathLike[str]) -> bytes:
    return read_capped(path, NODE_REPORT_MAX_BYTES, "a node report")


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
    except RecursionError:
        raise BadInput(f"{origin}: malformed JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer over 4300 digits
        raise BadInput(f"{origin}: malformed JSON: {exc}") from None
    if not isinstance(document, dict):
        raise BadInput(f"{origin}: expected a JSON object (a gpudoctor report)")
    if lone_surrogate(data, document):
        raise BadInput(f"{origin}: malformed JSON: a string holds a lone UTF-16 surrogate (\\ud800-\\udfff)")
    # A full report carries the node under "node"; a bare node object is accepted too.
    node_data = document.get("node", document)
    if not isinstance(node_data, dict) or "driver" not in node_data:
        raise BadInput(f"{origin}: not a gpudoctor report (no node.driver object)")
    try:
        node = NodeFacts.from_dict(node_data)
    except FactsFormatError as exc:
        raise BadInput(f"{origin}: {exc}") from None
    return node
