"""The GPU code of a built program: the binary (a cubin or a code object), the readable
source (CUDA C, AMDGPU assembly) and the kernel names in each, per generated kernel.

TVM names the device function of PrimFunc ``f`` ``f_kernel`` (``f_kernel_1``... when one
PrimFunc launches several). In CUDA source each kernel is declared once and defined once,
so ``__global__`` appears twice per kernel: kernels are counted by unique name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import tvm

from backends.tvm.elf import function_symbols
from backends.tvm.toolchain import DeviceBinary, compile_cuda
from compiler.errors import LoweringError

_MODULE_KIND = {"cuda": "cuda", "rocm": "hip"}
_CUDA_KERNEL = re.compile(r'extern "C" __global__ void (?:__launch_bounds__\(\d+\) )?(\w+)\(')
_AMDGPU_KERNEL = re.compile(r"^\s*\.globl\s+(\w+)\s*$", re.M)


@dataclass
class DeviceCode:
    kind: str  # "cuda" or "rocm"
    arch: str  # "sm_80", "gfx90a"
    binary: bytes  # the cubin (nvcc) or the code object (ld.lld)
    source: str  # CUDA C, or AMDGPU assembly

    @property
    def binary_format(self) -> str:
        return "cubin" if self.kind == "cuda" else "hsaco"

    @property
    def source_format(self) -> str:
        return "cuda" if self.kind == "cuda" else "amdgcn-asm"

    def kernel_names(self) -> list[str]:
        """The kernels the source defines, each once, in source order."""
        pattern = _CUDA_KERNEL if self.kind == "cuda" else _AMDGPU_KERNEL
        return list(dict.fromkeys(pattern.findall(self.source)))

    def binary_kernels(self) -> list[str]:
        """The kernels the binary exports (its global function symbols)."""
        return function_symbols(self.binary)

    def kernels_of(self, primfunc: str) -> list[str]:
        """The device kernels TVM made of one PrimFunc."""
        own = re.compile(rf"{re.escape(primfunc)}_kernel(?:_\d+)?")
        return [n for n in self.kernel_names() if own.fullmatch(n)]

    def kernel_source(self, name: str) -> str:
        """One kernel's definition (CUDA) or its code from label to end (assembly)."""
        if self.kind == "cuda":
            return _cuda_definition(self.source, name)
        return _asm_function(self.source, name)


def collect(executable: tvm.runtime.Module, built: DeviceBinary,
            kernels: list[str]) -> DeviceCode:
    """The device code of ``executable``, which TVM just compiled under
    ``toolchain.gpu_toolchain``; compiles the CUDA source with nvcc where TVM kept it
    as source (no CUDA driver here).

    Raises
    ------
    LoweringError
        A kernel (PrimFunc name in ``kernels``) has no GPU kernel: no schedule bound it to
        GPU threads, so TVM would have compiled it for the host.
    """
    device = _device_module(executable, _MODULE_KIND[built.kind])
    if built.kind == "cuda":
        source = (device.inspect_source("cuda") or device.inspect_source("")) if device else ""
        source = source or built.source
        binary = built.binary or (compile_cuda(source, built.arch) if source else b"")
    else:
        source = device.inspect_source("asm") if device else ""
        binary = built.binary
    code = DeviceCode(built.kind, built.arch, binary, source)
    missing = [k for k in dict.fromkeys(kernels) if not code.kernels_of(k)]
    if missing:
        raise LoweringError(f"{len(missing)} kernel(s) have no {built.kind} GPU kernel (no "
                            f"schedule bound them to GPU threads): {', '.join(missing)}")
    return code


def _device_module(executable: tvm.runtime.Module, kind: str) -> tvm.runtime.Module | None:
    pending = list(getattr(executable, "mod", executable).imports)
    while pending:
        module = pending.pop(0)
        if module.kind == kind:
            return module
        pending.extend(module.imports)
    return None


def _cuda_definition(source: str, name: str) -> str:
    for match in _CUDA_KERNEL.finditer(source):
        if match.group(1) != name:
            continue
        start = source.find("{", match.end())
        end = source.find(";", match.end())
        if start < 0 or 0 <= end < start:  # a declaration; the definition comes later
            continue
        depth = 0
        for i in range(start, len(source)):
            depth += {"{": 1, "}": -1}.get(source[i], 0)
            if depth == 0:
                return source[match.start():i + 1]
    raise KeyError(f"no __global__ function {name!r} in the CUDA source")


def _asm_function(source: str, name: str) -> str:
    start = source.find(f"\n{name}:")
    if start < 0:
        raise KeyError(f"no kernel {name!r} in the AMDGPU assembly")
    end = source.find(".Lfunc_end", start)
    end = source.find("\n", source.find("\n", end) + 1) if end >= 0 else len(source)
    return source[start + 1:end]
