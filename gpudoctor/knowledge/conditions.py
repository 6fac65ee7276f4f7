"""The condition language: compile a YAML condition once into a fast closure.

A compiled condition is called as `cond(root, scope, trace)` and returns
True, False or None (three-valued logic: None means a needed fact is unknown).
`scope` binds quantified items (`gpu`, `pair`, ...) to (item, concrete path);
`trace` is None on the fast path and a `Trace` when a finding is being built,
so evidence is only collected for rules that actually fire. The language is
documented in docs/rules.md; keep the two in step.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, NamedTuple

from gpudoctor.versions import parse_version, spec_contains, valid_specifier

Scope = Mapping[str, tuple[Any, str]]
Condition = Callable[[Mapping[str, Any], Scope, "Trace | None"], "bool | None"]

EMPTY_SCOPE: Scope = {}


class ConditionError(ValueError):
    """A condition that cannot be compiled; `where` is the field path inside the rule."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.message = message


@dataclass
class Trace:
    """What a condition used: evidence (path -> value), missing facts (path -> reason),
    subjects (GPU indexes / pair names) and the quantified items that matched.

    `failed` (concrete fact path -> reason) names the facts a probe failed to collect
    (gpudoctor.facts.mark_failed). A condition traced with them reads each as unknown
    everywhere, in `is_null`, in `empty` and in quantifier guards too, so a failed
    fact can never make a rule pass or skip; the fast path (no trace) is only used
    when nothing failed."""

    evidence: dict[str, Any] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    subjects: list[str] = field(default_factory=list)
    items: dict[str, list[tuple[Any, str]]] = field(default_factory=dict)
    failed: Mapping[str, str] = field(default_factory=dict)

    def child(self) -> Trace:
        return Trace(failed=self.failed)

    def read_failed(self, name: str) -> bool:
        """True (and the fact recorded as missing) when `name` is a failed fact."""
        reason = self.failed.get(name) if self.failed else None
        if reason is None:
            return False
        self.missing[name] = reason
        return True

    def touched_failed(self) -> bool:
        return bool(self.failed) and any(name in self.failed for name in self.missing)

    def merge(self, other: Trace, *, with_subjects: bool = True, with_missing: bool = True) -> None:
        self.evidence.update(other.evidence)
        if with_missing:
            self.missing.update(other.missing)
        if with_subjects:
            for subject in other.subjects:
                if subject not in self.subjects:
                    self.subjects.append(subject)
            for name, bound in other.items.items():
                known = self.items.setdefault(name, [])
                for entry in bound:
                    if all(entry[1] != k[1] for k in known):
                        known.append(entry)


# --- fact paths -----------------------------------------------------------------

_SEGMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)((?:\[\d+\])*)")


class FactPath(NamedTuple):
    """A dotted path, optionally starting at a quantifier binding (`gpu.name`)."""

    text: str
    binding: str | None  # "gpu" when the path reads the bound item
    keys: tuple[str | int, ...]


def parse_path(text: str, bindings: frozenset[str], where: str) -> FactPath:
    if not isinstance(text, str) or not text:
        raise ConditionError(where, f"a fact path must be a non-empty string, got {text!r}")
    keys: list[str | int] = []
    for part in text.split("."):
        if part.isidentifier() and part.isascii():
            keys.append(part)  # the common case, without the regex (~400 paths per run)
            continue
        match = _SEGMENT.fullmatch(part)
        if match is None:
            raise ConditionError(where, f"bad fact path {text!r}")
        keys.append(match.group(1))
        keys.extend(int(i) for i in re.findall(r"\[(\d+)\]", match.group(2)))
    first = keys[0]
    if isinstance(first, str) and first in bindings:
        return FactPath(text, first, tuple(keys[1:]))
    return FactPath(text, None, tuple(keys))


def _step(obj: Any, key: str | int) -> Any:
    if isinstance(key, int):
        return obj[key] if isinstance(obj, list) and -len(obj) <= key < len(obj) else None
    return obj.get(key) if isinstance(obj, dict) else None


def make_getter(path: FactPath) -> Callable[[Mapping[str, Any], Scope], Any]:
    keys = path.keys
    binding = path.binding
    if binding is None and len(keys) == 2 and all(isinstance(k, str) for k in keys):
        a, b = keys

        def get2(root: Mapping[str, Any], scope: Scope) -> Any:
            obj = root.get(a)
            return obj.get(b) if isinstance(obj, dict) else None

        return get2

    def get(root: Mapping[str, Any], scope: Scope) -> Any:
        obj: Any = root if binding is None else scope[binding][0]
        for key in keys:
            obj = _step(obj, key)
            if obj is None:
                return None
        return obj

    return get


def concrete(path: FactPath, scope: Scope) -> str:
    """The evidence name of a path: `gpu.name` inside a quantifier -> `gpus[3].name`."""
    if path.binding is None:
        return path.text
    rest = path.text.split(".", 1)[1] if "." in path.text else ""
    prefix = scope[path.binding][1]
    return f"{prefix}.{rest}" if rest else prefix


def unknown_reason(root: Mapping[str, Any], path: FactPath, scope: Scope) -> str:
    """Why a path reads None: the owning object's `unknown` entry where there is one."""
    obj: Any = root if path.binding is None else scope[path.binding][0]
    for depth, key in enumerate(path.keys):
        nxt = _step(obj, key)
        if nxt is None:
            reason = obj.get("unknown", {}).get(key) if isinstance(obj, dict) else None
            if isinstance(reason, str) and reason:
                return reason
            if depth < len(path.keys) - 1:
                shown = ".".join(str(k) for k in path.keys[: depth + 1])
                return f"{shown} not available"
            return "not reported"
        obj = nxt
    return "not reported"


# --- values ---------------------------------------------------------------------


def _order(left: Any, right: Any) -> tuple[Any, Any] | None:
    """Comparable forms: numbers as numbers, anything else as versions ("580.65.06")."""
    if isinstance(left, bool) or isinstance(right, bool):
        return None
    if isinstance(left, (int, float)) and isinstance(right, (int, float)):
        return left, right
    lv = parse_version(str(left))
    rv = parse_version(str(right))
    if lv is None or rv is None:
        return None
    return lv, rv


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
}


# --- compiling --------------------------------------------------------------------

# quantifier -> (list path, binding name, subject label of an item)
_GPU_SUBJECT: Callable[[Any, int], str] = lambda item, i: str(item.get("index", i))  # noqa: E731
_PAIR_SUBJECT: Callable[[Any, int], str] = lambda item, i: f"{item.get('gpu_a')}-{item.get('gpu_b')}"  # noqa: E731

QUANTIFIERS: dict[str, tuple[str, str, bool, Callable[[Any, int], str] | None]] = {
    "any_gpu": ("gpus", "gpu", True, _GPU_SUBJECT),
    "all_gpus": ("gpus", "gpu", False, _GPU_SUBJECT),
    "any_pair": ("topology.pairs", "pair", True, _PAIR_SUBJECT),
    "all_pairs": ("topology.pairs", "pair", False, _PAIR_SUBJECT),
}
GENERIC_QUANTIFIERS = {"any_item": True, "all_items": False}
LEAF_OPERATORS = (
    "eq",
    "ne",
    "in",
    "not_in",
    "glob",
    "matches",
    "version",
    "lt",
    "le",
    "gt",
    "ge",
    "is_null",
    "empty",
    "contains",
)


def compile_condition(spec: Any, where: str, bindings: frozenset[str] = frozenset()) -> Condition:
    """YAML condition -> closure. Raises ConditionError naming the field."""
    if isinstance(spec, list):
        return _and([compile_condition(s, f"{where}[{i}]", bindings) for i, s in enumerate(spec)])
    if not isinstance(spec, dict) or not spec:
        raise ConditionError(where, f"a condition must be a non-empty mapping, got {spec!r}")
    parts: list[Condition] = []
    for key, value in spec.items():
        sub = f"{where}.{key}"
        if key == "all":
            parts.append(_and(_compile_list(value, sub, bindings)))
        elif key == "any":
            parts.append(_or(_compile_list(value, sub, bindings)))
        elif key == "not":
            parts.append(_not(compile_condition(value, sub, bindings)))
        elif key in QUANTIFIERS:
            list_path, name, is_any, subject = QUANTIFIERS[key]
            parts.append(_quantifier(value, sub, bindings, list_path, name, is_any, subject))
        elif key in GENERIC_QUANTIFIERS:
            parts.append(_generic_quantifier(value, sub, bindings, GENERIC_QUANTIFIERS[key]))
        else:
            parts.append(_leaf(parse_path(key, bindings, sub), value, sub, bindings))
    return parts[0] if len(parts) == 1 else _and(parts)


def _compile_list(value: Any, where: str, bindings: frozenset[str]) -> list[Condition]:
    if not isinstance(value, list) or not value:
        raise ConditionError(where, "expected a non-empty list of conditions")
    return [compile_condition(item, f"{where}[{i}]", bindings) for i, item in enumerate(value)]


def _and(parts: list[Condition]) -> Condition:
    return _kleene(parts, decisive=False)


def _or(parts: list[Condition]) -> Condition:
    return _kleene(parts, decisive=True)


def _kleene(parts: list[Condition], decisive: bool) -> Condition:
    """Kleene and (decisive=False) / or (decisive=True): one part equal to `decisive` settles it."""

    def combined(root: Mapping[str, Any], scope: Scope, trace: Trace | None) -> bool | None:
        if trace is None:
            result: bool | None = not decisive
            for part in parts:
                value = part(root, scope, None)
                if value is decisive:
                    return decisive
                if value is None:
                    result = None
            return result
        subs = []
        for part in parts:
            sub = trace.child()
            subs.append((part(root, scope, sub), sub))
        return _combine(subs, trace, decisive=decisive)

    return combined


def _combine(subs: list[tuple[bool | None, Trace]], trace: Trace, decisive: bool) -> bool | None:
    """Kleene and (decisive=False) / or (decisive=True), keeping the evidence that decided it."""
    values = [v for v, _ in subs]
    if decisive in values:
        result: bool | None = decisive
        keep = [s for v, s in subs if v is decisive]
    elif None in values:
        result = None
        keep = [s for _, s in subs]
    else:
        result = not decisive
        keep = [s for _, s in subs]
    for sub in keep:
        trace.merge(sub, with_missing=result is None)
    return result


def _not(part: Condition) -> Condition:
    def cond_not(root: Mapping[str, Any], scope: Scope, trace: Trace | None) -> bool | None:
        value = part(root, scope, trace)
        return None if value is None else not value

    return cond_not


def _quantifier_body(value: Any, where: str, bindings: frozenset[str]) -> tuple[Condition | None, Condition]:
    if isinstance(value, dict) and "test" in value and set(value) <= {"where", "test", "in", "as"}:
        guard = compile_condition(value["where"], f"{where}.where", bindings) if "where" in value else None
        return guard, compile_condition(value["test"], f"{where}.test", bindings)
    return None, compile_condition(value, where, bindings)


def _generic_quantifier(value: Any, where: str, bindings: frozenset[str], is_any: bool) -> Condition:
    if not isinstance(value, dict) or "in" not in value or "as" not in value or "test" not in value:
        raise ConditionError(where, "expected a mapping with 'in' (a list path), 'as' (a name) and 'test'")
    name = value["as"]
    if not isinstance(name, str) or not name.isidentifier():
        raise ConditionError(f"{where}.as", f"a binding name must be an identifier, got {name!r}")
    list_path = value["in"]
    parse_path(list_path, bindings, f"{where}.in")
    return _quantifier(value, where, bindings, list_path, name, is_any, None)


def _quantifier(
    value: Any,
    where: str,
    bindings: frozenset[str],
    list_path: str,
    name: str,
    is_any: bool,
    subject: Callable[[Any, int], str] | None,
) -> Condition:
    inner = bindings | {name}
    guard, test = _quantifier_body(value, where, inner)
    path = parse_path(list_path, bindings, where)
    get_items = make_getter(path)

    def quantified(root: Mapping[str, Any], scope: Scope, trace: Trace | None) -> bool | None:
        items = get_items(root, scope)
        if trace is not None and trace.read_failed(concrete(path, scope)):
            return None  # the list itself was not collected (GPU count failed)
        if not isinstance(items, list):
            if trace is not None and items is None:
                trace.missing[concrete(path, scope)] = unknown_reason(root, path, scope)
            return None if items is None else False
        prefix = concrete(path, scope)
        saw_null = False
        matched: list[tuple[Trace, Any, str, int]] = []
        others: list[tuple[bool | None, Trace]] = []
        for i, item in enumerate(items):
            inner_scope = {**scope, name: (item, f"{prefix}[{i}]")}
            if guard is not None:
                guard_trace = trace.child() if trace is not None and trace.failed else None
                applies = guard(root, inner_scope, guard_trace)
                if applies is None and guard_trace is not None and guard_trace.touched_failed():
                    # Whether this item is in scope depends on a failed fact: unknown, not skipped.
                    saw_null = True
                    others.append((None, guard_trace))
                    continue
                if applies is not True:
                    continue
            sub = trace.child() if trace is not None else None
            result = test(root, inner_scope, sub)
            if result is is_any:
                if trace is None:
                    return is_any
                assert sub is not None
                matched.append((sub, item, f"{prefix}[{i}]", i))
            elif result is None:
                saw_null = True
                if sub is not None:
                    others.append((None, sub))
            elif sub is not None:
                others.append((result, sub))
        if matched:
            assert trace is not None
            for sub, item, item_path, i in matched:
                if subject is not None:
                    sub.subjects.append(subject(item, i))
                sub.items.setdefault(name, []).append((item, item_path))
                trace.merge(sub, with_missing=False)
            return is_any
        outcome = None if saw_null else (not is_any)
        if trace is not None:
            for result, sub in others:
                trace.merge(sub, with_subjects=False, with_missing=result is None)
        return outcome

    return quantified


def _operand(value: Any, where: str, bindings: frozenset[str]) -> tuple[FactPath | None, Any]:
    """A right-hand side: a constant, or {path: other.fact} to compare two facts."""
    if isinstance(value, dict):
        if set(value) != {"path"}:
            raise ConditionError(where, "an operand mapping must be {path: <fact path>}")
        return parse_path(value["path"], bindings, f"{where}.path"), None
    return None, value


def _check_constant(value: Any, where: str) -> None:
    """Reject constants that YAML silently changes or that can never match."""
    if isinstance(value, float):
        raise ConditionError(where, f"quote version-like numbers: '{value}' (YAML reads 12.10 as 12.1)")
    if isinstance(value, list):
        for item in value:
            _check_constant(item, where)


def _leaf(path: FactPath, spec: Any, where: str, bindings: frozenset[str]) -> Condition:
    getter = make_getter(path)
    if spec is None:
        raise ConditionError(where, "a null value never matches: use {is_null: true}")
    if isinstance(spec, list):
        raise ConditionError(where, "a list is not a value: use {in: [...]}")
    ops = spec if isinstance(spec, dict) else {"eq": spec}
    if not ops:
        raise ConditionError(where, "empty operator mapping")
    checks: list[Condition] = []
    for op, operand in ops.items():
        sub = f"{where}.{op}"
        if op not in LEAF_OPERATORS:
            raise ConditionError(sub, f"unknown operator {op!r} (known: {', '.join(LEAF_OPERATORS)})")
        _check_constant(operand, sub)
        if operand is None and op != "is_null":
            raise ConditionError(sub, "a null operand never matches: use is_null")
        checks.append(_operator(path, getter, op, operand, sub, bindings))
    return checks[0] if len(checks) == 1 else _and(checks)


def _record(trace: Trace | None, path: FactPath, scope: Scope, value: Any, root: Mapping[str, Any]) -> None:
    if trace is None:
        return
    name = concrete(path, scope)
    trace.evidence[name] = value
    if value is None:
        trace.missing[name] = unknown_reason(root, path, scope)


def _operator(
    path: FactPath,
    getter: Callable[[Mapping[str, Any], Scope], Any],
    op: str,
    operand: Any,
    where: str,
    bindings: frozenset[str],
) -> Condition:
    if op == "is_null":
        if not isinstance(operand, bool):
            raise ConditionError(where, "is_null takes true or false")

        def is_null(root: Mapping[str, Any], scope: Scope, trace: Trace | None) -> bool | None:
            value = getter(root, scope)
            if trace is not None:
                name = concrete(path, scope)
                trace.evidence[name] = value
                if trace.read_failed(name):
                    return None  # null because its probe failed, not because it does not exist
            return (value is None) is operand

        return is_null

    test = _value_test(op, operand, where)
    other_path, constant = _operand(operand, where, bindings) if op not in ("version",) else (None, operand)
    if op in ("in", "not_in", "glob", "matches", "empty", "version"):
        other_path = None
    other_getter = make_getter(other_path) if other_path is not None else None

    def leaf(root: Mapping[str, Any], scope: Scope, trace: Trace | None) -> bool | None:
        value = getter(root, scope)
        _record(trace, path, scope, value, root)
        if value is None or (trace is not None and trace.read_failed(concrete(path, scope))):
            return None
        if other_getter is not None:
            assert other_path is not None
            other = other_getter(root, scope)
            _record(trace, other_path, scope, other, root)
            if other is None or (trace is not None and trace.read_failed(concrete(other_path, scope))):
                return None
            return test(value, other)
        result = test(value, constant)
        if result is None and trace is not None:
            trace.missing[concrete(path, scope)] = f"{value!r} cannot be compared by {op}"
        return result

    return leaf


def _value_test(op: str, operand: Any, where: str) -> Callable[[Any, Any], bool | None]:
    if op == "eq":
        return lambda v, o: v == o
    if op == "ne":
        return lambda v, o: v != o
    if op in ("in", "not_in"):
        if not isinstance(operand, list):
            raise ConditionError(where, f"{op} takes a list")
        members = list(operand)
        if op == "in":
            return lambda v, _o: v in members
        return lambda v, _o: v not in members
    if op == "glob":
        patterns = [operand] if isinstance(operand, str) else operand
        if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
            raise ConditionError(where, "glob takes a pattern or a list of patterns")
        lowered = [p.lower() for p in patterns]
        return lambda v, _o: isinstance(v, str) and any(fnmatchcase(v.lower(), p) for p in lowered)
    if op == "matches":
        try:
            regex = re.compile(operand, re.IGNORECASE)
        except (re.error, TypeError, RecursionError) as exc:  # RecursionError: "(" * 500
            raise ConditionError(where, f"bad regular expression: {exc}") from None
        return lambda v, _o: isinstance(v, str) and regex.search(v) is not None
    if op == "version":
        if not isinstance(operand, str):
            raise ConditionError(where, "version takes a specifier string such as '>=570,<580'")
        if not valid_specifier(operand):
            raise ConditionError(where, f"bad version specifier {operand!r}")
        return lambda v, _o: spec_contains(operand, str(v))
    if op in _COMPARE:
        compare = _COMPARE[op]

        def ordered(v: Any, o: Any) -> bool | None:
            pair = _order(v, o)
            return None if pair is None else compare(*pair)

        return ordered
    if op == "empty":
        if not isinstance(operand, bool):
            raise ConditionError(where, "empty takes true or false")
        return lambda v, _o: (len(v) == 0) is operand if isinstance(v, (list, dict, str)) else None
    if op == "contains":
        return lambda v, o: o in v if isinstance(v, (list, str, dict)) else None
    raise ConditionError(where, f"unknown operator {op!r}")  # pragma: no cover - guarded by LEAF_OPERATORS
