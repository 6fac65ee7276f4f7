"""Find, read and validate the YAML files under `rules/`, dispatching on `kind:`.

Every file declares its kind at the top level (`kind: rules`, `kind: matrix`,
`kind: signatures`). `KINDS` maps a kind to the validator that turns the parsed
document into items; a module that owns a kind adds one line here (a lazy
"module:function" string, so loading rules never imports the others), or calls
`register_kind` at import time. Parsed files are cached per process by
(path, mtime, size).
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from pathlib import Path

from gpudoctor.errors import BadInput, InputMissing
from gpudoctor.knowledge.schema import RuleFileError

TYPE_CHECKING = False  # typing is not imported at run time: see docs/startup.md
if TYPE_CHECKING:
    from typing import Any

Validator = Callable[[dict[str, "Any"], Path], "list[Any]"]

KINDS: dict[str, str | Validator] = {
    "rules": "gpudoctor.knowledge.rulefile:validate_rules_document",
    "matrix": "gpudoctor.knowledge.matrix:validate_matrix_document",
    "signatures": "gpudoctor.explain.signatures:validate_signatures_document",
}

_KIND_LINE = re.compile(r"^kind:\s*['\"]?([A-Za-z_]+)['\"]?\s*(?:#.*)?$", re.MULTILINE)
_CACHE: dict[tuple[str, int, int], tuple[str, list[Any]]] = {}
_PEEKED: dict[tuple[str, int, int], str | None] = {}


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
def shipped_root() -> Path:
    """`gpudoctor/_rules` in an installed wheel; the repository's `rules/` in a checkout."""
    package_dir = Path(__file__).resolve().parent.parent
    installed = package_dir / "_rules"
    if installed.is_dir():
        return installed
    return package_dir.parent / "rules"


_LISTINGS: dict[tuple[str, ...], tuple[dict[str, int], list[Path]]] = {}
YAML_SUFFIXES = (".yaml", ".yml")


def _dir_mtimes(directories: Iterable[Path]) -> dict[str, int] | None:
    try:
        return {str(d): d.stat().st_mtime_ns for d in directories}
    except OSError:
        return None


def yaml_files(paths: Iterable[Path]) -> list[Path]:
    """Every .yaml/.yml file named or under the directories named, sorted, each once.

    The listing is reused while no directory involved changed (a file added or
    removed changes its directory's mtime), so repeated loads cost a few stats.
    """
    paths = list(paths)
    key = tuple(str(p) for p in paths)
    cached = _LISTINGS.get(key)
    if cached is not None and _dir_mtimes(Path(d) for d in cached[0]) == cached[0]:
        return cached[1]
    found: list[Path] = []
    directories: list[Path] = []
    for path in paths:
        if os.path.isdir(path):
            # os.walk, not Path.rglob: the shipped tree is listed on every run (~1.5 ms less).
            listed: list[str] = []
            for root, _dirs, names in os.walk(path):
                directories.append(Path(root))
                listed.extend(os.path.join(root, n) for n in names if os.path.splitext(n)[1] in YAML_SUFFIXES)
            # By path components, as sorted(Path) orders them ("a/b" before "a-b/c").
            listed.sort(key=lambda name: name.split(os.sep))
            found.extend(Path(name) for name in listed if os.path.isfile(name))
        elif os.path.isfile(path):
            found.append(path)
        else:
            raise InputMissing(f"rules path not found: {path}")
    unique: dict[Path, None] = {}
    for path in found:
        unique.setdefault(Path(os.path.realpath(path)), None)
    files = list(unique)
    mtimes = _dir_mtimes(directories)
    if mtimes is not None and all(os.path.isdir(p) for p in paths):
        _LISTINGS[key] = (mtimes, files)
    return files


def peek_kind(path: Path, text: str) -> str | None:
    match = _KIND_LINE.search(text)
    return match.group(1) if match else None


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise BadInput(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise InputMissing(f"{path}: cannot read: {exc.strerror or exc}") from None


def _parse(path: Path, text: str) -> dict[str, Any]:
    from gpudoctor.knowledge import parsecache

    cached = parsecache.get(text)
    if isinstance(cached, dict):
        return cached
    doc = _parse_yaml(path, text)
    parsecache.put(text, doc)
    return doc


def _parse_yaml(path: Path, text: str) -> dict[str, Any]:
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


def load_file(path: Path, want: set[str] | None = None) -> tuple[str, list[Any]] | None:
    """(kind, validated items) of one file, or None when its kind is not wanted."""
    try:
        stat = path.stat()
    except OSError as exc:
        raise InputMissing(f"{path}: cannot read: {exc.strerror or exc}") from None
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key in _CACHE:
        kind, items = _CACHE[key]
        return (kind, items) if want is None or kind in want else None
    if key in _PEEKED and want is not None and _PEEKED[key] in KINDS and _PEEKED[key] not in want:
        return None
    text = _read(path)
    kind = _PEEKED[key] = peek_kind(path, text)
    if want is not None and kind in KINDS and kind not in want:
        return None  # another kind's file; its own loader validates it
    doc = _parse(path, text)
    kind = doc.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        known = ", ".join(sorted(KINDS))
        raise BadInput(f"{path}: field kind: expected one of {known}, got {kind!r}")
    if want is not None and kind not in want:
        return None
    validator = _validator(kind)
    if validator is None:
        return None
    try:
        items = validator(doc, path)
    except RuleFileError as exc:
        who = f" rule {exc.item_id}:" if exc.item_id else ""
        raise BadInput(f"{path}:{who} field {exc.field}: {exc.message}") from None
    _CACHE[key] = (kind, items)
    return kind, items


def load_kind(kind: str, paths: Sequence[Path]) -> list[tuple[Path, list[Any]]]:
    """Validated items of every file of `kind` under `paths`, file by file."""
    result: list[tuple[Path, list[Any]]] = []
    for path in yaml_files(paths):
        loaded = load_file(path, {kind})
        if loaded is not None:
            result.append((path, loaded[1]))
    return result
