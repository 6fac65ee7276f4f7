"""Schema of `kind: rules` files and their compilation into `Rule` objects."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from gpudoctor.knowledge.conditions import Condition, ConditionError, FactPath, compile_condition, parse_path
from gpudoctor.knowledge.schema import (
    RuleFileError,
    check_keys,
    compile_items,
    one_of,
    optional_bool,
    optional_str,
    refs_list,
    required_str,
)
from gpudoctor.knowledge.template import check_template

RULE_ID = re.compile(r"^GD-[A-Z0-9]+-\d{3}$")
SEVERITIES = ("fail", "warn", "info", "unknown")
APPLIES_TO = ("node", "node+image", "image")
GUARD_UNKNOWN = ("skip", "unknown")

_FIELDS = {
    "id",
    "title",
    "severity",
    "applies_to",
    "when",
    "when_unknown",
    "test",
    "message",
    "message_unknown",
    "fix",
    "refs",
    "source",
    "notes",
    "override",
    "examples",
    "evidence",
}


@dataclass
class Rule:
    id: str
    title: str
    severity: str
    applies_to: str
    test: Condition
    message: str
    fix: str
    refs: list[str]
    source: str
    file: str
    when: Condition | None = None
    when_unknown: str = "skip"
    message_unknown: str | None = None
    notes: str | None = None
    override: bool = False
    # Facts behind derived values the condition reads, recorded in the evidence too.
    evidence: list[FactPath] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)  # the YAML mapping, for `rules show`

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "severity": self.severity,
            "applies_to": self.applies_to,
            "fix": self.fix,
            "refs": list(self.refs),
            "source": self.source,
        }


def validate_rules_document(doc: dict[str, Any], path: str) -> list[Rule]:
    return compile_items(doc, path, "rules", "rule", compile_rule)


def compile_rule(item: Any, path: str, index: int) -> Rule:
    if not isinstance(item, dict):
        raise RuleFileError(None, f"rules[{index}]", "a rule must be a mapping")
    rule_id = item.get("id")
    if not isinstance(rule_id, str) or not RULE_ID.match(rule_id):
        raise RuleFileError(None, f"rules[{index}].id", f"expected an id like GD-DRV-001, got {rule_id!r}")
    check_keys(item, _FIELDS, rule_id, "")
    severity = one_of(item, "severity", SEVERITIES, rule_id)
    applies_to = one_of(item, "applies_to", APPLIES_TO, rule_id)
    when_unknown = item.get("when_unknown", "skip")
    if when_unknown not in GUARD_UNKNOWN:
        raise RuleFileError(rule_id, "when_unknown", f"must be one of {', '.join(GUARD_UNKNOWN)}")
    source = required_str(item, "source", rule_id)
    refs = refs_list(item, rule_id, source)
    override = optional_bool(item, "override", rule_id)
    if "test" not in item:
        raise RuleFileError(rule_id, "test", "missing (the condition that makes the rule fire)")
    try:
        when = compile_condition(item["when"], "when") if "when" in item else None
        test = compile_condition(item["test"], "test")
        message = check_template(item.get("message"), "message")
        fix = check_template(item.get("fix"), "fix")
        message_unknown = (
            check_template(item["message_unknown"], "message_unknown") if "message_unknown" in item else None
        )
        evidence = _evidence(item, rule_id)
    except ConditionError as exc:
        raise RuleFileError(rule_id, exc.where, exc.message) from None
    return Rule(
        id=rule_id,
        title=required_str(item, "title", rule_id),
        severity=severity,
        applies_to=applies_to,
        when=when,
        when_unknown=when_unknown,
        test=test,
        message=message,
        message_unknown=message_unknown,
        fix=fix,
        refs=refs,
        source=source,
        notes=optional_str(item, "notes", rule_id),
        override=override,
        evidence=evidence,
        file=str(path),
        raw=item,
    )


def _evidence(item: dict[str, Any], rule_id: str | None) -> list[FactPath]:
    """`evidence:` entries: a fact path (recorded under its own text) or a one-entry mapping
    `{name: path}` (recorded under `name`, e.g. `{runtime_mode: derived.runtime_mode}`)."""
    entries = item.get("evidence", [])
    entries = [entries] if isinstance(entries, str) else entries
    if not isinstance(entries, list):
        raise RuleFileError(rule_id, "evidence", "expected a list of fact paths or {name: path} mappings")
    paths = []
    for entry in entries:
        if isinstance(entry, dict) and len(entry) == 1:
            ((name, text),) = entry.items()
            if not isinstance(name, str) or not name.strip():
                raise RuleFileError(
                    rule_id, "evidence", f"an evidence name must be a non-empty string, got {name!r}"
                )
            parsed = parse_path(text, frozenset(), "evidence")
            paths.append(FactPath(name, parsed.binding, parsed.keys))
        elif isinstance(entry, str) and entry.strip():
            paths.append(parse_path(entry, frozenset(), "evidence"))
        else:
            raise RuleFileError(
                rule_id, "evidence", f"expected a fact path or a {{name: path}} mapping, got {entry!r}"
            )
    return paths
