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
from typing import Any, Generic, Protocol, TypeVar

from gpudoctor.errors import BadInput
from gpudoctor.knowledge.loader import load_kind, shipped_root
from gpudoctor.knowledge.rulefile import Rule

__all__ = ["ItemSet", "Rule", "RuleSet", "load_rules", "shipped_root"]

LoadedFiles = list[tuple[str, list[Any]]]  # (file, its items) as load_kind returns them


class Overridable(Protocol):
    id: str
    file: str
    override: bool


T = TypeVar("T", bound=Overridable)


@dataclass
class ItemSet(Generic[T]):
    """Rules or signatures by id: the shipped ones, then site-local ones, which may replace a
    shipped one only with `override: true`."""

    items: list[T] = field(default_factory=list)
    by_id: dict[str, T] = field(default_factory=dict)

    def __iter__(self) -> Iterator[T]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def add(self, item: T, *, site: bool) -> None:
        existing = self.by_id.get(item.id)
        if existing is not None:
            if not (site and item.override):
                raise BadInput(
                    f"{item.file}: rule {item.id}: field id: already defined in {existing.file}"
                    + (" (set `override: true` to replace it)" if site else "")
                )
            self.items[self.items.index(existing)] = item
        else:
            self.items.append(item)
        self.by_id[item.id] = item

    def add_files(self, shipped: LoadedFiles, site: LoadedFiles) -> None:
        """Every item of the shipped files, then of the site files (a shipped file named again
        among the site ones is not read twice)."""
        shipped_files = {path for path, _ in shipped}
        for _path, items in shipped:
            for item in items:
                self.add(item, site=False)
        for path, items in site:
            if path not in shipped_files:
                for item in items:
                    self.add(item, site=True)


class RuleSet(ItemSet[Rule]):
    @property
    def rules(self) -> list[Rule]:
        return self.items


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
    ruleset.add_files(shipped, site)
    _RULESETS[key] = ruleset
    return ruleset
