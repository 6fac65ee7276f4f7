"""`fleet --image REF --plan`: per class where an image does not run cleanly, the smallest change
the matrix knows that makes it run, with no new fail; or why there is none.

Candidates, smallest first:
  1. cuda-compat=<the image's CUDA>         forward compatibility (the package installed in the
                                            image), no driver change
  2. driver=<version>                       per driver branch the matrix lists as supported
                                            with an end of life still ahead (LTSB / PB), the
                                            newest version of it the toolkit table names (else
                                            the branch); nearest to today's branch first
  3. driver=<version> + cuda-compat          the same with forward compatibility, only where that
                                            driver does not support the image's CUDA itself
  4. another --image (a variant)            e.g. the same software built for an older CUDA
Each candidate is evaluated by the what-if scenario (the same rules on rewritten facts). A
candidate is refused when it brings a new fail on the class's nodes (node rules, e.g. GD-DRV-006
for A800 on R650+) or leaves the image failing. Of the others the plan takes, in this order:
  - the least severe verdict of the image after (ok, then info, then warn; warn only where the
    image does not run today),
  - then the smallest change, in the candidate order above: forward compatibility on today's
    driver (no driver rollout) before a driver rollout, the nearest branch first.
The `why` says which candidates were smaller and fell short, what the nodes keep, and which
alternatives reach the same verdict.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from gpudoctor.exitcodes import CLEAN, RUNS, SEVERITY_ORDER
from gpudoctor.fleet.aggregate import NodeClass
from gpudoctor.fleet.driverfacts import reported_cuda_version
from gpudoctor.fleet.matrix import FleetImage, MatrixEvaluator, finding_brief
from gpudoctor.fleet.whatif import Change, Scenario
from gpudoctor.knowledge import matrix
from gpudoctor.versions import branch_of, count_from, major_minor, parse_version

_CAUSES_SHOWN = 4


def supported_branches(month: str | None = None) -> list[tuple[int, str, str]]:
    """(branch, designation, end of life) of branches whose end of life is still ahead."""
    month = month or time.strftime("%Y-%m", time.gmtime())
    rows = [
        (row["branch"], row["designation"], row["eol"])
        for row in matrix.table("driver_branches")
        # Only a published "YYYY-MM" still ahead: "unknown" and "unlisted" are no support promise.
        if row.get("eol", "")[:1].isdigit() and row["eol"] >= month
    ]
    return sorted(rows)


def newest_known_version(branch: int) -> str:
    """The newest driver of the branch the toolkit table names ('580.95.05'), else the branch."""
    versions = [
        row["min_driver"]
        for row in matrix.table("cuda_toolkit_driver")
        if branch_of(row["min_driver"]) == branch
    ]
    if not versions:
        return str(branch)
    return max(versions, key=lambda v: parse_version(v) or parse_version("0"))


def _class_branch(node_class: NodeClass) -> int | None:
    return count_from(node_class.facts.get("driver_branch", ""))


def _needs_compat(driver_version: str, image_cuda: str) -> bool:
    """Whether forward compatibility can add anything on this driver: it does not support the
    image's CUDA itself (a compat package is used only when newer than the host driver)."""
    supported, _note = reported_cuda_version(driver_version)
    wanted, have = major_minor(image_cuda), major_minor(supported)
    return wanted is not None and (have is None or have < wanted)


def _candidates(
    node_class: NodeClass, image: FleetImage, variants: Sequence[FleetImage], image_cuda: str | None
) -> list[tuple[tuple[Change, ...], FleetImage, str]]:
    """(changes, image to run, label) smallest first."""
    compat = (Change("cuda-compat", image_cuda),) if image_cuda else ()
    out: list[tuple[tuple[Change, ...], FleetImage, str]] = []
    if compat:
        package = "cuda-compat-" + image_cuda.replace(".", "-") if image_cuda else ""
        out.append((compat, image, f"forward compatibility ({package} in the image) on today's driver"))
    today = _class_branch(node_class)
    branches = supported_branches()
    branches.sort(key=lambda b: (abs(b[0] - today) if today is not None else 0, -b[0]))
    for branch, designation, eol in branches:
        version = newest_known_version(branch)
        label = f"driver {version} (R{branch} {designation.upper()}, end of life {eol})"
        driver = Change("driver", version)
        out.append(((driver,), image, label))
        if compat and image_cuda and _needs_compat(version, image_cuda):
            out.append(((driver, *compat), image, label + " with forward compatibility"))
    # Another image changes the workload itself: after every driver option.
    for variant in variants:
        out.append(((), variant, f"the image variant {variant.reference}"))
    return out


def _outcome(
    scenario: Scenario,
    node_class: NodeClass,
    changes: tuple[Change, ...],
    candidate: FleetImage,
    label: str,
) -> dict[str, Any]:
    side = scenario.node_side(node_class, changes)
    after = scenario.image_side(candidate, node_class, changes)
    new_fails = [f["rule_id"] for f in side["new_findings"] if f["severity"] == "fail"]
    remaining = [f.rule_id for f in after["details"] if f.severity not in CLEAN]
    if new_fails:
        cause = f"{label}: new fail on the nodes {', '.join(new_fails)}"
    else:
        cause = f"{label}: {after['verdict']} ({', '.join(remaining) or 'no finding'})"
    return {
        "changes": changes,
        "image": candidate,
        "label": label,
        "verdict": after["verdict"],
        "after": after,
        "node_side": side,
        "ok": not new_fails and after["verdict"] in RUNS,
        "cause": cause,
    }


def _proposal(
    node_class: NodeClass,
    image: FleetImage,
    today: dict[str, Any],
    best: dict[str, Any],
    outcomes: list[dict[str, Any]],
    alternatives: list[dict[str, Any]],
) -> dict[str, Any]:
    after, side = best["after"], best["node_side"]
    cleared = [finding_brief(f) for f in today["details"] if f.rule_id not in after["findings"]]
    still = [finding_brief(f) for f in after["details"] if f.severity not in CLEAN]
    gained = [
        finding_brief(f)
        for f in after["details"]
        if f.severity in CLEAN and f.severity != "ok" and f.rule_id not in today["findings"]
    ]
    why = f"{best['label']}: {best['image'].reference} {after['verdict']} on this class"
    if gained:
        why += " (" + ", ".join(f"{f['rule_id']}: {f['title']}" for f in gained) + ")"
    if cleared:
        why += "; clears " + ", ".join(f"{f['rule_id']} ({f['title']})" for f in cleared)
    if still:
        why += "; remains " + ", ".join(f"{f['rule_id']} ({f['title']})" for f in still)
    new_ids = [f["rule_id"] for f in side["new_findings"]]
    why += "; new on the nodes: " + (", ".join(new_ids) if new_ids else "none")
    if side["after"]["verdict"] != "ok":
        why += f"; the nodes stay {side['after']['verdict']} ({', '.join(side['after']['findings'])})"
        rollout = next((o for o in alternatives if any(c.kind == "driver" for c in o["changes"])), None)
        if rollout is not None and not any(c.kind == "driver" for c in best["changes"]):
            kept = set(side["after"]["findings"]) - set(rollout["node_side"]["after"]["findings"])
            if kept:
                why += f", of which {rollout['label']} would also clear {', '.join(sorted(kept))}"
    smaller = [o["cause"] for o in outcomes[: outcomes.index(best)]]
    if smaller:
        why += "; smaller changes fall short: " + "; ".join(smaller[:_CAUSES_SHOWN])
    same = [o["label"] for o in alternatives if o["verdict"] == best["verdict"]]
    if same:
        why += f"; chosen over {', '.join(same[:2])} (also {best['verdict']}) as the smaller change" + (
            ": no driver rollout" if not any(c.kind == "driver" for c in best["changes"]) else ""
        )
    row = _row(
        node_class, image, best["changes"], after, cleared + still + gained + side["new_findings"], why
    )
    if best["image"] is not image:
        row["change"] = f"image={best['image'].reference}"
    row["findings_cleared"] = [f["rule_id"] for f in cleared]
    row["alternatives"] = [o["label"] for o in alternatives]
    return row


def _refs(findings: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(ref for f in findings for ref in f.get("refs", [])))


def plan(
    classes: list[NodeClass],
    images: Sequence[FleetImage],
    evaluator: MatrixEvaluator,
) -> list[dict[str, Any]]:
    """The `plan` list of the fleet document."""
    scenario = Scenario(evaluator, ())
    rows = []
    for image in images:
        variants = [other for other in images if other is not image]
        for node_class in classes:
            today = scenario.image_side(image, node_class, ())
            if today["verdict"] in CLEAN:
                continue
            if today.get("error"):
                rows.append(_row(node_class, image, None, today, [], f"image not fetched: {today['error']}"))
                continue
            outcomes = [
                _outcome(scenario, node_class, changes, candidate, label)
                for changes, candidate, label in _candidates(node_class, image, variants, _image_cuda(image))
            ]
            wanted = CLEAN if any(o["verdict"] in CLEAN for o in outcomes if o["ok"]) else RUNS
            passing = [o for o in outcomes if o["ok"] and o["verdict"] in wanted]
            if today["verdict"] in RUNS and wanted is RUNS:
                passing = []  # it runs already; only a clean result would be an improvement
            # The least severe verdict first, then the smallest change (candidate order): stable sort.
            passing.sort(key=lambda o: SEVERITY_ORDER.index(o["verdict"]))
            if not passing:
                why = "no change the matrix knows runs it " + (
                    "cleanly" if today["verdict"] in RUNS else "without a fail"
                )
                why += "; " + "; ".join(o["cause"] for o in outcomes[:_CAUSES_SHOWN])
                rows.append(_row(node_class, image, None, today, [], why))
                continue
            best = passing[0]
            rows.append(_proposal(node_class, image, today, best, outcomes, passing[1:]))
    return rows


def _image_cuda(image: FleetImage) -> str | None:
    for fetched in image.fetches.values():
        if fetched.facts is not None and fetched.facts.cuda_version:
            parts = fetched.facts.cuda_version.split(".")
            return ".".join(parts[:2])
    return None


def _row(
    node_class: NodeClass,
    image: FleetImage,
    changes: tuple[Change, ...] | None,
    after: dict[str, Any],
    findings: list[dict[str, Any]],
    why: str,
) -> dict[str, Any]:
    change = " ".join(c.unscoped() for c in changes) if changes else None
    return {
        "class": node_class.key,
        "image": image.reference,
        "change": change,
        # Paste-ready: the same change(s) for --what-if, scoped to this class.
        "what_if": [f"{c.unscoped()}@class~{node_class.key}" for c in changes] if changes else [],
        "verdict_after": after["verdict"],
        "findings_after": after["findings"],
        "why": why,
        "refs": _refs(findings),
    }
