"""Find, read and validate the YAML files under `rules/`, dispatching on `kind:`.

Every file declares its kind at the top level (`kind: rules`, `kind: matrix`,
`kind: signatures`). `KINDS` maps a kind to the validator that turns the parsed
document into items; a module that owns a kind adds one line here (a lazy
"module:function" string, so loading rules never imports the others), or calls
`register_kind` at import time. A directory's files of one kind come parsed from
`gpudoctor.knowledge.treecache` (one cache entry checked by stat); validated
items are kept per process per file version. Paths are strings: pathlib (and
the urllib.parse it imports) stays off the start-up path (docs/startup.md).
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Callable, Sequence
from functools import lru_cache

from gpudoctor.errors import BadInput, InputMissing
from gpudoctor.knowledge.schema import RuleFileError
from gpudoctor.knowledge.treecache import StatKey, documents, settled, stat_key

TYPE_CHECKING = False  # typing is not imported at run time: see docs/startup.md
if TYPE_CHECKING:
    from typing import Any

    StrPath = str | os.PathLike[str]

Validator = Callable[[dict[str, "Any"], str], "list[Any]"]

KINDS: dict[str, str | Validator] = {
    "rules": "gpudoctor.knowledge.rulefile:validate_rules_document",
    "matrix": "gpudoctor.knowledge.matrix:validate_matrix_document",
    "signatures": "gpudoctor.explain.signatures:validate_signatures_document",
}

# Compiled by `re` on first use: a run served from the tree cache reads no file.
_KIND_LINE = r"^kind:\s*['\"]?([A-Za-z_]+)['\"]?\s*(?:#.*)?$"
_CACHE: dict[tuple[str, StatKey], list[Any]] = {}


def register_kind(kind: str, validator: str | Validator) -> None:
    KINDS[kind] = validator


def _validator(kind: str) -> Validator | None:
    entry = KINDS.get(kind)
    if entry is None or callable(entry):
        return entry
    module_name, _, func = entry.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return None  # the owning module is not built (yet)
        raise
    validator: Validator = getattr(module, func)
    KINDS[kind] = validator
    return validator


@lru_cache(maxsize=1)
def shipped_root() -> str:
    """`gpudoctor/_rules` in an installed wheel; the repository's `rules/` in a checkout."""
    package_dir = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    installed = os.path.join(package_dir, "_rules")
    if os.path.isdir(installed):
        return installed
    return os.path.join(os.path.dirname(package_dir), "rules")


def peek_kind(text: str) -> str | None:
    match = re.search(_KIND_LINE, text, re.MULTILINE)
    return match.group(1) if match else None


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except UnicodeDecodeError:
        raise BadInput(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise InputMissing(f"{path}: cannot read: {exc.strerror or exc}") from None


def _parse(path: str, text: str) -> dict[str, Any]:
    from gpudoctor.knowledge import parsecache

    cached = parsecache.get(text)
    if isinstance(cached, dict):
        return cached
    doc = _parse_yaml(path, text)
    parsecache.put(text, doc)
    return doc


def _parse_yaml(path: str, text: str) -> dict[str, Any]:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        doc = yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise BadInput(f"{path}:{where} invalid YAML: {problem}") from None
    if not isinstance(doc, dict):
        raise BadInput(f"{path}: expected a mapping with a top-level 'kind:'")
    return doc


def _classify(path: str, want: str | None) -> tuple[str, dict[str, Any] | None]:
    """(kind, parsed document) of one file; the document is None when the kind is not `want`.

    A file that declares another known kind on its `kind:` line is not parsed: its
    own loader validates it.
    """
    text = _read(path)
    peeked = peek_kind(text)
    if want is not None and peeked in KINDS and peeked != want:
        return peeked, None
    doc = _parse(path, text)
    kind = doc.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        known = ", ".join(sorted(KINDS))
        raise BadInput(f"{path}: field kind: expected one of {known}, got {kind!r}")
    return kind, (doc if want is None or kind == want else None)


def _validated(path: str, key: StatKey, kind: str, doc: dict[str, Any]) -> list[Any] | None:
    """The file's items, validated once per process per file version (None: kind not built)."""
    cached = _CACHE.get((path, key))
    if cached is not None:
        return cached
    validator = _validator(kind)
    if validator is None:
        return None
    try:
        items = validator(doc, path)
    except RuleFileError as exc:
        who = f" rule {exc.item_id}:" if exc.item_id else ""
        raise BadInput(f"{path}:{who} field {exc.field}: {exc.message}") from None
    if settled(key):  # a file written just now may be rewritten in the same clock tick
        _CACHE[(path, key)] = items
    return items


def _stat_key(path: str) -> StatKey:
    try:
        return stat_key(path)
    except OSError as exc:
        raise InputMissing(f"{path}: cannot read: {exc.strerror or exc}") from None


def load_file(path: StrPath, want: str | None = None) -> tuple[str, list[Any]] | None:
    """(kind, validated items) of one file, or None when its kind is not `want`."""
    name = os.fspath(path)
    key = _stat_key(name)
    kind, doc = _classify(name, want)
    if doc is None:
        return None
    items = _validated(name, key, kind, doc)
    return None if items is None else (kind, items)


def load_kind(kind: str, paths: Sequence[StrPath]) -> list[tuple[str, list[Any]]]:
    """Validated items of every file of `kind` named or under the directories named.

    Files come in path order per directory, each once (by real path).
    """
    result: list[tuple[str, list[Any]]] = []
    seen: set[str] = set()
    for path in paths:
        name = os.fspath(path)
        if os.path.isdir(name):
            found = documents(name, kind, lambda file: _classify(file, kind))
        elif os.path.isfile(name):
            real = os.path.realpath(name)
            key = _stat_key(real)
            doc = _classify(real, kind)[1]
            found = [] if doc is None else [(real, key, doc)]
        else:
            raise InputMissing(f"rules path not found: {name}")
        for file, key, doc in found:
            if file in seen:
                continue
            seen.add(file)
            items = _validated(file, key, kind, doc)
            if items is not None:
                result.append((file, items))
    return result
