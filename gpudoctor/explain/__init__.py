"""`gpudoctor explain`: name the cause of a GPU stack failure from its log.

Signatures live in `rules/signatures/*.yaml` (`kind: signatures`, validated by
`gpudoctor.explain.signatures`); `matcher` makes one streaming pass over the
log; `correlate` sharpens each match with the node's facts; `report` builds
the JSON document and `render` the table.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from gpudoctor.explain.catalog import CatalogEntry
from gpudoctor.explain.signatures import Signature
from gpudoctor.knowledge import ItemSet
from gpudoctor.knowledge.loader import load_kind, shipped_root

__all__ = ["Signature", "SignatureSet", "load_signatures"]


class SignatureSet(ItemSet[Signature]):
    @property
    def signatures(self) -> list[Signature]:
        return self.items

    def link_catalogs(self) -> None:
        """A hand-written signature with a catalog entry's id replaces that entry."""
        for signature in self.signatures:
            if signature.catalog is None:
                continue
            for entry in signature.catalog.entries:
                owner = self.by_id.get(entry.id)
                entry.overridden_by = owner.id if owner is not None and owner.catalog is None else None

    def find(self, item_id: str) -> tuple[Signature, CatalogEntry | None] | None:
        """The signature, or the catalog family and entry, with this id."""
        wanted = item_id.upper()
        signature = self.by_id.get(wanted)
        if signature is not None:
            return signature, None
        for family in self.signatures:
            if family.catalog is not None and wanted in family.catalog.by_id:
                return family, family.catalog.by_id[wanted]
        return None


def load_signatures(extra: Sequence[str | os.PathLike[str]] = ()) -> SignatureSet:
    """Shipped signatures + site-local files/dirs; bad files raise BadInput (exit 65)."""
    shipped = load_kind("signatures", [shipped_root()])
    site = load_kind("signatures", list(extra)) if extra else []
    result = SignatureSet()
    result.add_files(shipped, site)
    result.link_catalogs()
    return result


def _entry_root(entry: CatalogEntry) -> dict[str, Any]:
    return {"entry": entry.fields(), "captured": {}}


def summaries(signatures: SignatureSet) -> list[dict[str, Any]]:
    """`rules list` rows for every signature and catalog entry (applies to: log)."""
    from gpudoctor.knowledge.conditions import Trace
    from gpudoctor.knowledge.template import render

    rows: list[dict[str, Any]] = []
    for signature in signatures.signatures:
        base = {"applies_to": "log", "refs": list(signature.refs), "source": signature.source}
        if signature.catalog is None:
            rows.append(
                {
                    "id": signature.id,
                    "title": signature.title,
                    "severity": signature.severity,
                    "fix": signature.fix,
                    **base,
                }
            )
            continue
        for entry in signature.catalog.entries:
            if entry.overridden_by is not None:
                continue  # the hand-written signature with this id is listed instead
            rows.append(
                {
                    "id": entry.id,
                    "title": f"{signature.title} {entry.name} ({entry.code})",
                    "severity": entry.severity,
                    "fix": render(signature.fix, _entry_root(entry), Trace()),
                    **base,
                }
            )
    return [
        {k: row[k] for k in ("id", "title", "severity", "applies_to", "fix", "refs", "source")}
        for row in rows
    ]


def show_document(signatures: SignatureSet, item_id: str) -> tuple[str, dict[str, Any]] | None:
    """(file, document) that `rules show ID` prints for a signature or a catalog entry, or None."""
    from gpudoctor.knowledge.conditions import Trace
    from gpudoctor.knowledge.template import render

    found = signatures.find(item_id)
    if found is None:
        return None
    signature, entry = found
    if entry is None:
        return signature.file, signature.raw
    assert signature.catalog is not None
    root = _entry_root(entry)
    document = {
        **entry.document(),
        "family": signature.catalog.family,
        "title": f"{signature.title} {entry.name} ({entry.code})",
        "cause": render(signature.cause, root, Trace()),
        "fix": render(signature.fix, root, Trace()),
        "refs": list(signature.refs),
        "source": signature.source,
        # A name recognizer is the alternation of every entry name: shown by what it matches.
        "recognizers": [
            r
            if r.get("key") != "name"
            else {"regex": "\\b(?P<name>any entry name or alias)\\b", "key": "name"}
            for r in signature.raw.get("recognizers", [])
        ],
    }
    return signature.file, document
