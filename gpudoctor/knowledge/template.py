"""Message templates: `{path}` placeholders filled from a finding's evidence and facts.

`{gpu.name}` lists the values of the GPUs the finding is about; `{a|b}` takes the
first alternative that is known (`{a|"text"}`: a quoted literal as the last resort); `{subjects}` and `{missing}` are the finding's
subjects and missing facts. A placeholder that cannot be filled renders as
"unknown": a template never crashes on a missing field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from gpudoctor.knowledge.conditions import ConditionError, Trace, make_getter, parse_path

_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")
_SPECIAL = ("subjects", "missing")


def check_template(text: Any, where: str) -> str:
    """Validate a template at load time: a string whose placeholders are fact paths."""
    if not isinstance(text, str) or not text.strip():
        raise ConditionError(where, "must be a non-empty string")
    stripped = _PLACEHOLDER.sub("", text)
    if "{" in stripped or "}" in stripped:
        raise ConditionError(where, "unbalanced '{' or '}' (write '{{' / '}}' for literal braces)")
    for match in _PLACEHOLDER.finditer(text):
        inner = match.group(1)
        if inner is None:
            continue
        for alternative in inner.split("|"):
            alternative = alternative.strip()
            if alternative not in _SPECIAL and not _is_literal(alternative):
                parse_path(alternative, frozenset(), where)
    return text


def _is_literal(text: str) -> bool:
    return len(text) >= 2 and text[0] == text[-1] and text[0] in "'\""


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(_show(v) for v in value) if value else "none"
    return str(value)


def _resolve(name: str, root: Mapping[str, Any], trace: Trace) -> Any:
    if _is_literal(name):
        return name[1:-1]
    if name == "subjects":
        return trace.subjects or None
    if name == "missing":
        return [f"{path} ({reason})" for path, reason in trace.missing.items()] or None
    if name in trace.evidence and trace.evidence[name] is not None:
        return trace.evidence[name]
    binding, _, rest = name.partition(".")
    if binding in trace.items:
        path = parse_path(rest, frozenset(), name) if rest else None
        values: list[Any] = []
        for item, _prefix in trace.items[binding]:
            value = item if path is None else make_getter(path)(item, {})
            if value is not None and value not in values:
                values.append(value)
        return values or None
    return make_getter(parse_path(name, frozenset(), name))(root, {})


def render(text: str, root: Mapping[str, Any], trace: Trace) -> str:
    def fill(match: re.Match[str]) -> str:
        whole = match.group(0)
        if whole in ("{{", "}}"):
            return whole[0]
        for alternative in match.group(1).split("|"):
            try:
                value = _resolve(alternative.strip(), root, trace)
            except ConditionError:
                value = None
            if value is not None and value != []:
                return _show(value)
        return "unknown"

    return _PLACEHOLDER.sub(fill, text)
