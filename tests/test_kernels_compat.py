"""Per-GPU verdicts follow the CUDA rules (compat-facts §6, B1-B8)."""

from __future__ import annotations

import pytest

from gpudoctor.facts import FatbinEntry
from gpudoctor.kernels.compat import DEFAULT_CCS, cc_number, fill_per_gpu, verdict
from gpudoctor.kernels.ptx import toolkit_for_isa
from gpudoctor.kernels.scan import scan_path
from tests.kernels_support import FATBINS


def cubin(target: str) -> FatbinEntry:
    return FatbinEntry(kind="cubin", target=target)


def ptx(target: str, isa: str = "9.0") -> FatbinEntry:
    return FatbinEntry(kind="ptx", target=target, ptx_isa=isa)


@pytest.mark.parametrize(
    ("entries", "cc", "expected"),
    [
        ([cubin("sm_80")], "8.6", "native"),  # B1: same major, higher minor
        ([cubin("sm_86")], "8.0", "none"),  # B1: lower minor
        ([cubin("sm_80")], "9.0", "none"),  # B1: other major
        ([cubin("sm_90a")], "9.0", "native"),  # B4: exact arch
        ([cubin("sm_100a")], "10.3", "none"),  # B4: no forward compatibility
        ([ptx("sm_90a")], "10.0", "none"),  # B4: PTX too
        ([cubin("sm_100f")], "10.3", "native"),  # B5: family
        ([cubin("sm_100f")], "12.0", "none"),  # B5: 10.x and 12.x are different families
        ([cubin("sm_103f")], "10.0", "none"),  # B5: family only upwards
        ([ptx("sm_120f")], "12.1", "jit"),
        ([ptx("sm_80")], "12.1", "jit"),  # B2: plain PTX crosses majors
        ([ptx("sm_90")], "8.9", "none"),
        ([cubin("sm_90"), ptx("sm_90")], "9.0", "native"),  # B3: cubin wins
        ([], "9.0", "none"),
    ],
)
def test_rules(entries: list[FatbinEntry], cc: str, expected: str) -> None:
    assert verdict(entries, cc) == expected


def test_ptx_newer_than_driver_is_not_usable() -> None:
    assert verdict([ptx("sm_80", "9.0")], "9.0", driver_cuda="12.8") == "none"  # B6
    assert verdict([ptx("sm_80", "8.7")], "9.0", driver_cuda="12.8") == "jit"
    assert verdict([ptx("sm_80", "9.9")], "9.0", driver_cuda="13.0") == "none"  # 9.x is CUDA 13.x
    assert verdict([ptx("sm_80", "10.0")], "9.0", driver_cuda="13.0") == "unknown"


def test_ptx_isa_table() -> None:
    assert [toolkit_for_isa(v) for v in ("7.8", "8.5", "8.6", "8.8", "9.0", "9.2", "6.4")] == [
        "11.8",
        "12.5",
        "12.7",
        "12.9",
        "13.0",
        "13.2",
        None,
    ]


@pytest.mark.parametrize("bad", ["9", "9.10", "x.y", "", "sm_90"])
def test_bad_compute_capability(bad: str) -> None:
    with pytest.raises(ValueError):
        cc_number(bad)


# Expected verdicts for every fixture, written from the build commands in
# fixtures/fatbins/BUILD.md and the rules, for 7.0 .. 12.1 (DEFAULT_CCS order).
EXPECTED = {
    "arch_100a_ptx.so": "--------N----",
    "arch_90a.so": "-------N-----",
    "blackwell_121.so": "--------NN-NN",
    "compressed_all.so": "---NNNNNJJJJJ",
    "exe_ptx80": "---JJJJJJJJJJ",
    "family_100f_120f.so": "--------NN-NN",
    "family_103f_ptx.so": "---------N---",
    "family_110f.so": "----------N--",
    "multi_cubin_ptx.so": "--NNNNNNJJJJJ",
    "plain_sm80.so": "---NNNN------",
    "ptx_only_120.so": "-----------JJ",
    "ptx_only_75.so": "--JJJJJJJJJJJ",
    "sm86_87_88.so": "----NNN------",
    "uncompressed.so": "------NJJJJJJ",
}
LETTER = {"native": "N", "jit": "J", "none": "-", "unknown": "?"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_verdicts(name: str) -> None:
    facts = scan_path(str(FATBINS / "bin" / name))
    fill_per_gpu(facts, DEFAULT_CCS)
    assert "".join(LETTER[facts.per_gpu[cc]] for cc in DEFAULT_CCS) == EXPECTED[name]


def test_old_driver_turns_jit_into_none() -> None:
    facts = scan_path(str(FATBINS / "bin" / "multi_cubin_ptx.so"))
    fill_per_gpu(facts, ["9.0", "10.0"], driver_cuda="12.9")
    assert facts.per_gpu == {"9.0": "native", "10.0": "none"}
