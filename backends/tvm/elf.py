"""The function symbols of an ELF64 file: what a cubin or an AMDGPU code object exports.

Both are little-endian ELF64; their kernels are global ``FUNC`` symbols. Reading the
symbol table ourselves (about 30 lines) keeps the check free of binutils and of a GPU.
"""

from __future__ import annotations

import struct

_SHT_SYMTAB = 2
_STT_FUNC = 2
_STB_GLOBAL = 1
_EM_CUDA, _EM_AMDGPU = 0xBE, 0xE0
# EF_AMDGPU_MACH values (LLVM's ELF.h) of the GPUs we name
_AMDGPU_MACH = {0x2C: "gfx900", 0x2F: "gfx906", 0x30: "gfx908", 0x3F: "gfx90a", 0x40: "gfx940",
                0x4B: "gfx941", 0x4C: "gfx942", 0x36: "gfx1030", 0x41: "gfx1100"}


def is_elf(data: bytes) -> bool:
    return data[:4] == b"\x7fELF"


def gpu_arch(data: bytes) -> str:
    """The GPU a cubin or code object is for, from its ELF header: ``sm_90``, ``gfx942``."""
    machine, = struct.unpack_from("<H", data, 0x12)
    flags, = struct.unpack_from("<I", data, 0x30)
    if machine == _EM_CUDA:
        return f"sm_{(flags >> 8) & 0xFF}"  # EF_CUDA_SM, cubin ABI version 8 (CUDA 12.8+)
    if machine == _EM_AMDGPU:
        return _AMDGPU_MACH.get(flags & 0xFF, f"amdgpu mach {flags & 0xFF:#x}")
    return f"ELF machine {machine:#x}"


def function_symbols(data: bytes) -> list[str]:
    """Names of the global function symbols, in symbol-table order.

    Raises
    ------
    ValueError
        ``data`` is not a little-endian ELF64 file.
    """
    if not is_elf(data) or data[4] != 2 or data[5] != 1:
        raise ValueError("not a little-endian ELF64 file")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize)
                for i in range(shnum)]
    names: list[str] = []
    for _, kind, _, _, offset, size, link, _, _, entsize in sections:
        if kind != _SHT_SYMTAB:
            continue
        strtab_offset = sections[link][4]
        for at in range(offset, offset + size, entsize or 24):
            st_name, st_info = struct.unpack_from("<IB", data, at)
            if st_info & 0xF == _STT_FUNC and st_info >> 4 == _STB_GLOBAL:
                end = data.index(b"\0", strtab_offset + st_name)
                names.append(data[strtab_offset + st_name:end].decode())
    return names
