"""Build node/image facts and rule contexts for rule tests.

Node facts come from fixtures/facts/nodes/*.json (node objects derived from real
nvidia-smi outputs, see fixtures/SOURCES.md) and are edited by dotted-path
patches, so each rule case states exactly which facts differ from a real node.
Image facts come from fixtures/facts/images/*.json (real image configs).
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

from gpudoctor.derive import build_context
from gpudoctor.facts import ImageFacts, NodeFacts

FACTS = Path(__file__).resolve().parent.parent.parent / "fixtures" / "facts"

_INDEX = re.compile(r"^(\w+)\[(\d+)\]$")


def _load(kind: str, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FACTS / kind / f"{name}.json").read_text(encoding="utf-8"))
    return data


def _walk(data: Any, path: str) -> tuple[Any, str | int]:
    parts = path.split(".")
    obj = data
    for part in parts[:-1]:
        obj = _child(obj, part)
    last = parts[-1]
    match = _INDEX.match(last)
    if match:
        return obj[match.group(1)], int(match.group(2))
    return obj, last


def _child(obj: Any, part: str) -> Any:
    match = _INDEX.match(part)
    if match:
        return obj[match.group(1)][int(match.group(2))]
    if part.isdigit() and isinstance(obj, list):
        return obj[int(part)]
    return obj[part]


def patched(data: dict[str, Any], patches: dict[str, Any] | None) -> dict[str, Any]:
    """A deep copy with `{"driver.branch": 535, "gpus[*].name": "..."}` applied; `[*]` = every item."""
    data = copy.deepcopy(data)
    for path, value in (patches or {}).items():
        if "[*]" in path:
            head, tail = path.split("[*]", 1)
            items = _child(data, head) if "." not in head else _walk_list(data, head)
            for i in range(len(items)):
                data = patched(data, {f"{head}[{i}]{tail}": value})
            continue
        parent, key = _walk(data, path)
        if isinstance(parent, list) or isinstance(key, int):
            parent[key] = copy.deepcopy(value)
        else:
            parent[key] = copy.deepcopy(value)
    return data


def _walk_list(data: Any, path: str) -> Any:
    obj = data
    for part in path.split("."):
        obj = _child(obj, part)
    return obj


def node_facts(name: str, patches: dict[str, Any] | None = None) -> NodeFacts:
    return NodeFacts.from_dict(patched(_load("nodes", name), patches))


def image_facts(name: str, patches: dict[str, Any] | None = None) -> ImageFacts:
    return ImageFacts.from_dict(patched(_load("images", name), patches))


def context_for(
    node: str,
    node_patches: dict[str, Any] | None = None,
    image: str | None = None,
    image_patches: dict[str, Any] | None = None,
) -> dict[str, Any]:
    node_obj = node_facts(node, node_patches)
    image_obj = image_facts(image, image_patches) if image else None
    return build_context(node_obj, image_obj)
