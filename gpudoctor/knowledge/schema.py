"""Small schema helpers shared by every `kind:` validator (rules, matrix, signatures).

Validators raise `RuleFileError(item_id, field, message)`; the loader turns it into
one `BadInput` line naming the file, the item id and the field.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar


class _HasId(Protocol):
    id: str


ItemT = TypeVar("ItemT", bound=_HasId)


class RuleFileError(ValueError):
    def __init__(self, item_id: str | None, field: str, message: str) -> None:
        super().__init__(message)
        self.item_id = item_id
        self.field = field
        self.message = message


def check_keys(mapping: dict[str, Any], allowed: set[str], item_id: str | None, prefix: str) -> None:
    for key in mapping:
        if key not in allowed:
            raise RuleFileError(
                item_id, f"{prefix}{key}", f"unknown field (allowed: {', '.join(sorted(allowed))})"
            )


def required_str(mapping: dict[str, Any], key: str, item_id: str | None) -> str:
    value = mapping.get(key)
    if not isinstance(value, str) or not value.strip():
        raise RuleFileError(item_id, key, "missing or not a non-empty string")
    return value


def optional_str(mapping: dict[str, Any], key: str, item_id: str | None) -> str | None:
    if key not in mapping or mapping[key] is None:
        return None
    return required_str(mapping, key, item_id)


def string_list(mapping: dict[str, Any], key: str, item_id: str | None) -> list[str]:
    value = mapping.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise RuleFileError(item_id, key, "expected a list of non-empty strings")
    return list(value)


FIELD_REPORT = "field report"


def one_of(
    mapping: dict[str, Any], key: str, choices: tuple[str, ...], item_id: str | None, field: str | None = None
) -> str:
    """A required string that must be one of `choices` (`field` names it in errors, default `key`)."""
    value = required_str(mapping, key, item_id)
    if value not in choices:
        raise RuleFileError(item_id, field or key, f"must be one of {', '.join(choices)}")
    return value


def optional_bool(mapping: dict[str, Any], key: str, item_id: str | None) -> bool:
    value = mapping.get(key, False)
    if not isinstance(value, bool):
        raise RuleFileError(item_id, key, "must be true or false")
    return value


def refs_list(
    mapping: dict[str, Any], item_id: str | None, source: str | None, key: str = "refs"
) -> list[str]:
    """URLs; at least one unless `source` is a field report (None: no minimum)."""
    refs = string_list(mapping, key, item_id)
    if not refs and source is not None and source != FIELD_REPORT:
        raise RuleFileError(item_id, key, f"needs at least one URL, or `source: {FIELD_REPORT}`")
    for ref in refs:
        if not ref.startswith(("https://", "http://")):
            raise RuleFileError(item_id, key, f"not a URL: {ref!r}")
    return refs


def compile_items(
    doc: dict[str, Any],
    path: str,
    list_key: str,
    noun: str,
    compile_item: Callable[[Any, str, int], ItemT],
) -> list[ItemT]:
    """The items under `list_key` of a `kind:` document, each compiled, ids unique per file."""
    check_keys(doc, {"kind", list_key}, None, "")
    items = doc.get(list_key)
    if not isinstance(items, list) or not items:
        raise RuleFileError(None, list_key, f"expected a non-empty list of {noun}s")
    compiled: list[ItemT] = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        one = compile_item(item, path, index)
        if one.id in seen:
            raise RuleFileError(one.id, "id", f"duplicate {noun} id in this file")
        seen.add(one.id)
        compiled.append(one)
    return compiled
