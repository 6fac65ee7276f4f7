"""NVIDIA_REQUIRE_* exactly as the NVIDIA container toolkit decides it.

Two halves, each mirroring one upstream component:

* `collect_requirements` mirrors nvidia-container-toolkit's
  `internal/config/image/cuda_image.go` (`GetRequirements`, `HasDisableRequire`,
  `IsLegacy`, `parseMajorMinorVersion`): which strings become `--require=`. How a
  legacy image's `CUDA_VERSION` is parsed depends on the toolkit release
  (`cuda_version_grammar`): golang.org/x/mod/semver from v1.10.0 to v1.20.0,
  Masterminds/semver v3 (loose, coercing) after v1.20.0 (commit 36e84731).
* `evaluate_requirements` mirrors libnvidia-container's `src/cli/dsl.c` and the
  rules in `src/cli/configure.c`: how `nvidia-container-cli configure` judges
  them, per visible GPU, against the host driver.

Where the node facts the toolkit would read are unknown, the result is
`satisfied=None` naming the missing facts: a preflight "ok" that the toolkit
would refuse at container start is the worst bug this tool can have. An unknown
fact is followed both ways (true and false) through dsl.c's evaluation order, so
`cuda>=12.0 bogus` with the host CUDA version unknown is unknown (true: stops at
the first term; false: "invalid expression"), never a definite verdict.

Sources:
  https://github.com/NVIDIA/nvidia-container-toolkit/blob/main/internal/config/image/cuda_image.go
  https://github.com/NVIDIA/nvidia-container-toolkit/commit/36e84731a032badf60e91aff32fad76225a3d897
  https://github.com/Masterminds/semver/blob/master/version.go (v3.5.0, vendored by the toolkit)
  https://github.com/NVIDIA/libnvidia-container/blob/master/src/cli/dsl.c
  https://github.com/NVIDIA/libnvidia-container/blob/master/src/cli/configure.c
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from gpudoctor.facts import GpuFacts, NodeFacts

REQUIRE_PREFIX = "NVIDIA_REQUIRE_"
JETPACK_PREFIX = "NVIDIA_REQUIRE_JETPACK"
DISABLE_REQUIRE = "NVIDIA_DISABLE_REQUIRE"
REQUIRE_CUDA = "NVIDIA_REQUIRE_CUDA"
CUDA_VERSION = "CUDA_VERSION"

_CUDA_HINT = ", please update your driver to a newer version, or use an earlier cuda container"
# dsl.c formats a false factor into a 128-byte buffer; longer ones are "invalid expression".
_EXPR_MAX = 128
_UINTMAX = 2**64 - 1
_UINT32_MAX = 2**32 - 1

# golang.org/x/mod/semver: vMAJOR[.MINOR[.PATCH[-pre][+build]]], no leading zeros.
# Pattern strings, compiled (and cached) by `re` on first use: only an image with a
# legacy CUDA_VERSION and no NVIDIA_REQUIRE_CUDA needs them (~0.5 ms to compile).
_NUM = r"(?:0|[1-9][0-9]*)"
_IDENT = r"[0-9A-Za-z-]+"
_SEMVER = (
    rf"v(?P<major>{_NUM})(?:\.(?P<minor>{_NUM})(?:\.{_NUM}(?:-{_IDENT}(?:\.{_IDENT})*)?"
    rf"(?:\+{_IDENT}(?:\.{_IDENT})*)?)?)?"
)
_PRERELEASE_NUMERIC_LEADING_ZERO = r"(?:^|\.)0[0-9]+(?:\.|$)"

# nvc's driver.c maps nvmlDeviceGetBrand to these strings; every other brand is "Unknown".
_LEGACY_BRANDS = {
    "quadro": "Quadro",
    "tesla": "Tesla",
    "nvs": "NVS",
    "grid": "GRID",
    "geforce": "GeForce",
    "titan": "TITAN",
}

# dsl.c's operator table, in its search order.
_OPERATORS = ("=", "!=", "<", "<=", ">", ">=")
_OPERATOR_CHARS = "<>=!"


class RequirementsError(ValueError):
    """The toolkit itself fails to collect the requirements (the hook aborts the start)."""


class RequirementsUnknown(ValueError):
    """What the toolkit collects cannot be told (a parser gpudoctor does not model)."""


@dataclass
class RequirementResult:
    satisfied: bool | None  # None: a fact the toolkit reads is unknown
    message: str | None = None  # the toolkit's own error text when not satisfied
    invalid: str | None = None  # the requirement the toolkit rejects as "invalid expression"
    per_gpu: dict[str, bool | None] = field(default_factory=dict)  # GPU index -> satisfied
    missing: list[str] = field(default_factory=list)  # node facts needed but unknown


# --- collecting (nvidia-container-toolkit, Go) --------------------------------------


def go_parse_bool(value: str) -> bool | None:
    """Go strconv.ParseBool: None where Go returns an error."""
    if value in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if value in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    return None


# Which parser a toolkit release applies to a legacy image's CUDA_VERSION.
GRAMMAR_MASTERMINDS = "masterminds-semver"  # after v1.20.0: github.com/Masterminds/semver/v3 NewVersion
GRAMMAR_XMOD = "x/mod-semver"  # v1.10.0 .. v1.20.0: golang.org/x/mod/semver IsValid
GRAMMAR_SSCANF = "sscanf"  # before v1.10.0: fmt.Sscanf("%d.%d.%d\n"), only plain versions modelled
_LAST_XMOD_RELEASE = (1, 20, 0)  # 36e84731 landed after the v1.20.0 tag
_FIRST_XMOD_RELEASE = (1, 10, 0)  # 8f0e1906 "Add CUDA image abstraction" is first in v1.10.0-rc.2
_TOOLKIT_RELEASE = r"v?([0-9]+)\.([0-9]+)\.([0-9]+)"

# Masterminds/semver v3.5.0 looseSemVerRegex (NewVersion with CoerceNewVersion = true,
# the default): leading zeros are coerced ("11.08" -> 11.8), pre-release without patch accepted.
_LOOSE = (
    r"v?([0-9]+)(\.[0-9]+)?(\.[0-9]+)?"
    r"(-([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?"
    r"(\+([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?"
)
_MASTERMINDS_MAX_LEN = 256  # MaxVersionLen
_PLAIN = r"(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*)){0,2}"


def cuda_version_grammar(toolkit_version: str | None) -> str:
    """The CUDA_VERSION parser of this toolkit release; the newest one when the version is unknown."""
    match = re.match(_TOOLKIT_RELEASE, toolkit_version or "")
    if match is None:
        return GRAMMAR_MASTERMINDS
    release = tuple(_decimal(part) for part in match.groups())
    if release > _LAST_XMOD_RELEASE:
        return GRAMMAR_MASTERMINDS
    return GRAMMAR_XMOD if release >= _FIRST_XMOD_RELEASE else GRAMMAR_SSCANF


def parse_major_minor(version: str, grammar: str = GRAMMAR_MASTERMINDS) -> str:
    """cuda_image.go parseMajorMinorVersion: '9.0.116' -> '9.0', 'v11.6' -> '11.6',
    as the toolkit release using `grammar` parses it."""
    if grammar == GRAMMAR_XMOD:
        major, minor = _xmod_major_minor(version)
    elif grammar == GRAMMAR_SSCANF:
        if re.fullmatch(_PLAIN, version) is None:
            raise RequirementsUnknown(
                f"CUDA_VERSION {_shown(version)}: toolkits before v1.10.0 parse it with fmt.Sscanf, "
                "which gpudoctor models for plain versions only"
            )
        major, minor = (version.split(".") + ["0"])[:2]
    else:
        major, minor = _masterminds_major_minor(version)
    if _decimal(major) > _UINT32_MAX:
        raise RequirementsError(f"invalid CUDA version {_shown(version)}: invalid major version")
    if _decimal(minor) > _UINT32_MAX:
        raise RequirementsError(f"invalid CUDA version {_shown(version)}: invalid minor version")
    return f"{_decimal(major)}.{_decimal(minor)}"


def _shown(version: str) -> str:
    """The value for a one-line message: repr, long ones cut."""
    return repr(version) if len(version) <= 64 else repr(version[:64]) + f"... ({len(version)} characters)"


def _xmod_major_minor(version: str) -> tuple[str, str]:
    candidate = "v" + version.removeprefix("v")
    match = re.fullmatch(_SEMVER, candidate)
    if match is None or _has_bad_prerelease(candidate):
        raise RequirementsError(f"invalid CUDA version {_shown(version)}: invalid version string")
    return match["major"], match["minor"] or "0"


def _masterminds_major_minor(version: str) -> tuple[str, str]:
    if len(version) > _MASTERMINDS_MAX_LEN:
        raise RequirementsError(f"invalid CUDA version {_shown(version)}: version string is too long")
    match = re.fullmatch(_LOOSE, version)
    if match is None:
        raise RequirementsError(f"invalid CUDA version {_shown(version)}: invalid semantic version")
    numbers = [match[1], (match[2] or ".0")[1:], (match[3] or ".0")[1:]]
    if any(_decimal(number) > _UINTMAX for number in numbers):  # strconv.ParseUint(..., 10, 64)
        raise RequirementsError(f"invalid CUDA version {_shown(version)}: error parsing version segment")
    prerelease = match[5] or ""
    for part in prerelease.split(".") if prerelease else ():
        if part.isdigit() and len(part) > 1 and part[0] == "0":  # validatePrerelease
            raise RequirementsError(f"invalid CUDA version {_shown(version)}: version segment starts with 0")
    return numbers[0], numbers[1]


def _has_bad_prerelease(candidate: str) -> bool:
    # x/mod/semver rejects numeric pre-release identifiers with leading zeros.
    head = candidate.split("+", 1)[0]
    if "-" not in head:
        return False
    return bool(re.search(_PRERELEASE_NUMERIC_LEADING_ZERO, head.split("-", 1)[1]))


def disables_require(env: Mapping[str, str]) -> bool:
    return go_parse_bool(env.get(DISABLE_REQUIRE, "")) is True


def is_legacy_image(env: Mapping[str, str]) -> bool:
    """cuda_image.go IsLegacy: CUDA_VERSION set and NVIDIA_REQUIRE_CUDA empty or unset."""
    return bool(env.get(CUDA_VERSION)) and not env.get(REQUIRE_CUDA)


def collect_requirements(env: Mapping[str, str], toolkit_version: str | None = None) -> list[str]:
    """The strings the toolkit (release `toolkit_version`, newest when None) passes as
    `--require=` for a container with this env.

    Raises RequirementsError where the toolkit fails (an invalid legacy
    CUDA_VERSION): its hook then refuses to start the container; RequirementsUnknown
    where gpudoctor does not model that release's parser for this value.
    """
    if disables_require(env):
        return []
    # Go ranges over a map here (random order); the values are ANDed, so order
    # only affects which failure is reported first. Sorted by name: stable.
    requirements = [
        env[name]
        for name in sorted(env)
        if name.startswith(REQUIRE_PREFIX) and not name.startswith(JETPACK_PREFIX)
    ]
    if is_legacy_image(env):
        grammar = cuda_version_grammar(toolkit_version)
        requirements.append("cuda>=" + parse_major_minor(env[CUDA_VERSION], grammar))
    return requirements


# --- evaluating (libnvidia-container, C) ---------------------------------------------


class _InvalidExpression(Exception):
    pass


def compare_version(actual: str, op: str, wanted: str) -> bool:
    """dsl_compare_version: dot-separated integers, trailing '.0's ignored."""
    allowed = set("0123456789.")
    if not set(actual) <= allowed or not set(wanted) <= allowed:
        raise _InvalidExpression
    v1, v2 = actual, wanted
    while v1 and v2:
        n1, v1 = _strtoumax(v1)
        n2, v2 = _strtoumax(v2)
        if n1 != n2:
            if op == "=":
                return False
            if op == "!=":
                return True
            return n1 < n2 if op in ("<", "<=") else n1 > n2
        v1, v2 = v1.lstrip("."), v2.lstrip(".")
    v1, v2 = v1.lstrip(".0"), v2.lstrip(".0")
    if op == "!=":
        return bool(v1 or v2)
    if op in ("=", "<=", ">=") and not v1 and not v2:
        return True
    if op == "=":
        return False
    if op in ("<", "<="):
        return not v1 and bool(v2)
    return bool(v1) and not v2


def _decimal(digits: str) -> int:
    """A run of ASCII digits as a number, capped at 2**64 (everything past uint64 behaves alike
    here, and int() of thousands of digits is slow, past 4300 refused)."""
    significant = digits.lstrip("0")
    if len(significant) > len(str(_UINTMAX)):
        return _UINTMAX + 1
    return min(int(significant or "0"), _UINTMAX + 1)


def _strtoumax(text: str) -> tuple[int, str]:
    digits = len(text) - len(text.lstrip("0123456789"))
    if digits == 0:
        raise _InvalidExpression
    number = _decimal(text[:digits])
    if number >= _UINTMAX:  # strtoumax saturates at UINTMAX_MAX, which dsl.c rejects
        raise _InvalidExpression
    return number, text[digits:]


def compare_string(actual: str, op: str, wanted: str) -> bool:
    """dsl_compare_string: case-insensitive, only = and !=."""
    if op == "=":
        return actual.lower() == wanted.lower()
    if op == "!=":
        return actual.lower() != wanted.lower()
    raise _InvalidExpression


def legacy_brand(brand: str) -> str:
    """The brand string libnvidia-container compares: NVML brands beyond the six
    it knows (NVIDIA, NVIDIA RTX, GeForce RTX, vGPU brands, ...) are 'Unknown'."""
    key = brand.strip().lower().removeprefix("nvml_brand_")
    return _LEGACY_BRANDS.get(key, "Unknown")


def _split_factor(factor: str) -> tuple[str, str, str]:
    """evaluate_rule's parser: name, the operator run, the value."""
    name_len = next((i for i, c in enumerate(factor) if c in _OPERATOR_CHARS), len(factor))
    if name_len == 0:
        raise _InvalidExpression
    rest = factor[name_len:]
    op_len = len(rest) - len(rest.lstrip(_OPERATOR_CHARS))
    if op_len == 0:
        raise _InvalidExpression
    run = rest[:op_len]
    # strncmp(run, op, len(run)) == 0: the run is a prefix of the operator ("!" means "!=").
    op = next((candidate for candidate in _OPERATORS if candidate.startswith(run)), None)
    value = rest[op_len:]
    if op is None or not value:
        raise _InvalidExpression
    return factor[:name_len], op, value


@dataclass
class _Facts:
    """What nvidia-container-cli reads for one visible GPU (gpu None: none visible)."""

    cuda: str | None
    driver: str | None
    gpu: GpuFacts | None
    missing: set[str]


_INVALID = "invalid"  # dsl.c's -1: "invalid expression"
_SAT, _UNSAT = "sat", "unsat"
# One factor's possible results: True, False and/or _INVALID (more than one when a fact is unknown).
Outcomes = frozenset


def _factor_outcomes(factor: str, facts: _Facts) -> Outcomes:
    """evaluate_rule's possible results for one `name<op>value` factor."""
    try:
        raw_name, op, value = _split_factor(factor)
    except _InvalidExpression:
        return frozenset({_INVALID})
    name = raw_name.lower()
    actual: str | None
    if name == "cuda":
        actual, fact = facts.cuda, "driver.cuda_version"
    elif name == "driver":
        actual, fact = facts.driver, "driver.version"
    elif name in ("arch", "brand"):
        if facts.gpu is None:
            return frozenset({True})  # configure.c: no device visible, assume it is ok
        if name == "arch":
            actual, fact = facts.gpu.compute_capability, f"gpus[{facts.gpu.index}].compute_capability"
        else:
            raw = facts.gpu.brand
            actual, fact = (legacy_brand(raw) if raw else None), f"gpus[{facts.gpu.index}].brand"
    else:
        return frozenset({_INVALID})
    # snprintf of a false factor into EXPR_MAX bytes: too long is "invalid expression".
    when_false: bool | str = _INVALID if len(f"{raw_name} {op} {value}") >= _EXPR_MAX else False
    if actual:
        try:
            result = (
                compare_string(actual, op, value) if name == "brand" else compare_version(actual, op, value)
            )
        except _InvalidExpression:
            return frozenset({_INVALID})
        return frozenset({True if result else when_false})
    facts.missing.add(fact)
    if name == "brand":
        return frozenset({True, when_false} if op in ("=", "!=") else {_INVALID})
    return _unknown_version_outcomes(value, when_false)


def _unknown_version_outcomes(wanted: str, when_false: bool | str) -> Outcomes:
    """dsl_compare_version(actual, op, wanted) over every well-formed actual version."""
    if not set(wanted) <= set("0123456789.") or wanted.startswith("."):
        return frozenset({_INVALID})  # rejected whatever the fact's value
    outcomes = {True, when_false}
    components = [part for part in wanted.split(".") if part]
    if components and _decimal(components[0]) >= _UINTMAX:
        return frozenset({_INVALID})
    if any(_decimal(part) >= _UINTMAX for part in components[1:]):
        outcomes.add(_INVALID)  # reached only when the leading components are equal
    return frozenset(outcomes)


def predicate_outcomes(predicate: str, facts: _Facts) -> frozenset[str]:
    """dsl_evaluate's possible results (_SAT, _UNSAT, _INVALID) in its exact order:
    strsep on " " gives OR terms, strsep on "," AND factors, empty tokens skipped; a
    false factor ends its term, a term that runs out of factors ends the predicate with
    the running result (dsl.c's `if (and_expr == NULL) break;`), so a true term stops
    before any later, even invalid, term is read. An unknown fact is followed both ways."""
    terms = [term.split(",") for term in predicate.split(" ")]
    # The states dsl.c can reach, (term, factor, running result), walked forward from the
    # first, each once, without recursion: a hostile requirement of thousands of terms
    # is no deeper for this walk than for dsl.c's loop. The outcomes are the ends reached.
    found: set[str] = set()
    pending = [(0, 0, True)]
    seen = set(pending)
    while pending:
        term, factor, ret = pending.pop()
        following: list[tuple[int, int, bool]] = []
        if term == len(terms):
            found.add(_SAT if ret else _UNSAT)
        elif terms[term] == [""]:
            following.append((term + 1, 0, ret))  # an empty OR token: `continue`
        elif factor == len(terms[term]):
            found.add(_SAT if ret else _UNSAT)  # and_expr == NULL: `break`
        elif terms[term][factor] == "":
            following.append((term, factor + 1, ret))
        else:
            for outcome in _factor_outcomes(terms[term][factor], facts):
                if outcome == _INVALID:
                    found.add(_INVALID)
                elif outcome:
                    following.append((term, factor + 1, True))
                else:
                    following.append((term + 1, 0, False))
        for state in following:
            if state not in seen:
                seen.add(state)
                pending.append(state)
    return frozenset(found)


def failure_message(predicate: str) -> str:
    first = predicate.split(" ")[0]
    hint = _CUDA_HINT if first.startswith("cuda>=") else ""
    return f"unsatisfied condition: {first}{hint}"


def _visible_gpus(node: NodeFacts, gpus_requested: bool) -> list[GpuFacts | None]:
    # The whole node is judged: nvidia-container-cli checks every GPU a container
    # is given, and NVIDIA_VISIBLE_DEVICES=all gives it all of them. With
    # NVIDIA_VISIBLE_DEVICES=none it is given none: configure.c then evaluates once,
    # without a device.
    return (list(node.gpus) if gpus_requested else []) or [None]


def evaluate_requirements(
    requirements: Iterable[str], node: NodeFacts, gpus_requested: bool = True
) -> RequirementResult:
    """Judge the requirements as `nvidia-container-cli configure` would on this node:
    per visible GPU, every requirement in turn, the first failure ends it."""
    reqs = list(requirements)
    missing: set[str] = set()
    failures: list[tuple[str, str]] = []  # (kind, requirement) of every possible first failure
    chosen: tuple[str, str] | None = None  # the first failure when unknown facts are taken as true
    any_sat_path = all_sat = True
    per_gpu: dict[str, bool | None] = {}
    for gpu in _visible_gpus(node, gpus_requested):
        facts = _Facts(cuda=node.driver.cuda_version, driver=node.driver.version, gpu=gpu, missing=set())
        gpu_can_pass, gpu_must_pass = True, True
        for requirement in reqs:
            outcomes = predicate_outcomes(requirement, facts)
            for kind in (_UNSAT, _INVALID):
                if kind in outcomes:
                    failures.append((kind, requirement))
            if _SAT not in outcomes:
                gpu_can_pass = gpu_must_pass = False
                if chosen is None and any_sat_path:
                    chosen = (_INVALID if outcomes == {_INVALID} else _UNSAT, requirement)
                break
            if outcomes != {_SAT}:
                gpu_must_pass = False
        missing |= facts.missing
        if gpu is not None:
            per_gpu[str(gpu.index)] = True if gpu_must_pass else (False if not gpu_can_pass else None)
        any_sat_path = any_sat_path and gpu_can_pass
        all_sat = all_sat and gpu_must_pass
    if all_sat:
        return RequirementResult(satisfied=True, per_gpu=per_gpu)
    if any_sat_path:
        return RequirementResult(satisfied=None, per_gpu=per_gpu, missing=sorted(missing))
    result = RequirementResult(satisfied=False, per_gpu=per_gpu)
    kind, requirement = chosen or failures[0]
    if kind == _INVALID and all(k == _INVALID for k, _ in failures):
        result.message, result.invalid = "invalid expression", requirement
    else:
        unsat = requirement if kind == _UNSAT else next(r for k, r in failures if k == _UNSAT)
        result.message = failure_message(unsat)
    return result
