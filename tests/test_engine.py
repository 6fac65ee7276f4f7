"""The condition language and the engine's unknown / evidence / subjects handling."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpudoctor.derive import build_context
from gpudoctor.engine import evaluate, evaluate_condition
from gpudoctor.facts import DriverFacts, GpuFacts, GpuPairFacts, NodeFacts, TopologyFacts, mark_failed
from gpudoctor.knowledge.conditions import ConditionError, compile_condition
from gpudoctor.knowledge.rulefile import compile_rule


def _node() -> NodeFacts:
    return NodeFacts(
        driver=DriverFacts(present=True, version="535.54.03", branch=535, cuda_version="12.2"),
        gpus=[
            GpuFacts(
                index=0,
                name="NVIDIA A800-SXM4-80GB",
                architecture="ampere",
                compute_capability="8.0",
                ecc_mode="disabled",
            ),
            GpuFacts(
                index=1,
                name="NVIDIA B200",
                architecture="blackwell",
                compute_capability="10.0",
                ecc_mode=None,
                unknown={"ecc_mode": "NVML: Not Supported"},
            ),
        ],
        topology=TopologyFacts(pairs=[GpuPairFacts(gpu_a=0, gpu_b=1, p2p_read="chipset_not_supported")]),
    )


@pytest.fixture
def ctx() -> dict[str, Any]:
    return build_context(_node())


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"driver.branch": {"lt": 570}}, True),
        ({"driver.branch": {"ge": 570}}, False),
        ({"driver.version": {"version": ">=535.54,<536"}}, True),
        ({"driver.version": {"gt": "535.104.05"}}, False),
        ({"driver.cuda_version": {"lt": "12.10"}}, True),
        ({"driver.cuda_version": {"version": ">=12.2"}}, True),
        ({"driver.cuda_version": "12.2"}, True),
        ({"driver.present": True}, True),
        ({"driver.kernel_module": {"is_null": True}}, True),
        ({"driver.kernel_module": "open"}, None),
        ({"any_gpu": {"gpu.name": {"glob": "*a800*"}}}, True),
        ({"any_gpu": {"gpu.name": {"matches": r"\bH(100|800)\b"}}}, False),
        ({"all_gpus": {"gpu.architecture": {"in": ["ampere", "blackwell"]}}}, True),
        ({"all_gpus": {"gpu.ecc_mode": "enabled"}}, False),
        ({"any_gpu": {"gpu.ecc_mode": "enabled"}}, None),
        ({"any_gpu": {"where": {"gpu.ecc_mode": "enabled"}, "test": {"gpu.name": {"glob": "*"}}}}, False),
        ({"any_pair": {"pair.p2p_read": {"ne": "ok"}}}, True),
        ({"gpus": {"empty": False}}, True),
        ({"not": {"driver.branch": {"lt": 570}}}, False),
        ({"not": {"driver.kernel_module": "open"}}, None),
        ({"any": [{"driver.kernel_module": "open"}, {"driver.branch": 535}]}, True),
        ({"any": [{"driver.kernel_module": "open"}, {"driver.branch": 1}]}, None),
        ({"all": [{"driver.kernel_module": "open"}, {"driver.branch": 1}]}, False),
        ({"all": [{"driver.kernel_module": "open"}, {"driver.branch": 535}]}, None),
        ({"driver.cuda_version": {"lt": {"path": "driver.version"}}}, True),
        ({"driver.cuda_version": {"lt": {"path": "driver.kernel_module_version"}}}, None),
        ({"any_gpu": {"gpu.compute_capability": {"gt": {"path": "gpus[0].compute_capability"}}}}, True),
        ({"image.cuda_version": {"version": ">=13"}}, None),
        ({"any_item": {"in": "gpus", "as": "g", "test": {"g.index": 1}}}, True),
        ([{"driver.branch": 535}, {"driver.present": True}], True),
    ],
)
def test_condition_results(ctx: dict[str, Any], condition: Any, expected: bool | None) -> None:
    result, _, missing = evaluate_condition(condition, ctx)
    assert result is expected
    assert bool(missing) is (expected is None)


def test_missing_facts_carry_reasons_and_concrete_paths(ctx: dict[str, Any]) -> None:
    result, evidence, missing = evaluate_condition({"any_gpu": {"gpu.ecc_mode": "enabled"}}, ctx)
    assert result is None
    assert missing == ["gpus[1].ecc_mode"]
    assert evidence["gpus[1].ecc_mode"] is None


def _rule(**fields: Any) -> Any:
    base = {
        "id": "GD-TST-001",
        "title": "test rule",
        "severity": "fail",
        "applies_to": "node",
        "message": "{gpu.name} on {driver.version} ({subjects})",
        "fix": "upgrade to {derived.nothing_here|driver.branch}",
        "refs": ["https://example.org/doc"],
        "source": "vendor documentation",
    }
    base.update(fields)
    return compile_rule(base, Path("test.yaml"), 0)


def test_fired_rule_has_evidence_subjects_and_filled_templates(ctx: dict[str, Any]) -> None:
    rule = _rule(when={"any_gpu": {"gpu.architecture": "blackwell"}}, test={"driver.branch": {"lt": 570}})
    (finding,) = evaluate([rule], ctx)
    assert finding.severity == "fail"
    assert finding.subjects == ["1"]
    assert finding.evidence == {"gpus[1].architecture": "blackwell", "driver.branch": 535}
    assert finding.message == "NVIDIA B200 on 535.54.03 (1)"
    assert finding.fix == "upgrade to 535"
    assert finding.missing_facts == []


def test_unknown_test_gives_unknown_finding_with_reason(ctx: dict[str, Any]) -> None:
    rule = _rule(test={"any_gpu": {"gpu.ecc_mode": "enabled"}})
    (finding,) = evaluate([rule], ctx)
    assert finding.severity == "unknown"
    assert finding.missing_facts == ["gpus[1].ecc_mode: NVML: Not Supported"]
    assert "gpus[1].ecc_mode (NVML: Not Supported)" in finding.message


def test_unknown_guard_does_not_apply_unless_declared(ctx: dict[str, Any]) -> None:
    guard = {"driver.kernel_module": "proprietary"}
    assert evaluate([_rule(when=guard, test={"driver.branch": 535})], ctx) == []
    (finding,) = evaluate([_rule(when=guard, when_unknown="unknown", test={"driver.branch": 535})], ctx)
    assert finding.severity == "unknown"
    assert finding.missing_facts == ["driver.kernel_module: not reported"]


def test_false_guard_or_false_test_gives_nothing(ctx: dict[str, Any]) -> None:
    assert evaluate([_rule(when={"driver.branch": 1}, test={"driver.branch": 535})], ctx) == []
    assert evaluate([_rule(test={"driver.branch": 1})], ctx) == []


def test_template_with_missing_field_does_not_crash(ctx: dict[str, Any]) -> None:
    rule = _rule(test={"driver.branch": 535}, message="{image.platform.architecture} vs {host.cpu_arch}")
    (finding,) = evaluate([rule], ctx)
    assert finding.message == "unknown vs unknown"


def test_not_of_all_gpus_reports_the_counterexamples(ctx: dict[str, Any]) -> None:
    rule = _rule(test={"not": {"all_gpus": {"gpu.architecture": "ampere"}}})
    (finding,) = evaluate([rule], ctx)
    assert finding.subjects == ["1"]
    assert finding.message.startswith("NVIDIA B200 on")


def test_applies_to_filters_rules(ctx: dict[str, Any]) -> None:
    rule = _rule(applies_to="node+image", test={"driver.branch": 535})
    assert evaluate([rule], ctx, applies_to="node") == []
    assert len(evaluate([rule], ctx, applies_to="node+image")) == 1


def test_findings_sorted_worst_first(ctx: dict[str, Any]) -> None:
    rules = [
        _rule(id="GD-TST-001", severity="info", test={"driver.branch": 535}),
        _rule(id="GD-TST-002", severity="fail", test={"driver.branch": 535}),
        _rule(id="GD-TST-003", severity="warn", test={"driver.kernel_module": "open"}),
    ]
    assert [(f.rule_id, f.severity) for f in evaluate(rules, ctx)] == [
        ("GD-TST-002", "fail"),
        ("GD-TST-003", "unknown"),
        ("GD-TST-001", "info"),
    ]


@pytest.mark.parametrize(
    ("condition", "where"),
    [
        ({"driver.branch": {"lt_x": 1}}, "test.driver.branch.lt_x"),
        ({"driver.version": {"version": ">>1"}}, "test.driver.version.version"),
        ({"all": []}, "test.all"),
        ({"any_gpu": {"gpu.name": {"matches": "("}}}, "test.any_gpu.gpu.name.matches"),
        ({"driver..x": 1}, "test.driver..x"),
        ({"any_item": {"in": "gpus"}}, "test.any_item"),
        ({"gpus": {"in": "x"}}, "test.gpus.in"),
        ({"driver.cuda_version": {"lt": 12.10}}, "test.driver.cuda_version.lt"),
        ({"driver.cuda_version": {"in": ["12.2", 12.4]}}, "test.driver.cuda_version.in"),
        ({"driver.version": None}, "test.driver.version"),
        ({"driver.version": {"eq": None}}, "test.driver.version.eq"),
        ({"gpu.architecture": ["hopper"]}, "test.gpu.architecture"),
    ],
)
def test_bad_conditions_name_the_field(condition: Any, where: str) -> None:
    with pytest.raises(ConditionError) as info:
        compile_condition(condition, "test")
    assert info.value.where == where


# --- three-valued logic laws, on random facts -----------------------------------------

_BRANCHES = st.one_of(st.none(), st.integers(min_value=300, max_value=700))


def _leaf_for(threshold: int) -> dict[str, Any]:
    return {"derived.driver_branch": {"lt": threshold}}


@settings(max_examples=200, deadline=None)
@given(branch=_BRANCHES, a=st.integers(300, 700), b=st.integers(300, 700))
def test_kleene_laws(branch: int | None, a: int, b: int) -> None:
    ctx = {"derived": {"driver_branch": branch, "unknown": {}}}
    x, y = _leaf_for(a), _leaf_for(b)

    def value(cond: Any) -> bool | None:
        return evaluate_condition(cond, ctx)[0]

    vx = value(x)
    assert value({"not": {"not": x}}) is vx
    assert value({"not": {"all": [x, y]}}) is value({"any": [{"not": x}, {"not": y}]})
    if branch is None:
        assert vx is None and value({"any": [x, y]}) is None
    else:
        assert vx is (branch < a)
        assert value({"all": [x, y]}) is (branch < a and branch < b)
        assert value({"any": [x, y]}) is (branch < a or branch < b)


def test_one_node_evaluates_well_under_budget() -> None:
    from gpudoctor.knowledge import load_rules

    node = _node()
    node.gpus = [GpuFacts(index=i, name="NVIDIA H100 80GB HBM3", architecture="hopper") for i in range(8)]
    node.topology.pairs = [
        GpuPairFacts(gpu_a=a, gpu_b=b, p2p_read="ok") for a in range(8) for b in range(a + 1, 8)
    ]
    context = build_context(node)
    ruleset = load_rules()
    timings = []
    for _ in range(30):
        started = time.perf_counter()
        evaluate(ruleset, context)
        timings.append(time.perf_counter() - started)
    assert statistics.median(timings) < 0.005  # the bench target: all rules on one node < 5 ms


# --- missing is never ok: facts a probe failed to collect ---------------------------------

_ECC_GUARDED = {
    "any_gpu": {
        "where": {"gpu.ecc_mode": "enabled", "gpu.ecc_errors_uncorrectable_volatile": {"is_null": False}},
        "test": {"gpu.ecc_errors_uncorrectable_volatile": {"gt": 0}},
    }
}


def _ecc_node(counter: int | None, failed: bool) -> NodeFacts:
    node = _node()
    for gpu in node.gpus:
        gpu.ecc_mode, gpu.ecc_errors_uncorrectable_volatile = "enabled", 0
    gpu = node.gpus[1]
    gpu.ecc_errors_uncorrectable_volatile = counter
    if failed:
        mark_failed(gpu, "ecc_errors_uncorrectable_volatile", "NVML: GpuIsLost")
    elif counter is None:
        gpu.unknown["ecc_errors_uncorrectable_volatile"] = "NVML: NotSupported"
    return node


def test_a_guard_that_reads_a_failed_fact_makes_the_rule_unknown_not_skipped() -> None:
    rule = _rule(test=_ECC_GUARDED, message="ECC errors")
    assert evaluate([rule], build_context(_ecc_node(None, failed=False))) == []  # an answer: skipped
    (finding,) = evaluate([rule], build_context(_ecc_node(None, failed=True)))
    assert finding.severity == "unknown"
    assert finding.missing_facts == ["gpus[1].ecc_errors_uncorrectable_volatile: NVML: GpuIsLost"]
    (finding,) = evaluate([rule], build_context(_ecc_node(5, failed=False)))
    assert finding.severity == "fail"


@pytest.mark.parametrize(
    ("when", "test"),
    [
        ({"gpus[1].ecc_errors_uncorrectable_volatile": {"is_null": False}}, {"driver.branch": {"lt": 500}}),
        (None, {"gpus[1].ecc_errors_uncorrectable_volatile": {"is_null": True}}),
        (None, {"any_gpu": {"gpu.ecc_errors_uncorrectable_volatile": {"gt": 0}}}),
        (None, {"not": {"gpus[1].ecc_errors_uncorrectable_volatile": {"ge": 0}}}),
    ],
    ids=["when-is-null", "test-is-null", "quantified", "negated"],
)
def test_no_rule_passes_or_skips_over_a_failed_fact(when: Any, test: Any) -> None:
    rule = _rule(test=test, **({"when": when} if when else {}))
    (finding,) = evaluate([rule], build_context(_ecc_node(None, failed=True)))
    assert finding.severity == "unknown"
    assert "NVML: GpuIsLost" in finding.missing_facts[0]


def test_a_failed_fact_another_rule_part_decides_does_not_matter() -> None:
    # any: a true part settles it whatever the failed fact was; all: a false part does.
    fired = _rule(
        test={"any": [{"driver.branch": 535}, {"gpus[1].ecc_errors_uncorrectable_volatile": {"gt": 0}}]}
    )
    quiet = _rule(
        test={"all": [{"driver.branch": 1}, {"gpus[1].ecc_errors_uncorrectable_volatile": {"gt": 0}}]}
    )
    context = build_context(_ecc_node(None, failed=True))
    assert [f.severity for f in evaluate([fired], context)] == ["fail"]
    assert evaluate([quiet], context) == []


def test_a_failed_gpu_list_is_unknown_not_empty() -> None:
    node = _node()
    node.gpus = []
    mark_failed(node, "gpus", "NVML: Unknown (device count)")
    rule = _rule(test={"any_gpu": {"gpu.fallen_off_bus": True}})
    (finding,) = evaluate([rule], build_context(node))
    assert finding.severity == "unknown" and finding.missing_facts == ["gpus: NVML: Unknown (device count)"]
