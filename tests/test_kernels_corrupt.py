"""Damaged and unusual binaries: never a silent change of verdict, never ok on what could not be read.

Every input is an nvcc-built fixture (fixtures/fatbins/BUILD.md) changed here, byte by byte,
the way a damaged download, a hostile archive or an unusual linker layout would change it.
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import zipfile
from pathlib import Path

import pytest

from gpudoctor.facts import BinaryFacts
from gpudoctor.kernels import wheel
from gpudoctor.kernels.elf import read_elf, relative_relocations
from gpudoctor.kernels.scan import scan_path, scan_stream
from gpudoctor.kernels.sources import scan_targets
from tests import kernels_support
from tests.kernels_support import FATBINS
from tests.support.cli import run_gpudoctor

BIN = FATBINS / "bin"
MAGIC = struct.pack("<I", 0xBA55ED50)


def run(*args: str) -> tuple[int, dict]:
    done = run_gpudoctor("kernels", *args, "--format", "json", timeout=60)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout) if done.stdout else {}


# --- ELF surgery on the fixtures (ELF64 little-endian, as nvcc on x86-64 writes them) ---


def section_headers(data: bytes) -> dict[str, tuple[int, int, int, int]]:
    """name -> (header offset, sh_addr, sh_offset, sh_size)."""
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    entsize, count, names_index = struct.unpack_from("<HHH", data, 0x3A)
    names_at = struct.unpack_from("<Q", data, shoff + names_index * entsize + 0x18)[0]
    found = {}
    for index in range(count):
        header = shoff + index * entsize
        name_at = names_at + struct.unpack_from("<I", data, header)[0]
        name = data[name_at : data.index(b"\0", name_at)].decode()
        addr, offset, size = struct.unpack_from("<QQQ", data, header + 0x10)
        found[name] = (header, addr, offset, size)
    return found


def rename_section(data: bytearray, old: str, new: str) -> None:
    assert len(new) <= len(old)
    at = data.index(old.encode() + b"\0")
    data[at : at + len(old)] = new.encode().ljust(len(old), b"\0")


def containers(data: bytes) -> list[int]:
    """File offsets of the containers in .nv_fatbin."""
    _h, _a, offset, size = section_headers(data)[".nv_fatbin"]
    found, at = [], offset
    while at < offset + size:
        found.append(at)
        header, body = struct.unpack_from("<HQ", data, at + 6)
        at += header + body
        while at < offset + size and data[at] == 0:
            at += 1
    return found


def both_modes(data: bytes, name: str = "lib.so") -> tuple[BinaryFacts | None, BinaryFacts | None]:
    """The same bytes scanned as a file (pread) and as a stream (tar member, not re-readable)."""
    from gpudoctor.kernels.scan import scan_buffer

    return scan_buffer(data, name), scan_stream(io.BytesIO(data), name)


def write_tar(path: Path, members: dict[str, bytes]) -> Path:
    return kernels_support.write_tar(path, members, "w:gz")


def write_wheel(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


# --- 1. a damaged container is an error, never skipped ------------------------------------


@pytest.mark.parametrize(("fixture", "which"), [("multi_cubin_ptx.so", 0), ("ptx_only_75.so", 1)])
def test_damaged_container_magic_is_an_error_in_every_mode(tmp_path: Path, fixture: str, which: int) -> None:
    data = bytearray((BIN / fixture).read_bytes())
    at = containers(bytes(data))[which]
    data[at : at + 4] = b"\xde\xad\xbe\xef"
    mapped, streamed = both_modes(bytes(data))
    assert mapped is not None and streamed is not None
    assert mapped.error == streamed.error == f"no fatbin magic at {at:#x}"
    assert mapped.cubins == mapped.ptx == []

    (tmp_path / "lib.so").write_bytes(data)
    write_wheel(tmp_path / "x-1.0-py3-none-any.whl", {"x/lib.so": bytes(data)})
    write_tar(tmp_path / "layer.tar.gz", {"x/lib.so": bytes(data)})
    for target in ("lib.so", "x-1.0-py3-none-any.whl", "layer.tar.gz"):
        code, report = run(str(tmp_path / target), "--gpu", "7.5")
        (binary,) = report["binaries"]
        assert binary["error"] == f"no fatbin magic at {at:#x}", target
        assert binary["per_gpu"] == {"7.5": "unknown"}
        assert report["verdict"] == "unknown" and code == 3, target


def test_a_damaged_wrapper_is_an_error() -> None:
    data = bytearray((BIN / "multi_cubin_ptx.so").read_bytes())
    _h, _a, offset, _size = section_headers(bytes(data))[".nvFatBinSegment"]
    data[offset : offset + 4] = b"\xff\xff\xff\xff"
    mapped = scan_path_bytes(bytes(data))
    assert mapped.error == f"no fatbin wrapper magic at {offset:#x}"


def scan_path_bytes(data: bytes) -> BinaryFacts:
    from gpudoctor.kernels.scan import scan_buffer

    facts = scan_buffer(data, "lib.so")
    assert facts is not None
    return facts


# --- 2 and 3. only what the runtime can load: no errors from, no kernels in, other bytes ----


def test_fatbin_lookalike_bytes_in_a_host_library_are_not_read(tmp_path: Path) -> None:
    data = bytearray((BIN / "hostonly.so").read_bytes())
    _h, _a, text, _size = section_headers(bytes(data))[".text"]
    container = (BIN / "multi_cubin_ptx.so").read_bytes()
    first = containers(container)[0]
    data[text : text + 4] = MAGIC  # a damaged "container" in code
    data[text + 64 : text + 64 + 0x100] = container[first : first + 0x100]  # half a real one
    for facts in both_modes(bytes(data)):
        assert facts is not None and facts.error is None and facts.fatbin_entries == []
    write_wheel(tmp_path / "host-1.0-py3-none-any.whl", {"host/libhost.so": bytes(data)})
    code, report = run(str(tmp_path / "host-1.0-py3-none-any.whl"))
    assert report["binaries"] == [] and report["errors"] == [] and code == 0


def far_section_names(data: bytes, disguise: bool = False) -> bytes:
    """The file with .shstrtab moved 9 MiB out and the section table 17 MiB beyond it
    (as when a 17 MiB .strtab lies between). With `disguise`, the table's own name
    ".shstrtab" is changed too, so nothing marks it while streaming."""
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    entsize, count, names_index = struct.unpack_from("<HHH", data, 0x3A)
    table = bytearray(data[shoff : shoff + entsize * count])
    names_header = names_index * entsize
    names_offset, names_size = struct.unpack_from("<QQ", table, names_header + 0x18)
    out = bytearray(data) + bytes(9 << 20)
    struct.pack_into("<Q", table, names_header + 0x18, len(out))
    names = data[names_offset : names_offset + names_size]
    if disguise:
        names = names.replace(b".shstrtab\0", b".shstrtaX\0")
    out += names + bytes(17 << 20)
    struct.pack_into("<Q", out, 0x28, len(out))
    return bytes(out + table)


def test_section_names_far_from_the_table(tmp_path: Path) -> None:
    plain = far_section_names((BIN / "multi_cubin_ptx.so").read_bytes())
    on_disk = scan_path_bytes(plain)
    assert on_disk.cubins == ["sm_75", "sm_80", "sm_86", "sm_90"] and on_disk.ptx == ["sm_90"]
    # The section name table is found by its own name while streaming: one pass suffices.
    streamed = scan_stream(io.BytesIO(plain), "lib.so")
    assert streamed is not None and (streamed.error, streamed.cubins, streamed.ptx) == (
        None,
        on_disk.cubins,
        on_disk.ptx,
    )
    data = far_section_names((BIN / "multi_cubin_ptx.so").read_bytes(), disguise=True)
    # A tar member is read once: what was not kept is an error, never "report every magic".
    streamed = scan_stream(io.BytesIO(data), "lib.so")
    assert (
        streamed is not None
        and streamed.cubins == []
        and "not kept while streaming" in (streamed.error or "")
    )
    # A wheel member can be read again: the second pass fetches the section names.
    write_wheel(tmp_path / "far-1.0-py3-none-any.whl", {"far/lib.so": data})
    (binary,) = scan_targets([str(tmp_path / "far-1.0-py3-none-any.whl")]).binaries
    assert (binary.error, binary.cubins, binary.ptx) == (None, on_disk.cubins, on_disk.ptx)


# --- 6. fatbins where the runtime finds them: wrappers, relocations (cuFFT's .ldata) --------


def test_wrapped_fatbins_outside_nv_fatbin_are_found() -> None:
    """.nvFatBinSegment wrappers point (through R_X86_64_RELATIVE) at containers in a section
    that is not called .nv_fatbin: where __cudaRegisterFatBinary gets them, so do we."""
    data = bytearray((BIN / "multi_cubin_ptx.so").read_bytes())
    rename_section(data, ".nv_fatbin", ".ldata")
    for facts in both_modes(bytes(data)):
        assert facts is not None and facts.error is None
        assert facts.cubins == ["sm_75", "sm_80", "sm_86", "sm_90"] and facts.ptx == ["sm_90"]


def cufft_style() -> bytes:
    """No wrapper section (cuFFT builds its wrappers at run time); .nv_fatbin keeps only the
    first container, the second sits in .ldata, reached only by a RELATIVE relocation."""
    data = bytearray((BIN / "multi_cubin_ptx.so").read_bytes())
    first, second = containers(bytes(data))
    sections = section_headers(bytes(data))
    header, _a, fatbin_offset, fatbin_size = sections[".nv_fatbin"]
    struct.pack_into("<Q", data, header + 0x20, second - first)
    module_id = sections["__nv_module_id"][0]
    struct.pack_into("<QQQ", data, module_id + 0x10, second, second, fatbin_offset + fatbin_size - second)
    rename_section(data, "__nv_module_id", ".ldata")
    rename_section(data, ".nvFatBinSegment", ".data.wrappers")
    return bytes(data)


def test_relocated_pointers_to_fatbins_in_ldata_are_followed(tmp_path: Path) -> None:
    data = cufft_style()
    for facts in both_modes(data):
        assert facts is not None and facts.error is None
        # sm_90 PTX is only in the second container: found through the relocation.
        assert facts.cubins == ["sm_75", "sm_80", "sm_86", "sm_90"] and facts.ptx == ["sm_90"]


# cuFFT's shape, built by nvcc: fatbins in .ldata whose addresses only the registration code
# holds (movabs $fatbin@GOTOFF, then + GOT: the medium code model's way to large data,
# resolved at link time, so no relocation and no stored pointer leads there), a .nv_fatbin
# stub, and no section named .nvFatBinSegment (cuFFT has none).
REGISTER_AT_RUN_TIME = """
struct wrapper { int magic; int version; const void *data; void *unused; };
extern void **__cudaRegisterFatBinary(void *);
void **register_plan(struct wrapper *w, int which) {
    w->magic = 0x466243b1;
    w->version = 1;
    w->data = which ? (const void *)plan90 : (const void *)plan80;
    w->unused = 0;
    return __cudaRegisterFatBinary(w);
}
"""


def c_array(name: str, data: bytes) -> str:
    data += bytes(-len(data) % 8)
    words = ", ".join(hex(int.from_bytes(data[at : at + 8], "little")) for at in range(0, len(data), 8))
    return f"static unsigned long long {name}[] = {{{words}}};\n"


@pytest.fixture(scope="module")
def fft_style(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, dict[str, bytes]]:
    """(the library, {name: fatbin embedded in its .ldata})."""
    nvcc = kernels_support.nvcc()
    work = tmp_path_factory.mktemp("fft_style")
    (work / "plan.cu").write_text("__global__ void plan(float *x, float y) { x[threadIdx.x] *= y; }\n")
    (work / "stub.cu").write_text("__global__ void stub(float *x) { x[threadIdx.x] = 1.0f; }\n")
    fatbins = {}
    for name, gencode in (
        ("plan80", "arch=compute_80,code=sm_80"),
        ("plan90", "arch=compute_90,code=[sm_90,compute_90]"),
    ):
        subprocess.run(
            [nvcc, "-fatbin", "-gencode", gencode, "plan.cu", "-o", f"{name}.fatbin"], cwd=work, check=True
        )
        fatbins[name] = (work / f"{name}.fatbin").read_bytes()
    source = "".join(c_array(name, data) for name, data in fatbins.items()) + REGISTER_AT_RUN_TIME
    (work / "plans.c").write_text(source)
    subprocess.run(
        [
            nvcc,
            "-shared",
            "-cudart",
            "shared",
            "-Xcompiler",
            "-fPIC,-O2,-mcmodel=medium,-mlarge-data-threshold=0",
            "-gencode",
            "arch=compute_75,code=sm_75",
            "stub.cu",
            "plans.c",
            "-o",
            "libfft_style.so",
        ],
        cwd=work,
        check=True,
    )
    subprocess.run(
        ["objcopy", "--rename-section", ".nvFatBinSegment=.data.nvwrap", "libfft_style.so"],
        cwd=work,
        check=True,
    )
    return (work / "libfft_style.so").read_bytes(), fatbins


def test_fatbins_reached_only_from_registration_code_are_found(
    fft_style: tuple[bytes, dict[str, bytes]],
) -> None:
    data, fatbins = fft_style
    sections = section_headers(data)
    assert ".nvFatBinSegment" not in sections and ".ldata" in sections
    _h, ldata_address, ldata_offset, _size = sections[".ldata"]
    pointed_to = set(relative_relocations(read_elf(data), lambda at, size: data[at : at + size]).values())
    for fatbin in fatbins.values():
        assert data.index(fatbin) - ldata_offset + ldata_address not in pointed_to
    for facts in both_modes(data):
        assert facts is not None and facts.error is None
        # sm_75 is the .nv_fatbin stub; sm_80 and sm_90 only in .ldata, reached through the code.
        assert facts.cubins == ["sm_75", "sm_80", "sm_90"] and facts.ptx == ["sm_90"]


def test_damaged_fatbin_reached_from_code_is_an_error(fft_style: tuple[bytes, dict[str, bytes]]) -> None:
    data, fatbins = fft_style
    damaged = bytearray(data)
    at = data.index(fatbins["plan80"])
    struct.pack_into("<H", damaged, at + 6, 2)  # container header size 2: impossible
    for facts in both_modes(bytes(damaged)):
        assert facts is not None and facts.cubins == []
        assert facts.error == f"fatbin header size 2 at {at:#x} is too small"


# --- 4 and issue 18.1: what cannot be read is unknown, never ok -----------------------------


def test_unreadable_inputs_are_unknown(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    for fixture in ("plain_sm80.so", "arch_90a.so"):
        data = (BIN / fixture).read_bytes()
        (corrupt / fixture).write_bytes(data[: len(data) // 3])
    (tmp_path / "empty.so").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not a binary\n")
    (tmp_path / "kernel.ptx").write_text(".version 8.7\n.target sm_90\n")
    for target in ("corrupt", "empty.so", "notes.txt", "kernel.ptx"):
        code, report = run(str(tmp_path / target))
        assert report["verdict"] == "unknown" and code == 3, target
        assert all("error" in binary for binary in report["binaries"]) and report["binaries"], target


def test_intact_library_warns_and_a_truncated_copy_is_unknown(tmp_path: Path) -> None:
    data = (BIN / "arch_90a.so").read_bytes()
    code, report = run(str(BIN / "arch_90a.so"), "--gpu", "10.0")
    assert (code, report["verdict"]) == (1, "warn")
    (tmp_path / "arch_90a.so").write_bytes(data[: len(data) - 200])
    code, report = run(str(tmp_path / "arch_90a.so"), "--gpu", "10.0")
    assert (code, report["verdict"]) == (3, "unknown")
    assert [f["rule_id"] for f in report["findings"]] == ["GD-KERN-007"]
    assert "arch_90a.so" in report["findings"][0]["missing_facts"][0]


# --- 7. minor: impossible arch, --gpu sm_XX ---------------------------------------------------


def test_impossible_arch_is_an_error_not_sm_9999a() -> None:
    data = bytearray((BIN / "arch_90a.so").read_bytes())
    entry = containers(bytes(data))[0] + 16
    struct.pack_into("<I", data, entry + 28, 9999)
    mapped, streamed = both_modes(bytes(data))
    assert mapped is not None and streamed is not None
    assert (
        mapped.error
        == streamed.error
        == f"fatbin entry at {entry:#x} names an impossible architecture (9999)"
    )


def test_gpu_option_takes_the_sm_names_the_report_prints() -> None:
    by_number = run(str(BIN / "arch_90a.so"), "--gpu", "9.0,10.0")
    by_name = run(str(BIN / "arch_90a.so"), "--gpu", "sm_90", "--gpu", "sm_100")
    assert by_number == by_name and by_name[1]["compute_capabilities"] == ["9.0", "10.0"]


# --- issue 18: hostile archives ----------------------------------------------------------------


def test_ar_member_with_negative_size_ends_at_once(tmp_path: Path) -> None:
    archive = b"!<arch>\n" + b"x.o/".ljust(16) + b"0".ljust(12) + b"0".ljust(6) * 2 + b"644".ljust(8)
    archive += b"-60".ljust(10) + b"`\n"
    assert len(archive) == 68
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "libx.a").write_bytes(archive)
    write_tar(tmp_path / "layer.tar.gz", {"lib/libx.a": archive})
    for target in ("lib/libx.a", "lib", "layer.tar.gz"):
        code, report = run(str(tmp_path / target))
        (binary,) = report["binaries"]
        assert binary["error"] == "ar member header at 0x8 has a bad size b'-60'", target
        assert code == 3


def test_archive_member_count_is_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wheel, "MAX_MEMBERS", 100)
    write_tar(tmp_path / "many.tar.gz", {f"f{index}": b"" for index in range(101)})
    scan = scan_targets([str(tmp_path / "many.tar.gz")])
    assert [e.message for e in scan.errors] == [
        f"{tmp_path / 'many.tar.gz'}: archive unreadable or cut short: more than 100 members"
    ]
    write_wheel(tmp_path / "many-1.0-py3-none-any.whl", {f"f{index}": b"x" for index in range(101)})
    (binary,) = scan_targets([str(tmp_path / "many-1.0-py3-none-any.whl")]).binaries
    assert binary.error == "unreadable zip archive: 101 members, more than the 100 allowed"


def damaged_wheels(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name -> (wheel, text its error must contain)."""
    library = (BIN / "plain_sm80.so").read_bytes()
    good = write_wheel(tmp_path / "good-1.0-py3-none-any.whl", {"good/lib.so": library})
    raw = good.read_bytes()
    cut = tmp_path / "cut-1.0-py3-none-any.whl"
    cut.write_bytes(raw[:-30])  # end of central directory damaged
    flipped = bytearray(raw)
    data_at = 30 + len("good/lib.so")
    flipped[data_at : data_at + 64] = bytes(range(64))  # deflate stream garbage
    (tmp_path / "flipped-1.0-py3-none-any.whl").write_bytes(flipped)
    method = bytearray(raw)
    method[8:10] = struct.pack("<H", 99)  # local header: AES, not supported
    central = method.rindex(b"PK\x01\x02")
    method[central + 10 : central + 12] = struct.pack("<H", 99)
    (tmp_path / "method-1.0-py3-none-any.whl").write_bytes(method)
    return {
        "truncated": (cut, "unreadable zip archive"),
        "deflate garbage": (tmp_path / "flipped-1.0-py3-none-any.whl", "cannot read from"),
        "unsupported method": (tmp_path / "method-1.0-py3-none-any.whl", "compression method 99"),
    }


def test_damaged_wheels_and_gzip_streams_are_one_line_errors(tmp_path: Path) -> None:
    cases = damaged_wheels(tmp_path)
    layer = write_tar(
        tmp_path / "layer.tar.gz", {"lib.so": (BIN / "plain_sm80.so").read_bytes()}
    ).read_bytes()
    (tmp_path / "bad.tar.gz").write_bytes(layer[:20] + bytes(range(200)) + layer[220:])
    cases["gzip garbage"] = (tmp_path / "bad.tar.gz", "archive unreadable or cut short")
    for name, (path, text) in cases.items():
        done = run_gpudoctor("kernels", str(path), "--format", "json", timeout=60)
        assert done.returncode == 3, (name, done.returncode, done.stderr)
        assert "Traceback" not in done.stderr and text in done.stdout, (name, done.stdout)
        assert json.loads(done.stdout)["verdict"] == "unknown"


# --- 5. package attribution from RECORD ----------------------------------------------------------


def dist_info(root: Path, name: str, version: str, files: list[str]) -> None:
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\n")
    rows = [f"{path},sha256=x,1" for path in files] + [f"{info.name}/RECORD,,"]
    (info / "RECORD").write_text("\n".join(rows) + "\n")


def test_owner_comes_from_record(tmp_path: Path) -> None:
    site = tmp_path / "lib" / "python3.12" / "site-packages"
    layout = {
        "nvidia/curand/lib/libcurand.so.10": "plain_sm80.so",
        "nvidia/cu13/lib/libcufft.so.12": "multi_cubin_ptx.so",
        "cupy_backends/cuda/libs/_cub.so": "sm86_87_88.so",
        "unrecorded/libfoo.so": "arch_90a.so",
    }
    for path, fixture in layout.items():
        (site / path).parent.mkdir(parents=True, exist_ok=True)
        (site / path).write_bytes((BIN / fixture).read_bytes())
    dist_info(site, "nvidia-curand", "10.4.0.35", ["nvidia/curand/include/curand.h"])
    dist_info(site, "nvidia-curand-cu12", "10.3.10.19", ["nvidia/curand/lib/libcurand.so.10"])
    dist_info(site, "nvidia-cufft", "12.0.0.61", ["nvidia/cu13/lib/libcufft.so.12"])
    dist_info(site, "cupy-cuda12x", "13.6.0", ["cupy_backends/cuda/libs/_cub.so"])
    scan = scan_targets([str(tmp_path)])
    owners = {binary.path.split("site-packages/")[1]: binary.package for binary in scan.binaries}
    assert owners == {
        "nvidia/curand/lib/libcurand.so.10": "nvidia-curand-cu12",
        "nvidia/cu13/lib/libcufft.so.12": "nvidia-cufft",
        "cupy_backends/cuda/libs/_cub.so": "cupy-cuda12x",
        "unrecorded/libfoo.so": None,
    }
    assert "cupy-cuda12x" in {package.name for package in scan.packages}
    wheel_path = write_wheel(
        tmp_path / "nvidia_cufft-12.0.0.61-py3-none-any.whl",
        {
            "nvidia/cu13/lib/libcufft.so.12": (BIN / "multi_cubin_ptx.so").read_bytes(),
            "nvidia_cufft-12.0.0.61.dist-info/METADATA": "Metadata-Version: 2.1\nName: nvidia-cufft\nVersion: 12.0.0.61\n",
            "nvidia_cufft-12.0.0.61.dist-info/RECORD": "nvidia/cu13/lib/libcufft.so.12,sha256=x,1\n",
        },
    )
    (binary,) = scan_targets([str(wheel_path)]).binaries
    assert binary.package == "nvidia-cufft"


def test_scan_path_still_reads_plain_files() -> None:
    facts = scan_path(str(BIN / "multi_cubin_ptx.so"))
    assert facts is not None and facts.ptx == ["sm_90"]
