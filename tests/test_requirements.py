"""NVIDIA_REQUIRE_* collection and evaluation, checked against the toolkit's own
test tables and the real CUDA images' requirement strings.

Test data sources (verbatim values, see /work/shared/reference/compat-facts.md §7):
- NCT = NVIDIA/nvidia-container-toolkit @ d34b3046 (the merge of 36e84731 "use Masterminds/semver
  instead of x/mod", after v1.20.0): internal/config/image/cuda_image_test.go,
  cmd/nvidia-container-runtime-hook/container_config_test.go,
  internal/requirements/constraints/{factory_test.go,logical_test.go}.
- Masterminds/semver @ 71f2b39f (the NewVersion code the toolkit vendors as v3.5.0, plus its
  MaxVersionLen check): version_test.go TestNewVersion "With loose NewVersion" (what NewVersion
  decides with CoerceNewVersion = true, the default the toolkit runs with).
- The expected outcomes of the evaluator follow libnvidia-container src/cli/dsl.c and
  src/cli/configure.c @ 5823754b / 09df17a2 (space = OR, comma = AND; two factory_test.go
  descriptions have the words swapped, their data is used with the code's semantics).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpudoctor.facts import DriverFacts, GpuFacts, NodeFacts
from gpudoctor.requirements import (
    GRAMMAR_MASTERMINDS,
    GRAMMAR_SSCANF,
    GRAMMAR_XMOD,
    RequirementsError,
    RequirementsUnknown,
    collect_requirements,
    compare_version,
    cuda_version_grammar,
    evaluate_requirements,
    go_parse_bool,
    legacy_brand,
    parse_major_minor,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def node(
    cuda: str | None = "12.2",
    driver: str | None = "535.54.03",
    gpus: list[tuple[str | None, str | None]] = (),
) -> NodeFacts:  # noqa: E501
    return NodeFacts(
        driver=DriverFacts(present=True, version=driver, cuda_version=cuda),
        gpus=[GpuFacts(index=i, brand=brand, compute_capability=cc) for i, (brand, cc) in enumerate(gpus)],
    )


def real_node(name: str) -> NodeFacts:
    return NodeFacts.from_dict(json.loads((FIXTURES / "facts" / "nodes" / f"{name}.json").read_text()))


def real_image_env(name: str) -> dict[str, str]:
    env: dict[str, str] = json.loads((FIXTURES / "images" / f"{name}.json").read_text())["env"]
    return env


# --- collect_requirements: NCT cuda_image_test.go TestGetRequirements ---------------

GET_REQUIREMENTS = [
    ("NVIDIA_REQUIRE_JETPACK is ignored", {"NVIDIA_REQUIRE_JETPACK": "csv-mounts=all"}, []),
    (
        "NVIDIA_REQUIRE_JETPACK_HOST_MOUNTS is ignored",
        {"NVIDIA_REQUIRE_JETPACK_HOST_MOUNTS": "base-only"},
        [],
    ),
    ("single requirement set", {"NVIDIA_REQUIRE_CUDA": "cuda>=11.6"}, ["cuda>=11.6"]),
    (
        "requirements are concatenated requirement set",
        {"NVIDIA_REQUIRE_CUDA": "cuda>=11.6", "NVIDIA_REQUIRE_BRAND": "brand=tesla"},
        ["cuda>=11.6", "brand=tesla"],
    ),
    ("legacy image", {"CUDA_VERSION": "11.6"}, ["cuda>=11.6"]),
    (
        "legacy image with additional requirement",
        {"CUDA_VERSION": "11.6", "NVIDIA_REQUIRE_BRAND": "brand=tesla"},
        ["cuda>=11.6", "brand=tesla"],
    ),
    (
        "NVIDIA_DISABLE_REQUIRE ignores requirements",
        {
            "NVIDIA_REQUIRE_CUDA": "cuda>=11.6",
            "NVIDIA_REQUIRE_BRAND": "brand=tesla",
            "NVIDIA_DISABLE_REQUIRE": "true",
        },
        [],
    ),
    (
        "NVIDIA_DISABLE_REQUIRE ignores legacy image requirements",
        {"CUDA_VERSION": "11.6", "NVIDIA_REQUIRE_BRAND": "brand=tesla", "NVIDIA_DISABLE_REQUIRE": "true"},
        [],
    ),
    # NCT container_config_test.go: what reaches --require=
    (
        "hook: legacy image, requirements set",
        {
            "CUDA_VERSION": "9.0",
            "NVIDIA_VISIBLE_DEVICES": "gpu0,gpu1",
            "NVIDIA_DRIVER_CAPABILITIES": "video,display",
            "NVIDIA_REQUIRE_REQ0": "req0=true",
            "NVIDIA_REQUIRE_REQ1": "req1=false",
        },
        ["cuda>=9.0", "req0=true", "req1=false"],
    ),
    (
        "hook: modern image, requirements set",
        {
            "NVIDIA_REQUIRE_CUDA": "cuda>=9.0",
            "NVIDIA_REQUIRE_REQ0": "req0=true",
            "NVIDIA_REQUIRE_REQ1": "req1=false",
        },
        ["cuda>=9.0", "req0=true", "req1=false"],
    ),
]


@pytest.mark.parametrize(
    ("description", "env", "expected"), GET_REQUIREMENTS, ids=[c[0] for c in GET_REQUIREMENTS]
)
def test_collect_requirements_matches_toolkit_table(
    description: str, env: dict[str, str], expected: list[str]
) -> None:
    # The toolkit compares with ElementsMatch: order is irrelevant.
    assert sorted(collect_requirements(env)) == sorted(expected)


@pytest.mark.parametrize("value", ["1", "t", "T", "TRUE", "true", "True"])
def test_disable_require_accepts_go_true_spellings(value: str) -> None:
    assert collect_requirements({"NVIDIA_REQUIRE_CUDA": "cuda>=99", "NVIDIA_DISABLE_REQUIRE": value}) == []


@pytest.mark.parametrize("value", ["yes", "on", "y", "tRUE", "", "0", "false"])
def test_disable_require_rejects_other_spellings(value: str) -> None:
    assert collect_requirements({"NVIDIA_REQUIRE_CUDA": "cuda>=99", "NVIDIA_DISABLE_REQUIRE": value}) == [
        "cuda>=99"
    ]


def test_plural_disable_requires_is_not_the_switch() -> None:
    # The code reads NVIDIA_DISABLE_REQUIRE only (envvars.go), whatever the CHANGELOG says.
    env = {"NVIDIA_REQUIRE_CUDA": "cuda>=99", "NVIDIA_DISABLE_REQUIRES": "true"}
    assert collect_requirements(env) == ["cuda>=99"]


def test_go_parse_bool_errors_are_none() -> None:
    assert go_parse_bool("maybe") is None
    assert go_parse_bool("F") is False


def test_empty_require_cuda_makes_an_image_legacy() -> None:
    assert collect_requirements({"CUDA_VERSION": "12.4.1", "NVIDIA_REQUIRE_CUDA": ""}) == ["", "cuda>=12.4"]


# NCT cuda_image_test.go TestParseMajorMinorVersionValid / Invalid
@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("0", "0.0"),
        ("8", "8.0"),
        ("7.5", "7.5"),
        ("9.0.116", "9.0"),
        ("4294967295.4294967295.4294967295", "4294967295.4294967295"),
        ("v11.6", "11.6"),
    ],
)
def test_parse_major_minor_valid(version: str, expected: str) -> None:
    # The table passes before and after 36e84731: both grammars must agree on it.
    assert parse_major_minor(version, GRAMMAR_XMOD) == expected
    assert parse_major_minor(version, GRAMMAR_MASTERMINDS) == expected


@pytest.mark.parametrize(
    "version",
    [
        "foo",
        "foo.5.10",
        "9.0.116.50",
        "9.0.116foo",
        "7.foo",
        "9.0.bar",
        "9.4294967296",
        "9.0.116.",
        "9..0",
        "9.",
        ".5.10",
        "-9",
        "+9",
        "-9.1.116",
        "-9.-1.-116",
    ],
)
def test_parse_major_minor_invalid(version: str) -> None:
    for grammar in (GRAMMAR_XMOD, GRAMMAR_MASTERMINDS):
        with pytest.raises(RequirementsError):
            parse_major_minor(version, grammar)


def test_invalid_legacy_cuda_version_fails_collection() -> None:
    for toolkit in (None, "1.17.8"):
        with pytest.raises(RequirementsError, match="invalid CUDA version"):
            collect_requirements({"CUDA_VERSION": "9.0.116.50"}, toolkit_version=toolkit)


def test_real_legacy_image_gets_cuda_requirement() -> None:
    # microsoft/pai docker inspect of an nvidia/cuda:8.0-cudnn6 based image: no NVIDIA_REQUIRE_CUDA.
    env = real_image_env("docker-inspect_pai_docker_inspect_sample")
    assert collect_requirements(env) == ["cuda>=8.0"]


# --- dsl.c grammar -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("actual", "op", "wanted", "expected"),
    [
        ("12.4", "=", "12.4.0", True),
        ("12.4.0.0", "=", "12.4", True),
        ("12.4", ">=", "12.4.1", False),
        ("12.4", "<", "12.4.1", True),
        ("12.10", ">", "12.9", True),
        ("535.54.03", ">=", "535", True),
        ("535.54.03", "<", "536", True),
        ("535.54.03", "!=", "535.54.3", False),
        ("13.0", "<=", "12.9", False),
    ],
)
def test_compare_version_numeric_dot_separated(actual: str, op: str, wanted: str, expected: bool) -> None:
    assert compare_version(actual, op, wanted) is expected


def test_space_is_or_comma_is_and() -> None:
    # factory_test.go data "cuda>=11.6 arch=5.3" / "cuda>=11.6,arch=5.3" with the code's semantics.
    gpu_53 = node(cuda="11.0", gpus=[("Tesla", "5.3")])
    assert evaluate_requirements(["cuda>=11.6 arch=5.3"], gpu_53).satisfied is True
    assert evaluate_requirements(["cuda>=11.6,arch=5.3"], gpu_53).satisfied is False
    # "and takes precedence": cuda<13.6 OR (cuda>=11.6 AND arch=5.3)
    assert evaluate_requirements(
        ["cuda<13.6 cuda>=11.6,arch=5.3"], node(cuda="14.0", gpus=[("Tesla", "5.3")])
    ).satisfied
    assert not evaluate_requirements(
        ["cuda<13.6 cuda>=11.6,arch=5.3"], node(cuda="14.0", gpus=[("Tesla", "8.0")])
    ).satisfied


def test_multiple_requirements_are_anded() -> None:
    result = evaluate_requirements(
        ["cuda>=11.6", "brand=tesla"], node(cuda="12.0", gpus=[("GeForce", "8.6")])
    )
    assert result.satisfied is False
    assert result.message == "unsatisfied condition: brand=tesla"


def test_names_and_brands_are_case_insensitive() -> None:
    assert evaluate_requirements(
        ["CUDA>=11.6,Brand=TESLA"], node(cuda="12.0", gpus=[("Tesla", "8.0")])
    ).satisfied


@pytest.mark.parametrize(
    "requirement",
    [
        "notvalid",  # factory_test.go "missing operator is invalid"
        "foo=45",  # unknown property: invalid in dsl.c (ignored only by the Go CSV evaluator)
        "cuda=foo",  # factory_test.go "cuda must be semver"
        "driver>=535.104.05-1",
        "cuda>=",
        "=12",
        "cuda==12",
        "cuda<>12",
        "brand<tesla",
    ],
)
def test_invalid_expressions(requirement: str) -> None:
    result = evaluate_requirements([requirement], node(gpus=[("Tesla", "8.0")]))
    assert result.satisfied is False
    assert result.message == "invalid expression"
    assert result.invalid == requirement


@pytest.mark.parametrize(
    ("requirement", "op_is_true"),
    [
        ("cuda>=11.6", True),
        ("cuda>11.6", True),
        ("cuda<=11.6", False),
        ("cuda<11.6", False),
        ("cuda=11.6", False),
        ("cuda!=11.6", True),
    ],
)
def test_every_operator(requirement: str, op_is_true: bool) -> None:
    # factory_test.go TestParse conditions, against a 12.2 driver.
    assert evaluate_requirements([requirement], node(cuda="12.2")).satisfied is op_is_true


def test_lone_bang_is_not_equal_as_in_dsl_strncmp() -> None:
    assert evaluate_requirements(["brand!tesla"], node(gpus=[("GeForce", "8.6")])).satisfied is True
    assert evaluate_requirements(["brand!tesla"], node(gpus=[("Tesla", "8.0")])).satisfied is False


def test_true_term_short_circuits_later_invalid_terms() -> None:
    assert evaluate_requirements(["cuda>=11 bogus"], node(cuda="12.2")).satisfied is True
    assert evaluate_requirements(["cuda>=13 bogus"], node(cuda="12.2")).message == "invalid expression"


def test_empty_and_doubled_separators() -> None:
    assert evaluate_requirements([""], node()).satisfied is True
    assert evaluate_requirements(["  cuda>=12.0  "], node(cuda="12.2")).satisfied is True
    # An all-empty term keeps dsl.c's previous result and stops: the later true term is never read.
    assert evaluate_requirements(["cuda>=13 , cuda>=11"], node(cuda="12.2")).satisfied is False


def test_message_names_the_first_term_with_the_cuda_hint() -> None:
    result = evaluate_requirements(
        ["cuda>=13.0 brand=tesla,driver>=535,driver<536"], node(gpus=[("GeForce", "8.9")])
    )
    assert result.satisfied is False
    assert result.message == (
        "unsatisfied condition: cuda>=13.0, please update your driver to a newer version, "
        "or use an earlier cuda container"
    )


def test_no_hint_when_first_term_is_not_cuda_ge() -> None:
    assert evaluate_requirements(["driver>=600"], node()).message == "unsatisfied condition: driver>=600"


@pytest.mark.parametrize(
    ("brand", "legacy"),
    [
        ("Tesla", "Tesla"),
        ("GeForce", "GeForce"),
        ("Quadro", "Quadro"),
        ("NVS", "NVS"),
        ("GRID", "GRID"),
        ("Titan", "TITAN"),
        ("NVIDIA", "Unknown"),
        ("NVIDIA RTX", "Unknown"),
        ("GeForce RTX", "Unknown"),
        ("Quadro RTX", "Unknown"),
        ("NVIDIA RTX Virtual Workstation", "Unknown"),
    ],
)
def test_legacy_brand_mapping(brand: str, legacy: str) -> None:
    assert legacy_brand(brand) == legacy


def test_evaluated_per_gpu_first_failure_wins() -> None:
    mixed = node(cuda="12.2", gpus=[("Tesla", "9.0"), ("Tesla", "8.0")])
    result = evaluate_requirements(["arch>=9.0"], mixed)
    assert result.satisfied is False
    assert result.per_gpu == {"0": True, "1": False}
    assert result.message == "unsatisfied condition: arch>=9.0"


def test_no_gpu_assumes_arch_and_brand_ok() -> None:
    assert evaluate_requirements(["brand=tesla,arch=9.0"], node(gpus=[])).satisfied is True


# --- missing facts: never True ------------------------------------------------------


def test_unknown_driver_cuda_is_unknown_not_ok() -> None:
    result = evaluate_requirements(["cuda>=12.4"], node(cuda=None))
    assert result.satisfied is None
    assert result.missing == ["driver.cuda_version"]


def test_unknown_fact_decided_by_a_known_term() -> None:
    # cuda unknown, but the brand/driver escape term is true: the toolkit would pass either way.
    result = evaluate_requirements(
        ["cuda>=12.4 brand=unknown,driver>=535,driver<536"], node(cuda=None, gpus=[("NVIDIA", "8.0")])
    )
    assert result.satisfied is True


def test_unknown_brand_names_the_gpu() -> None:
    result = evaluate_requirements(
        ["cuda>=12.4 brand=tesla,driver>=535,driver<536"], node(gpus=[(None, "8.0")])
    )
    assert result.satisfied is None
    assert result.missing == ["gpus[0].brand"]


def test_known_failure_beats_unknown() -> None:
    result = evaluate_requirements(["cuda>=12.4", "driver>=999"], node(cuda=None))
    assert result.satisfied is False
    assert result.message == "unsatisfied condition: driver>=999"


def test_unknown_fact_still_detects_invalid_values() -> None:
    assert evaluate_requirements(["cuda>=twelve"], node(cuda=None)).message == "invalid expression"


# --- real images on real nodes -----------------------------------------------------


@pytest.mark.parametrize(
    ("image", "node_name", "expected"),
    [
        # CUDA 12.4 on an A100 with R535 (max CUDA 12.2): passes through brand=unknown (NVML "NVIDIA").
        ("nvidia-cuda_12.4.1-runtime-ubuntu2204_amd64", "A100-SXM4-80GB_535.54.03", True),
        # Same image on a GeForce RTX 4090 with R535: brand=geforce,driver>=535,driver<536 is listed.
        ("nvidia-cuda_12.4.1-runtime-ubuntu2204_amd64", "RTX-4090_535.86.05", True),
        # Quadro P2000 on R525 (max 12.0): brand=quadro,driver>=525,driver<526.
        ("nvidia-cuda_12.4.1-runtime-ubuntu2204_amd64", "Quadro-P2000_525.125.06", True),
        # A10G on R515: R515 is not among the listed branches and 11.7 < 12.4.
        ("nvidia-cuda_12.4.1-runtime-ubuntu2204_amd64", "A10G_515.105.01", False),
        # arm64 (sbsa) images carry only cuda>=X.Y: no forward-compat terms.
        ("nvidia-cuda_12.1.1-base-ubuntu2204_arm64", "A100-SXM4-40GB-MIG_510.47.03", False),
        ("nvidia-cuda_11.8.0-base-ubuntu2204_arm64", "RTX-3060_570.124.04", True),
        # K80 on R430: nvidia-smi says "Not Found" for the CUDA version, so that fact is unknown.
        ("nvidia-cuda_11.8.0-base-ubuntu2204_amd64", "4x-Tesla-K80_430.26", None),
    ],
)
def test_real_cuda_images_on_real_nodes(image: str, node_name: str, expected: bool | None) -> None:
    requirements = collect_requirements(real_image_env(image))
    assert requirements and requirements[0].startswith("cuda>=")
    assert evaluate_requirements(requirements, real_node(node_name)).satisfied is expected


def test_cuda13_image_geforce_525_fails_a100_535_passes() -> None:
    vllm = json.loads(
        (FIXTURES / "facts" / "images" / "vllm-openai_v0.23.0-cuda13.0.2_amd64.json").read_text()
    )
    requirements = collect_requirements(vllm["env"])
    quadro = evaluate_requirements(requirements, real_node("Quadro-P2000_525.125.06"))
    assert quadro.satisfied is False
    assert quadro.message is not None and quadro.message.startswith(
        "unsatisfied condition: cuda>=13.0, please update"
    )
    assert evaluate_requirements(requirements, real_node("A100-SXM4-80GB_535.54.03")).satisfied is True
    assert evaluate_requirements(requirements, real_node("RTX-4090_535.86.05")).satisfied is False


@pytest.mark.parametrize(
    ("version", "expected"),
    [("11.6.0-rc1", "11.6"), ("11.6.0+build.5", "11.6"), ("11.6.0-rc.1+b", "11.6"), ("11.6-rc1", None),
     ("11.6.0-rc.01", None), ("011.6", None), ("11.06", None), ("vv11.6", None)],
)  # fmt: skip
def test_parse_major_minor_up_to_v1_20_follows_x_mod_semver(version: str, expected: str | None) -> None:
    # golang.org/x/mod/semver (cuda_image.go v1.10.0 .. v1.20.0): pre-release/build only after a full
    # MAJOR.MINOR.PATCH, no leading zeros, numeric pre-release identifiers without leading zeros.
    if expected is None:
        with pytest.raises(RequirementsError):
            parse_major_minor(version, GRAMMAR_XMOD)
    else:
        assert parse_major_minor(version, GRAMMAR_XMOD) == expected


@pytest.mark.parametrize(
    ("version", "expected"),
    [("11.08", "11.8"), ("12.4-rc1", "12.4"), ("12.4.99999999999999999999", None), ("011.6", "11.6"),
     ("11.6-rc1", "11.6"), ("11.6.0-rc.01", None), ("vv11.6", None), ("12.4.18446744073709551615", "12.4"),
     ("1" * 257, None)],
)  # fmt: skip
def test_parse_major_minor_after_v1_20_follows_masterminds(version: str, expected: str | None) -> None:
    # Commit 36e84731: semver.NewVersion coerces leading zeros, accepts a pre-release without patch
    # and rejects a segment beyond uint64 or a string over 256 bytes.
    if expected is None:
        with pytest.raises(RequirementsError):
            parse_major_minor(version, GRAMMAR_MASTERMINDS)
    else:
        assert parse_major_minor(version, GRAMMAR_MASTERMINDS) == expected


# Masterminds/semver @ 71f2b39f version_test.go TestNewVersion, "With loose NewVersion": (version, err).
MASTERMINDS_LOOSE = [
    ("1.2.3", False), ("1.2.3-alpha.01", True), ("1.2.3+test.01", False), ("1.2.3-alpha.-1", False),
    ("v1.2.3", False), ("1.0", False), ("v1.0", False), ("1", False), ("v1", False), ("1.2.beta", True),
    ("v1.2.beta", True), ("foo", True), ("1.2-5", False), ("v1.2-5", False), ("1.2-beta.5", False),
    ("v1.2-beta.5", False), ("\n1.2", True), ("\nv1.2", True), ("1.2.0-x.Y.0+metadata", False),
    ("v1.2.0-x.Y.0+metadata", False), ("1.2.0-x.Y.0+metadata-width-hypen", False),
    ("v1.2.0-x.Y.0+metadata-width-hypen", False), ("1.2.3-rc1-with-hypen", False),
    ("v1.2.3-rc1-with-hypen", False), ("1.2.3-0abc123", False), ("1.2.3-beta.01", True), ("1.2.3.4", True),
    ("v1.2.3.4", True), ("1.2.2147483648", False), ("1.2147483648.3", False), ("2147483648.3.0", False),
    ("12.3.4.1234", True), ("12.23.4.1234", True), ("12.3.34.1234", True),
    ("20221209-update-renovatejson-v4", False), ("1.1.2+.123", True), ("1.0.0-alpha_beta", True),
    ("1.0.0-alpha..", True), ("1.0.0-alpha..1", True), ("9.8.7+meta+meta", True),
    ("1.2.31----RC-SNAPSHOT.12.09.1--.12+788", True), ("01.1.1", False), ("1.01.1", False), ("1.1.01", False),
]  # fmt: skip


@pytest.mark.parametrize(("version", "err"), MASTERMINDS_LOOSE)
def test_masterminds_new_version_cases(version: str, err: bool) -> None:
    # Every major/minor here fits in uint32, so parseMajorMinorVersion fails exactly when NewVersion does.
    if err:
        with pytest.raises(RequirementsError):
            parse_major_minor(version, GRAMMAR_MASTERMINDS)
    else:
        parse_major_minor(version, GRAMMAR_MASTERMINDS)


@pytest.mark.parametrize(
    ("toolkit", "grammar"),
    [(None, GRAMMAR_MASTERMINDS), ("1.20.0", GRAMMAR_XMOD), ("1.20.0-rc.1", GRAMMAR_XMOD),
     ("1.20.1", GRAMMAR_MASTERMINDS), ("1.21.0", GRAMMAR_MASTERMINDS), ("1.17.8-1", GRAMMAR_XMOD),
     ("1.10.0", GRAMMAR_XMOD), ("1.9.0", GRAMMAR_SSCANF), ("not a version", GRAMMAR_MASTERMINDS)],
)  # fmt: skip
def test_cuda_version_grammar_by_toolkit_release(toolkit: str | None, grammar: str) -> None:
    assert cuda_version_grammar(toolkit) == grammar


def test_legacy_image_requirement_follows_the_node_toolkit() -> None:
    env = {"CUDA_VERSION": "11.08"}
    assert collect_requirements(env) == ["cuda>=11.8"]  # newest grammar when the toolkit is unknown
    assert collect_requirements(env, toolkit_version="1.21.0") == ["cuda>=11.8"]
    with pytest.raises(RequirementsError):
        collect_requirements(env, toolkit_version="1.17.8")
    assert collect_requirements({"CUDA_VERSION": "12.4-rc1"}, toolkit_version="1.21.0") == ["cuda>=12.4"]
    with pytest.raises(RequirementsError):
        collect_requirements({"CUDA_VERSION": "12.4.99999999999999999999"}, toolkit_version="1.21.0")
    assert collect_requirements({"CUDA_VERSION": "8.0.61"}, toolkit_version="1.9.0") == ["cuda>=8.0"]
    with pytest.raises(RequirementsUnknown):
        collect_requirements({"CUDA_VERSION": "8.0.61-rc"}, toolkit_version="1.9.0")


# --- fix: an unknown fact followed by an invalid term ---------------------------------


def test_unknown_fact_then_invalid_term_is_unknown() -> None:
    # dsl.c stops at the first true term: with cuda unknown, "cuda>=12.0 bogus" is either
    # satisfied (cuda >= 12.0) or "invalid expression" (cuda < 12.0, then "bogus" is read).
    result = evaluate_requirements(["cuda>=12.0 bogus"], node(cuda=None))
    assert result.satisfied is None and result.invalid is None
    assert result.missing == ["driver.cuda_version"]
    assert evaluate_requirements(["cuda>=12.0 bogus"], node(cuda="12.2")).satisfied is True
    assert evaluate_requirements(["cuda>=12.0 bogus"], node(cuda="11.8")).invalid == "cuda>=12.0 bogus"


def test_unknown_fact_in_a_term_ended_by_a_false_factor_is_not_read() -> None:
    # driver>=999 is false first, so the unknown cuda factor after it never decides anything.
    assert evaluate_requirements(["driver>=999,cuda>=12"], node(cuda=None)).satisfied is False


def test_unknown_brand_then_invalid_term_is_unknown() -> None:
    result = evaluate_requirements(["brand=tesla foo=bar"], node(gpus=[(None, "8.0")]))
    assert result.satisfied is None


def test_invalid_whatever_the_unknown_fact_is() -> None:
    # "bogus" comes first: invalid before any fact is read.
    assert evaluate_requirements(["bogus cuda>=12.0"], node(cuda=None)).invalid == "bogus cuda>=12.0"


def test_no_gpu_requested_evaluates_once_without_a_device() -> None:
    # NVIDIA_VISIBLE_DEVICES=none: configure.c evaluates globally, arch/brand assumed ok.
    tesla = node(cuda="12.2", gpus=[("GeForce", "8.6")])
    assert evaluate_requirements(["brand=tesla"], tesla).satisfied is False
    assert evaluate_requirements(["brand=tesla"], tesla, gpus_requested=False).satisfied is True
    assert evaluate_requirements(["cuda>=13.0"], tesla, gpus_requested=False).satisfied is False
