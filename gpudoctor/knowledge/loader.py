"""Find, read and validate the YAML files under `rules/`, dispatching on `kind:`.

Every file declares its kind at the top level (`kind: rules`, `kind: matrix`,
`kind: signatures`). `KINDS` maps a kind to the validator that turns the parsed
document into items; a module that owns a kind adds one line here (a lazy
"module:function" string, so loading rules never imports the others). Files are read on every load; a file's
validated items are kept per process for as long as its text is the same.
Nothing is cached on disk: the shipped YAML parses in ~20 ms with libyaml.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Sequence
from functools import lru_cache
from os import PathLike
from pathlib import Path
from typing import Any

from gpudoctor.errors import BadInput, InputMissing
from gpudoctor.inputs import RULE_FILE_MAX_BYTES, open_regular, parse_yaml, read_capped
from gpudoctor.knowledge.schema import RuleFileError

Validator = Callable[[dict[str, Any], str], list[Any]]
StrPath = str | PathLike[str]

KINDS: dict[str, str | Validator] = {
    "rules": "gpudoctor.knowledge.rulefile:validate_rules_document",
    "matrix": "gpudoctor.knowledge.matrix:validate_matrix_document",
    "signatures": "gpudoctor.explain.signatures:validate_signatures_document",
}

YAML_SUFFIXES = (".yaml", ".yml")
_KIND_LINE = re.compile(r"^kind:\s*['\"]?([A-Za-z_]+)['\"]?\s*(?:#.*)?$", re.MULTILINE)
# file -> (its text, (kind, validated items)) as last loaded in this process
_LOADED: dict[str, tuple[str, tuple[str, list[Any]]]] = {}


def _validator(kind: str) -> Validator:
    entry = KINDS[kind]
    if callable(entry):
        return entry
    module_name, _, func = entry.partition(":")
    validator: Validator = getattr(importlib.import_module(module_name), func)
    KINDS[kind] = validator
    return validator


@lru_cache(maxsize=1)
def shipped_root() -> Path:
    """`gpudoctor/_rules` in an installed wheel; the repository's `rules/` in a checkout."""
    package_dir = Path(__file__).resolve().parent.parent
    installed = package_dir / "_rules"
    return installed if installed.is_dir() else package_dir.parent / "rules"


def peek_kind(text: str) -> str | None:
    match = _KIND_LINE.search(text)
    return match.group(1) if match else None


def _read(path: Path) -> str:
    data = read_capped(path, RULE_FILE_MAX_BYTES, "a rule file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadInput(f"{path}: not UTF-8 text") from None


def _parse_yaml(path: Path, text: str) -> dict[str, Any]:
    doc = parse_yaml(text, str(path))
    if not isinstance(doc, dict):
        raise BadInput(f"{path}: expected a mapping with a top-level 'kind:'")
    return doc


def _load(path: Path, want: str | None) -> tuple[str, list[Any]] | None:
    """(kind, validated items) of one file; None when it is not of kind `want` (a file that
    declares another known kind on its `kind:` line is not parsed: its own loader validates
    it)."""
    text = _read(path)
    peeked = peek_kind(text)
    if want is not None and peeked in KINDS and peeked != want:
        return None
    loaded = _LOADED.get(str(path))
    if loaded is not None and loaded[0] == text:
        kind, items = loaded[1]
        return (kind, items) if want is None or kind == want else None
    doc = _parse_yaml(path, text)
    kind = doc.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        known = ", ".join(sorted(KINDS))
        raise BadInput(f"{path}: field kind: expected one of {known}, got {kind!r}")
    if want is not None and kind != want:
        return None
    try:
        items = _validator(kind)(doc, str(path))
    except RuleFileError as exc:
        who = f" rule {exc.item_id}:" if exc.item_id else ""
        raise BadInput(f"{path}:{who} field {exc.field}: {exc.message}") from None
    _LOADED[str(path)] = (text, (kind, items))
    return kind, items


def _yaml_files(directory: Path) -> list[Path]:
    """YAML files under `directory` in path-component order (as sorted Paths are), each by
    its real path. Symlinked directories are not followed (as os.walk does not)."""
    try:
        entries = sorted(directory.iterdir(), key=lambda entry: entry.name)
    except OSError as exc:
        raise InputMissing(f"{directory}: cannot read: {exc.strerror or exc}") from None
    files: list[Path] = []
    for entry in entries:
        if entry.is_dir() and not entry.is_symlink():
            files.extend(_yaml_files(entry))
        elif entry.suffix in YAML_SUFFIXES and entry.is_file():
            files.append(entry.resolve())
    return files


def load_file(path: StrPath, want: str | None = None) -> tuple[str, list[Any]] | None:
    """(kind, validated items) of one file, or None when its kind is not `want`."""
    return _load(Path(path), want)


def load_kind(kind: str, paths: Sequence[StrPath]) -> list[tuple[str, list[Any]]]:
    """Validated items of every file of `kind` named or under the directories named.

    Files come in path order per directory, each once (by real path).
    """
    result: list[tuple[str, list[Any]]] = []
    seen: set[Path] = set()
    for path in map(Path, paths):
        if path.is_dir():
            files = _yaml_files(path.resolve())
        elif path.is_file():
            files = [path.resolve()]
        elif path.exists():
            open_regular(path).close()  # raises: a FIFO, a device, a socket
            files = [path.resolve()]
        else:
            raise InputMissing(f"rules path not found: {path}")
        for file in files:
            if file in seen:
                continue
            seen.add(file)
            loaded = _load(file, kind)
            if loaded is not None:
                result.append((str(file), loaded[1]))
    return result
