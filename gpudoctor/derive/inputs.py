"""Missing is never ok through derivation: a derived fact computed from a fact a probe failed to
collect is failed too.

Each deriver module declares `INPUTS`: derived fact path -> the fact paths it is computed from.
Paths are context paths as rules see them, with placeholders for the item a derived fact
belongs to:
  "gpus[{gpu}].derived.geforce": ("gpus[{gpu}].brand", "gpus[{gpu}].name")   one per GPU
  "topology.pairs[{pair}].derived.geforce": ("gpus[{a}].derived.geforce", ...)  {a}/{b}: the
      pair's two GPUs
  "derived.architectures": ("gpus", "gpus[*].derived.architecture")   `*`: any item
An input "x|y" lists alternative sources: it fails only when one of them failed and none of them
has a value (the toolkit release comes from the toolkit's version, else libnvidia-container's).
An input may be another derived fact; GPU facts are resolved first, then pairs, then node-wide
ones in the order they are declared.

`mark_derived_failures` adds every such derived fact to `derived.failed_facts` (the engine's
missing-never-ok map, gpudoctor.engine.failed_facts) with the input's failure as the reason, so
a rule reading only the derived fact is `unknown`, never skipped or passed, whatever value the
deriver computed from what was left (a `False` from a failed query is no answer).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from gpudoctor.knowledge.conditions import EMPTY_SCOPE, ConditionError, make_getter, parse_path

Inputs = Mapping[str, tuple[str, ...]]

_SCOPE_ORDER = ("{gpu}", "{pair}", "")


def mark_derived_failures(context: dict[str, Any], declared: Inputs) -> None:
    failed: dict[str, str] = context["derived"]["failed_facts"]
    if not failed:
        return  # nothing failed: nothing derived from a failure (the common case, kept fast)
    gpus = context.get("gpus") or []
    pairs = (context.get("topology") or {}).get("pairs") or []
    position = {gpu.get("index"): i for i, gpu in enumerate(gpus)}
    for scope in _SCOPE_ORDER:
        for key, inputs in declared.items():
            if scope and scope not in key or not scope and "{" in key:
                continue
            for bound in _bindings(scope, gpus, pairs, position):
                reason = _failed_input(context, failed, [p.format(**bound) for p in inputs])
                if reason is not None:
                    failed[key.format(**bound)] = reason


def _bindings(
    scope: str, gpus: list[Any], pairs: list[Any], position: dict[Any, int]
) -> list[dict[str, Any]]:
    if scope == "{gpu}":
        return [{"gpu": i} for i in range(len(gpus))]
    if scope == "{pair}":
        return [
            {"pair": i, "a": position.get(pair.get("gpu_a"), -1), "b": position.get(pair.get("gpu_b"), -1)}
            for i, pair in enumerate(pairs)
        ]
    return [{}]


def _failed_input(context: Mapping[str, Any], failed: Mapping[str, str], inputs: list[str]) -> str | None:
    """The first input that failed, as "computed from <path>, which failed: <reason>"."""
    for spec in inputs:
        states = [_state(context, failed, path) for path in spec.split("|")]
        if any(state == "known" for state, _ in states):
            continue
        for state, path in states:
            if state == "failed":
                return f"computed from {path}, which failed: {failed[path]}"
    return None


def _state(context: Mapping[str, Any], failed: Mapping[str, str], path: str) -> tuple[str, str]:
    """("failed", the failed path) | ("known", path) | ("absent", path) for one input path;
    a `*` path is failed when any item's is, known when every item's is."""
    if "[*]" not in path:
        if path in failed:
            return "failed", path
        return ("absent" if _value(context, path) in (None, []) else "known"), path
    pattern = re.compile(re.escape(path).replace(r"\[\*\]", r"\[\d+\]") + "$")
    matches = [name for name in failed if pattern.match(name)]
    if matches:
        return "failed", matches[0]
    head, _, rest = path.partition("[*]")
    items = _value(context, head)
    if not isinstance(items, list) or not items:
        return "absent", path
    values = [_value(context, f"{head}[{i}]{rest}") for i in range(len(items))]
    return ("known" if all(v not in (None, []) for v in values) else "absent"), path


def _value(context: Mapping[str, Any], path: str) -> Any:
    try:
        fact_path = parse_path(path, frozenset(), path)
    except ConditionError:  # "gpus[-1]...": a pair's GPU that is not in the GPU list
        return None
    return make_getter(fact_path)(context, EMPTY_SCOPE)
