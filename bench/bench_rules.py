"""Time the rules engine: all shipped rules on one node, and on 10,000 nodes.

Nodes are the real-XML-derived fixtures (fixtures/facts/nodes/) cycled, with
every fourth one widened to 8 GPUs and 28 GPU pairs so quantifiers work.
Prints the evaluation time (contexts prebuilt) and the time including
build_context (derived facts), which is what `gpudoctor fleet` pays per node.

    .venv/bin/python bench/bench_rules.py [--nodes 10000]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gpudoctor.derive import build_context  # noqa: E402
from gpudoctor.engine import evaluate  # noqa: E402
from gpudoctor.facts import NodeFacts  # noqa: E402
from gpudoctor.knowledge import load_rules  # noqa: E402
from gpudoctor.pipeline import diagnose  # noqa: E402

NODES = REPO / "fixtures" / "facts" / "nodes"


def _widened(data: dict[str, Any]) -> dict[str, Any]:
    data = copy.deepcopy(data)
    template = data["gpus"][0]
    data["gpus"] = [{**copy.deepcopy(template), "index": i} for i in range(8)]
    data["topology"]["pairs"] = [
        {"gpu_a": a, "gpu_b": b, "p2p_read": "ok", "p2p_write": "ok", "nvlink_count": 12, "acs_bridges": []}
        for a in range(8)
        for b in range(a + 1, 8)
    ]
    return data


def _nodes(count: int) -> list[NodeFacts]:
    bases = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(NODES.glob("*.json"))]
    result = []
    for i in range(count):
        data = bases[i % len(bases)]
        result.append(NodeFacts.from_dict(_widened(data) if i % 4 == 0 else data))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=10_000)
    args = parser.parse_args()

    started = time.perf_counter()
    ruleset = load_rules()
    load_s = time.perf_counter() - started
    nodes = _nodes(args.nodes)
    one = build_context(nodes[0])

    samples = []
    for _ in range(200):
        t0 = time.perf_counter()
        evaluate(ruleset, one)
        samples.append(time.perf_counter() - t0)
    one_ms = statistics.median(samples) * 1000

    contexts = [build_context(n) for n in nodes]
    t0 = time.perf_counter()
    findings = sum(len(evaluate(ruleset, c)) for c in contexts)
    many_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    for n in nodes:
        evaluate(ruleset, build_context(n))
    with_derive_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    for n in nodes:
        diagnose(n)
    diagnose_s = time.perf_counter() - t0

    print(f"rules: {len(ruleset)} (load + compile {load_s * 1000:.1f} ms, first call in this process)")
    print(f"one node (8 GPUs, 28 pairs), all rules: {one_ms:.3f} ms median of 200 (target < 5 ms)")
    print(f"{args.nodes} nodes, all rules: {many_s:.3f} s ({findings} findings) (target < 5 s)")
    print(f"{args.nodes} nodes, build_context + all rules: {with_derive_s:.3f} s")
    print(
        f"{args.nodes} nodes, pipeline.diagnose (rules cache check + derive + rules + report): {diagnose_s:.3f} s"
    )


if __name__ == "__main__":
    main()
