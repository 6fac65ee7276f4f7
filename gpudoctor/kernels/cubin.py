"""A bare cubin (ELF with e_machine EM_CUDA), as `nvcc -cubin` writes it.

Its target comes from e_flags: CUDA ELF ABI version 7 keeps the SM in bits
0-7 and marks arch-specific ("a") code with 0x800 (EF_CUDA_ACCELERATORS);
ABI version 8 (CUDA 12.8+) keeps the SM in bits 8-15 and records "a" in the
`.nv.compat` attribute 9 (value 1). Field names: LLVM
llvm/include/llvm/BinaryFormat/ELF.h (EF_CUDA_*); the ABI 8 layout and the
.nv.compat attribute were read off nvcc 13.0 output and match cuobjdump's
names for sm_80, sm_90, sm_90a, sm_100a, sm_100f, sm_120a cubins (a family
"f" cubin carries no marker cuobjdump shows, and cuobjdump names it sm_XY).
"""

from __future__ import annotations

from gpudoctor.kernels.elf import ElfFile, Reader
from gpudoctor.kernels.fatbin import CUDA_ABI_V8, KIND_CUBIN, RawEntry, cubin_arch

_EF_CUDA_ACCELERATORS = 0x800
_ATTR_ARCH_SPECIFIC = 9
_MAX_COMPAT = 4096


def cubin_entry(elf: ElfFile, read: Reader) -> RawEntry:
    if elf.abi_version >= CUDA_ABI_V8:
        specific = _compat_attribute(elf, read, _ATTR_ARCH_SPECIFIC) == 1
    else:
        specific = bool(elf.flags & _EF_CUDA_ACCELERATORS)
    return RawEntry(
        kind=KIND_CUBIN,
        arch=cubin_arch(elf.abi_version, elf.flags),
        variant="a" if specific else "",
        version_major=0,
        version_minor=0,
        compressed=False,
        payload_offset=0,
        payload_size=0,
    )


def _compat_attribute(elf: ElfFile, read: Reader, wanted: int) -> int | None:
    """`.nv.compat` holds records: u8 format (2: u8 attribute, u16 value), ..."""
    section = elf.section(".nv.compat")
    if section is None:
        return None
    data = read(section.offset, min(section.size, _MAX_COMPAT))
    cursor = 0
    while cursor + 4 <= len(data):
        form, attribute = data[cursor], data[cursor + 1]
        if form != 2:
            break  # other record formats are not needed; stop rather than guess their size
        value = int.from_bytes(data[cursor + 2 : cursor + 4], "little")
        if attribute == wanted:
            return value
        cursor += 4
    return None
