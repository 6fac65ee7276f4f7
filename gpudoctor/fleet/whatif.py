"""`fleet --what-if CHANGE`: re-evaluate node classes on hypothetical facts, diff against today.

A change is `KIND=VALUE[@class~TEXT]`:

  driver=VERSION        install another driver (facts derived in driverfacts.py)
  cuda-compat=VERSION   the forward-compatibility package cuda-compat-X-Y in the images
                        (only images whose CUDA major.minor is at most VERSION can use it), as
                        NV_CUDA_COMPAT_PACKAGE: derive.image then knows it is there (GD-CUDA-008
                        instead of GD-CUDA-003 where the GPU and branch are eligible)
  toolkit=VERSION       NVIDIA Container Toolkit version on the nodes
  runtime-mode=MODE     the nvidia runtime's configured mode (auto, legacy, csv, cdi, jit-cdi),
                        resolved as the toolkit does ("auto" per the node's toolkit release)
  @class~TEXT           only classes whose key contains TEXT (case-insensitive)

Nothing is special-cased: a change rewrites facts, and the same rules engine evaluates the
rewritten node (node rules) and node + image (image rules) on each evaluation group's
representative node, as the matrix does. Today's class findings are the ones the node
reports carry; the change's effect is applied as a delta per evaluation group (the rules
that fire on the representative after the change but not before appear on the group's
nodes; those that stop firing disappear), so per-node findings that the change does not
touch (a GPU's ECC errors) stay as reported.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gpudoctor.errors import UsageError
from gpudoctor.exitcodes import worst
from gpudoctor.facts import ImageFacts, NodeFacts
from gpudoctor.findings import Finding
from gpudoctor.fleet.aggregate import NodeClass
from gpudoctor.fleet.driverfacts import installed_driver, valid_driver_version
from gpudoctor.fleet.matrix import FleetImage, MatrixEvaluator, finding_brief
from gpudoctor.runtime_mode import MODES, refresh_mode
from gpudoctor.versions import major_minor as _major_minor
from gpudoctor.versions import parse_version

KINDS = ("driver", "cuda-compat", "toolkit", "runtime-mode")
SYNTAX = "KIND=VALUE[@class~TEXT] with KIND one of " + ", ".join(KINDS)


@dataclass(frozen=True)
class Change:
    kind: str
    value: str
    scope: str | None = None  # substring of the class key, lower-cased
    text: str = ""

    def applies_to(self, class_key: str) -> bool:
        return self.scope is None or self.scope in class_key.lower()

    def unscoped(self) -> str:
        return f"{self.kind}={self.value}"


def parse_change(text: str) -> Change:
    """'driver=650.12@class~A800' -> Change; UsageError (64) naming the syntax otherwise."""
    body, at, scope = text.partition("@")
    kind, equals, value = body.partition("=")
    kind, value = kind.strip().lower(), value.strip()
    if not equals or kind not in KINDS or not value:
        raise UsageError(f"--what-if {text!r}: expected {SYNTAX}")
    if at:
        name, tilde, pattern = scope.partition("~")
        if name.strip() != "class" or not tilde or not pattern.strip():
            raise UsageError(f"--what-if {text!r}: a scope is @class~TEXT (TEXT: part of a class key)")
    if kind == "driver" and not valid_driver_version(value):
        raise UsageError(f"--what-if {text!r}: driver version like 580.95.05, 650.12 or a branch (620)")
    if kind == "runtime-mode" and value.lower() not in ("auto", *MODES):
        raise UsageError(f"--what-if {text!r}: runtime-mode is one of auto, {', '.join(MODES)}")
    if kind in ("cuda-compat", "toolkit") and parse_version(value) is None:
        raise UsageError(f"--what-if {text!r}: {value!r} is not a version")
    return Change(kind, value, pattern.strip().lower() if at else None, text)


def changed_node(node: NodeFacts, changes: Sequence[Change]) -> tuple[NodeFacts, dict[str, Any], list[str]]:
    """(the node with the changes applied, the facts changed, notes on assumptions)."""
    data = node.to_dict()
    facts: dict[str, Any] = {}
    notes: list[str] = []
    for change in changes:
        if change.kind == "driver":
            data["driver"], driver_notes = installed_driver(data["driver"], data["gpus"], change.value)
            notes += driver_notes
            for key in ("version", "branch", "cuda_version", "kernel_module"):
                facts[f"driver.{key}"] = data["driver"].get(key)
        elif change.kind == "toolkit":
            runtime = data["container_runtime"]
            runtime["toolkit_version"] = change.value
            runtime.get("unknown", {}).pop("toolkit_version", None)
            facts["container_runtime.toolkit_version"] = change.value
        elif change.kind == "runtime-mode":
            data["container_runtime"]["mode_configured"] = change.value.lower()
            facts["container_runtime.mode_configured"] = change.value.lower()
    changed = NodeFacts.from_dict(data)
    rewritten = {"container_runtime.toolkit_version", "container_runtime.mode_configured"}
    if rewritten & facts.keys() and changed.container_runtime.mode_configured is not None:
        # mode = "auto" resolves per toolkit release (legacy before v1.18.0, jit-cdi from it).

        refresh_mode(changed.container_runtime)
        facts["container_runtime.mode"] = changed.container_runtime.mode
    return changed, facts, notes


def changed_image(image: ImageFacts, changes: Sequence[Change]) -> tuple[ImageFacts, list[str]]:
    """The image with cuda-compat installed where a change says so and its CUDA allows it."""
    notes: list[str] = []
    for change in changes:
        if change.kind != "cuda-compat":
            continue
        package, image_cuda = _major_minor(change.value), _major_minor(image.cuda_version)
        if package is None or image_cuda is None or image_cuda > package:
            notes.append(
                f"{image.reference}: cuda-compat {change.value} cannot serve its CUDA "
                f"{image.cuda_version or '(unknown)'}; not applied"
            )
            continue
        data = image.to_dict()
        # The variable official CUDA images set when they carry the package (what derive.image reads).
        data["env"]["NV_CUDA_COMPAT_PACKAGE"] = f"cuda-compat-{package[0]}-{package[1]}"
        image = ImageFacts.from_dict(data)
    return image, notes


class Scenario:
    """One set of changes evaluated on node classes; results cached per evaluation group."""

    def __init__(self, evaluator: MatrixEvaluator, changes: Sequence[Change]) -> None:
        self.evaluator = evaluator
        self.changes = tuple(changes)
        self._nodes: dict[tuple[str, tuple[Change, ...]], tuple[NodeFacts, dict[str, Any], list[str]]] = {}
        self._node_findings: dict[tuple[str, tuple[Change, ...]], list[Finding]] = {}
        self._images: dict[tuple[int, tuple[Change, ...]], tuple[ImageFacts, list[str]]] = {}
        self._image_findings: dict[tuple[int, str, tuple[Change, ...]], list[Finding]] = {}

    def _node(self, path: str, changes: tuple[Change, ...]) -> tuple[NodeFacts, dict[str, Any], list[str]]:
        key = (path, changes)
        if key not in self._nodes:
            node = self.evaluator.node(path)
            self._nodes[key] = changed_node(node, changes) if changes else (node, {}, [])
        return self._nodes[key]

    def _image(self, image: ImageFacts, changes: tuple[Change, ...]) -> tuple[ImageFacts, list[str]]:
        key = (id(image), changes)
        if key not in self._images:
            self._images[key] = changed_image(image, changes) if changes else (image, [])
        return self._images[key]

    def node_findings(self, path: str, changes: tuple[Change, ...]) -> list[Finding]:
        key = (path, changes)
        if key not in self._node_findings:
            node = self._node(path, changes)[0]
            self._node_findings[key] = self.evaluator.evaluate(node, None)
        return self._node_findings[key]

    def image_findings(
        self, image: ImageFacts, signature: str, path: str, changes: tuple[Change, ...]
    ) -> list[Finding]:
        key = (id(image), signature, changes)
        if key not in self._image_findings:
            node = self._node(path, changes)[0]
            self._image_findings[key] = self.evaluator.evaluate(node, self._image(image, changes)[0])
        return self._image_findings[key]

    def class_changes(self, node_class: NodeClass) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.applies_to(node_class.key))

    def node_side(self, node_class: NodeClass, changes: tuple[Change, ...] | None = None) -> dict[str, Any]:
        """Class findings today (from the reports) and after `changes` (default: the scenario's
        changes for this class): today's, with each evaluation group's delta."""
        if changes is None:
            changes = self.class_changes(node_class)
        after: Counter[tuple[str, str]] = Counter()
        facts: dict[str, Any] = {}
        notes: list[str] = []
        appeared_rows: dict[str, Finding] = {}
        for _signature, (count, path, recorded) in node_class.groups.items():
            if not changes:
                after.update(recorded)
                continue
            before_set = {(f.rule_id, f.severity) for f in self.node_findings(path, ())}
            after_findings = self.node_findings(path, changes)
            after_set = {(f.rule_id, f.severity) for f in after_findings}
            for key, nodes in recorded.items():
                if not (key in before_set and key not in after_set):
                    after[key] += nodes
            for finding in after_findings:
                key = (finding.rule_id, finding.severity)
                if key not in before_set and key not in recorded:
                    after[key] += count
                    appeared_rows.setdefault(finding.rule_id, finding)
            _node, group_facts, group_notes = self._node(path, changes)
            facts.update(group_facts)
            notes += group_notes
        before = node_class.findings
        return {
            "before": _side(node_class.verdict, before),
            "after": _side(worst(severity for _rule, severity in after), after),
            "changes": [c.text or c.unscoped() for c in changes],
            "facts": facts,
            "notes": list(dict.fromkeys(notes)),
            "new_findings": [finding_brief(f) for f in appeared_rows.values()],
        }

    def image_side(
        self, image: FleetImage, node_class: NodeClass, changes: tuple[Change, ...]
    ) -> dict[str, Any]:
        """Verdict and findings of one image on one class under `changes` (worst over groups)."""
        verdicts: list[str] = []
        findings: dict[str, Finding] = {}
        error = None
        notes: list[str] = []
        for signature, (_count, path, _recorded) in node_class.groups.items():
            fetched = image.for_cpu(_cpu_arch(signature))
            if fetched.facts is None:
                verdicts.append("unknown")
                error = fetched.error
                continue
            group_findings = self.image_findings(fetched.facts, signature, path, changes)
            verdicts.append(worst(f.severity for f in group_findings))
            for finding in group_findings:
                findings.setdefault(f"{finding.rule_id}:{finding.severity}", finding)
            notes += self._image(fetched.facts, changes)[1]
        side: dict[str, Any] = {
            "verdict": worst(verdicts),
            "findings": sorted({f.rule_id for f in findings.values()}),
            "details": sorted(findings.values(), key=lambda f: f.rule_id),
        }
        if error:
            side["error"] = error
        if notes:
            side["notes"] = list(dict.fromkeys(notes))
        return side


def _cpu_arch(signature: str) -> str | None:
    import json

    arch: str | None = json.loads(signature)["cpu_arch"]
    return arch


def _side(verdict: str, counts: Counter[tuple[str, str]]) -> dict[str, Any]:
    return {"verdict": verdict, "findings": sorted({rule for rule, _severity in counts})}


def _public(side: dict[str, Any]) -> dict[str, Any]:
    """The JSON form of an image side: details become brief finding rows."""
    out = {k: v for k, v in side.items() if k != "details"}
    out["details"] = [finding_brief(f) for f in side["details"] if f.severity != "info"]
    return out


def what_if(
    classes: list[NodeClass],
    images: Sequence[FleetImage],
    changes: Sequence[Change],
    evaluator: MatrixEvaluator,
) -> dict[str, Any]:
    """The `what_if` object of the fleet document."""
    scenario = Scenario(evaluator, changes)
    rows = []
    for node_class in classes:
        class_changes = scenario.class_changes(node_class)
        node_side = scenario.node_side(node_class)
        row: dict[str, Any] = {
            "class": node_class.key,
            "nodes": node_class.nodes,
            "before": node_side["before"],
            "after": node_side["after"],
            "changes": node_side["changes"],
            "facts": node_side["facts"],
            "notes": node_side["notes"],
            "new_findings": node_side["new_findings"],
            "images": [],
        }
        for image in images:
            before = scenario.image_side(image, node_class, ())
            after = scenario.image_side(image, node_class, class_changes) if class_changes else before
            row["images"].append(
                {"image": image.reference, "before": _public(before), "after": _public(after)}
            )
        rows.append(row)
    return {"changes": [c.text or c.unscoped() for c in changes], "classes": rows}
