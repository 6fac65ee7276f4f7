"""A held-out-style fleet: every real nvidia-smi fixture scanned, replicated, 1% corrupted."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

from gpudoctor.fleet.build import build_fleet
from tests.support.fleet import NVIDIA_SMI, node_report

COPIES = 40
# Ways a report file goes bad on a real fleet: a full disk, a killed writer, a stray file.
CORRUPTIONS = (
    lambda text, rng: text[: rng.randrange(1, len(text) - 2)],
    lambda text, rng: "",
    lambda text, rng: text[: len(text) // 3] + "\x00" * 64 + text[len(text) // 3 :],
    lambda text, rng: json.dumps({"schema_version": "3.1", "node": {}}),
    lambda text, rng: "<html><body>502 Bad Gateway</body></html>",
)


def test_every_node_counted_exactly_the_corrupted_listed_and_classes_per_source(tmp_path: Path) -> None:
    rng = random.Random(6)
    names = sorted(p.stem for p in NVIDIA_SMI.glob("*.xml"))
    corrupted: set[str] = set()
    expected_nodes: Counter[str] = Counter()
    number = 0
    for name in names:
        for _ in range(COPIES):
            hostname = f"node-{number:05d}"
            text = json.dumps(node_report(name, hostname), indent=2)
            path = tmp_path / f"{hostname}.json"
            if number % 100 == 37:
                text = CORRUPTIONS[len(corrupted) % len(CORRUPTIONS)](text, rng)
                corrupted.add(str(path))
            else:
                expected_nodes[name] += 1
            path.write_text(text, encoding="utf-8")
            number += 1
    document = build_fleet([str(tmp_path)])
    assert document["nodes_total"] == len(names) * COPIES - len(corrupted)
    assert {item["path"] for item in document["invalid_reports"]} == corrupted
    assert len(corrupted) == len(names) * COPIES // 100
    # The fixtures are 15 different machines (model, driver): one class each, with its node count.
    assert len(document["classes"]) == len(names)
    assert sorted(c["nodes"] for c in document["classes"]) == sorted(expected_nodes.values())
