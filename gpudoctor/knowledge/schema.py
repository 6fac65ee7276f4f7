"""Small schema helpers shared by every `kind:` validator (rules, matrix, signatures).

Validators raise `RuleFileError(item_id, field, message)`; the loader turns it into
one `BadInput` line naming the file, the item id and the field.
"""

from __future__ import annotations

from typing import Any


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
