"""Union-filesystem rules over an image's layers, applied after the scan.

Layers are streamed in archive order, which need not be the image's layer
order, so the scan records which layer each binary and each whiteout came
from; `resolve` then keeps, for every path, only the copy from the topmost
layer and drops what a later layer deleted (`.wh.<name>`) or hid behind an
opaque directory (`.wh..wh..opq`). Rules: OCI image spec, "Representing
Changes" / whiteouts (https://github.com/opencontainers/image-spec/blob/main/layer.md#whiteouts).
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass, field

from gpudoctor.facts import BinaryFacts

WHITEOUT_PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"


@dataclass
class LayerRecord:
    order: list[str] = field(default_factory=list)  # layer member names, bottom first
    binary_layer: dict[int, str] = field(default_factory=dict)  # id(binary) -> layer
    whiteouts: list[tuple[str, str, bool]] = field(default_factory=list)  # (layer, path, opaque)

    def note_manifest(self, text: str) -> None:
        """docker save's manifest.json: [{"Layers": ["<id>/layer.tar" | "blobs/sha256/<hex>", ...]}]."""
        try:
            document = json.loads(text)
        except json.JSONDecodeError:
            return
        if isinstance(document, list) and len(document) == 1 and isinstance(document[0], dict):
            layers = document[0].get("Layers")
            if isinstance(layers, list) and all(isinstance(layer, str) for layer in layers):
                self.order = [posixpath.normpath(layer) for layer in layers]

    def note_whiteout(self, layer: str, path: str) -> bool:
        """Record `path` if it is a whiteout marker; True when it was one."""
        directory, base = posixpath.split(path)
        if base == OPAQUE:
            self.whiteouts.append((layer, directory, True))
            return True
        if base.startswith(WHITEOUT_PREFIX):
            self.whiteouts.append((layer, posixpath.join(directory, base[len(WHITEOUT_PREFIX) :]), False))
            return True
        return False

    def resolve(self, binaries: list[BinaryFacts]) -> list[BinaryFacts]:
        rank = {layer: index for index, layer in enumerate(self.order)}
        if len(rank) < 2:
            return binaries
        topmost: dict[str, int] = {}
        for binary in binaries:
            level = rank.get(self.binary_layer.get(id(binary), ""), -1)
            topmost[binary.path] = max(topmost.get(binary.path, -1), level)
        kept = []
        for binary in binaries:
            level = rank.get(self.binary_layer.get(id(binary), ""), -1)
            if level < 0:
                kept.append(binary)  # not in a known layer: nothing to decide
            elif level == topmost[binary.path] and not self._deleted_above(binary.path, level, rank):
                kept.append(binary)
        return kept

    def _deleted_above(self, path: str, level: int, rank: dict[str, int]) -> bool:
        for layer, target, opaque in self.whiteouts:
            if rank.get(layer, -1) <= level:
                continue
            if path == target and not opaque:
                return True
            if path.startswith(target.rstrip("/") + "/"):
                return True
        return False
