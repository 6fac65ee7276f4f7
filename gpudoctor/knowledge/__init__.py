"""The knowledge base: rule files and matrix tables under `rules/`, validated on load.

`load_rules(extra)` returns the shipped rules plus site-local ones (`--rules`,
$GPUDOCTOR_RULES); a site rule may replace a shipped one only with
`override: true`. The matrix tables are typed look-ups in
`gpudoctor.knowledge.matrix`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from gpudoctor.errors import BadInput
from gpudoctor.knowledge.loader import load_kind, register_kind, shipped_root
from gpudoctor.knowledge.rulefile import Rule

__all__ = ["Rule", "RuleSet", "load_rules", "register_kind", "shipped_root"]


@dataclass
class RuleSet:
    rules: list[Rule] = field(default_factory=list)
    by_id: dict[str, Rule] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Rule]:
        return iter(self.rules)

    def __len__(self) -> int:
        return len(self.rules)

    def add(self, rule: Rule, *, site: bool) -> None:
        existing = self.by_id.get(rule.id)
        if existing is not None:
            if not (site and rule.override):
                raise BadInput(
                    f"{rule.file}: rule {rule.id}: field id: already defined in {existing.file}"
                    + (" (set `override: true` to replace it)" if site else "")
                )
            self.rules[self.rules.index(existing)] = rule
        else:
            self.rules.append(rule)
        self.by_id[rule.id] = rule


_RULESETS: dict[tuple[str, ...], RuleSet] = {}


def load_rules(extra: Sequence[str | os.PathLike[str]] = ()) -> RuleSet:
    """Shipped rules + site-local rule files/dirs; bad files raise BadInput (exit 65)."""
    shipped = load_kind("rules", [shipped_root()])
    site = load_kind("rules", extra) if extra else []
    # Compiled rules are cached per file by the loader; the set is rebuilt only
    # when a file changed (its items list object is then a new one).
    key = tuple(str(id(items)) for _, items in shipped + site)
    if key in _RULESETS:
        return _RULESETS[key]
    ruleset = RuleSet()
    shipped_files = {path for path, _ in shipped}
    for _path, items in shipped:
        for rule in items:
            ruleset.add(rule, site=False)
    for path, items in site:
        if path in shipped_files:
            continue  # the shipped directory named again
        for rule in items:
            ruleset.add(rule, site=True)
    _RULESETS[key] = ruleset
    return ruleset
