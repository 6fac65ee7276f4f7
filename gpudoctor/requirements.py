"""NVIDIA_REQUIRE_* exactly as the NVIDIA container toolkit decides it.

Two halves, each mirroring one upstream component:

* `collect_requirements` mirrors nvidia-container-toolkit's
  `internal/config/image/cuda_image.go` (`GetRequirements`, `HasDisableRequire`,
  `IsLegacy`, `parseMajorMinorVersion`): which strings become `--require=`.
* `evaluate_requirements` mirrors libnvidia-container's `src/cli/dsl.c` and the
  rules in `src/cli/configure.c`: how `nvidia-container-cli configure` judges
  them, per visible GPU, against the host driver.

Where the node facts the toolkit would read are unknown, the result is
`satisfied=None` naming the missing facts: a preflight "ok" that the toolkit
would refuse at container start is the worst bug this tool can have.

Sources:
  https://github.com/NVIDIA/nvidia-container-toolkit/blob/main/internal/config/image/cuda_image.go
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


def parse_major_minor(version: str) -> str:
    """cuda_image.go parseMajorMinorVersion: '9.0.116' -> '9.0', 'v11.6' -> '11.6'."""
    candidate = "v" + version.removeprefix("v")
    match = re.fullmatch(_SEMVER, candidate)
    if match is None or _has_bad_prerelease(candidate):
        raise RequirementsError(f"invalid CUDA version {version!r}: invalid version string")
    major, minor = match["major"], match["minor"] or "0"
    if int(major) > _UINT32_MAX:
        raise RequirementsError(f"invalid CUDA version {version!r}: invalid major version")
    if int(minor) > _UINT32_MAX:
        raise RequirementsError(f"invalid CUDA version {version!r}: invalid minor version")
    return f"{major}.{minor}"


def _has_bad_prerelease(candidate: str) -> bool:
    # x/mod/semver rejects numeric pre-release identifiers with leading zeros.
    head = candidate.split("+", 1)[0]
    if "-" not in head:
        return False
    return bool(re.search(_PRERELEASE_NUMERIC_LEADING_ZERO, head.split("-", 1)[1]))


def disables_require(env: Mapping[str, str]) -> bool:
    return go_parse_bool(env.get(DISABLE_REQUIRE, "")) is True


def collect_requirements(env: Mapping[str, str]) -> list[str]:
    """The strings the toolkit passes as `--require=` for a container with this env.

    Raises RequirementsError where the toolkit fails (an invalid legacy
    CUDA_VERSION): its hook then refuses to start the container.
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
    if env.get(CUDA_VERSION) and not env.get(REQUIRE_CUDA):
        requirements.append("cuda>=" + parse_major_minor(env[CUDA_VERSION]))
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


def _strtoumax(text: str) -> tuple[int, str]:
    digits = len(text) - len(text.lstrip("0123456789"))
    if digits == 0:
        raise _InvalidExpression
    significant = text[:digits].lstrip("0")
    # strtoumax saturates at UINTMAX_MAX, which dsl.c rejects; more than 20 significant
    # digits is past it (and int() of thousands of digits is slow, past 4300 refused).
    if len(significant) > len(str(_UINTMAX)) or int(significant or "0") >= _UINTMAX:
        raise _InvalidExpression
    number = int(significant or "0")
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


def _evaluate_factor(factor: str, facts: _Facts) -> bool | None:
    raw_name, op, value = _split_factor(factor)
    name = raw_name.lower()
    actual: str | None
    if name == "cuda":
        actual, fact = facts.cuda, "driver.cuda_version"
    elif name == "driver":
        actual, fact = facts.driver, "driver.version"
    elif name in ("arch", "brand"):
        if facts.gpu is None:
            return True  # configure.c: no device visible, assume it is ok
        if name == "arch":
            actual, fact = facts.gpu.compute_capability, f"gpus[{facts.gpu.index}].compute_capability"
        else:
            raw = facts.gpu.brand
            actual, fact = (legacy_brand(raw) if raw else None), f"gpus[{facts.gpu.index}].brand"
    else:
        raise _InvalidExpression
    if not actual:
        # Still reject what the toolkit would reject whatever the fact's value.
        if name == "brand" and op not in ("=", "!="):
            raise _InvalidExpression
        if name != "brand" and not set(value) <= set("0123456789."):
            raise _InvalidExpression
        facts.missing.add(fact)
        return None
    result = compare_string(actual, op, value) if name == "brand" else compare_version(actual, op, value)
    if not result and len(f"{raw_name} {op} {value}") >= _EXPR_MAX:
        raise _InvalidExpression
    return result


def evaluate_predicate(predicate: str, facts: _Facts) -> bool | None:
    """dsl_evaluate: space-separated terms are ORed, comma-separated factors ANDed,
    stopping at the first true term. None where an unknown fact decides it."""
    ret = True  # dsl.c's running result; an all-empty term keeps the previous one
    undecided = False
    for term in predicate.split(" "):
        if not term:
            continue
        term_unknown = False
        failed = False
        for factor in term.split(","):
            if not factor:
                continue
            result = _evaluate_factor(factor, facts)
            if result is None:
                term_unknown, ret = True, True
                continue
            ret = result
            if not result:
                failed = True
                break
        if failed:
            continue
        if term_unknown:
            # Had the unknown facts been true, the toolkit would stop here; otherwise it
            # goes on with a false result. Keep looking for a term that decides it.
            undecided, ret = True, False
            continue
        if ret:
            return True
        return None if undecided else False
    if undecided:
        return None
    return ret


def failure_message(predicate: str) -> str:
    first = predicate.split(" ")[0]
    hint = _CUDA_HINT if first.startswith("cuda>=") else ""
    return f"unsatisfied condition: {first}{hint}"


def _visible_gpus(node: NodeFacts) -> list[GpuFacts | None]:
    # The whole node is judged: nvidia-container-cli checks every GPU a container
    # is given, and NVIDIA_VISIBLE_DEVICES=all gives it all of them.
    return list(node.gpus) or [None]


def evaluate_requirements(requirements: Iterable[str], node: NodeFacts) -> RequirementResult:
    """Judge the requirements as `nvidia-container-cli configure` would on this node."""
    reqs = list(requirements)
    result = RequirementResult(satisfied=True)
    missing: set[str] = set()
    for gpu in _visible_gpus(node):
        facts = _Facts(cuda=node.driver.cuda_version, driver=node.driver.version, gpu=gpu, missing=set())
        gpu_ok: bool | None = True
        for requirement in reqs:
            try:
                ok = evaluate_predicate(requirement, facts)
            except _InvalidExpression:
                if result.satisfied is not False:  # the toolkit stops at the first failure
                    result.satisfied, result.message = False, "invalid expression"
                    result.invalid = requirement
                gpu_ok = False
                break
            if ok is False:
                gpu_ok = False
                if result.satisfied is not False:
                    result.satisfied, result.message = False, failure_message(requirement)
                break
            if ok is None:
                gpu_ok = None
        missing |= facts.missing
        if gpu is not None:
            result.per_gpu[str(gpu.index)] = gpu_ok
        if gpu_ok is None and result.satisfied is True:
            result.satisfied = None
    if result.satisfied is None:
        result.missing = sorted(missing)
    return result
