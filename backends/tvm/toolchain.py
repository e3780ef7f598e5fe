"""The tools GPU code generation needs besides TVM, found (and checked) before a build.

- CUDA: ``nvcc`` compiles TVM's CUDA C to a cubin per target arch. TVM 0.27 itself only
  keeps the source when its CUDA runtime is not loaded (no driver), and compiles it with
  NVRTC (the ``cuda-bindings`` wheel) when it is; ``tvm_callback_cuda_compile`` is how it
  asks, so during a build we answer with nvcc for the target's arch.
- ROCm: TVM's LLVM amdgcn backend links the AMD device libraries (``ocml`` & co., LLVM
  bitcode: Debian's ``rocm-device-libs``), then ``ld.lld`` of TVM's LLVM major version
  (Debian's ``lld-22``) turns the object into a code object (hsaco). TVM finds the bitcode
  through ``$ROCM_PATH/amdgcn/bitcode``; where ``ROCM_PATH`` is unset or lacks it we make a
  folder whose ``amdgcn/bitcode`` links to the Debian one, under our cache directory.

Every missing tool raises ``ToolchainError`` naming what to install.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import tvm
import tvm_ffi

from backends.tvm.cuda_fixes import fix_cuda_source
from compiler.errors import LoweringError, ToolchainError

CUDA_INSTALL = ("install NVIDIA's CUDA toolkit compiler (Debian/Ubuntu, from NVIDIA's apt "
                "repository: `apt-get install cuda-nvcc-13-0`; or `pip install "
                "nvidia-cuda-nvcc`), or point CUDA_PATH at a toolkit that has bin/nvcc")
ROCM_BITCODE_INSTALL = "install the AMD device libraries: `apt-get install rocm-device-libs`"
DEFAULT_CUDA_HOME = "/usr/local/cuda"
DEBIAN_BITCODE = "/usr/lib/x86_64-linux-gnu/amdgcn/bitcode"
# The device libraries every AMDGPU kernel links (TVM's list, tvm/support/rocm.py), less
# the ISA-version ones, which we pick per target.
ROCM_BITCODE = ("oclc_daz_opt_on", "ocml", "oclc_correctly_rounded_sqrt_off",
                "oclc_correctly_rounded_sqrt_on", "oclc_daz_opt_off", "oclc_finite_only_off",
                "oclc_finite_only_on", "oclc_unsafe_math_off", "oclc_unsafe_math_on",
                "oclc_wavefrontsize64_on", "oclc_abi_version_500")

_lock = threading.RLock()  # the TVM callbacks we swap in are process-wide


# ----- CUDA ------------------------------------------------------------------------------


def find_nvcc() -> str:
    """Path of nvcc: ``$CUDA_PATH``/``$CUDA_HOME``, then ``PATH``, then /usr/local/cuda."""
    homes = [os.environ.get("CUDA_PATH"), os.environ.get("CUDA_HOME")]
    candidates = [str(Path(h) / "bin" / "nvcc") for h in homes if h]
    candidates += [shutil.which("nvcc") or "", str(Path(DEFAULT_CUDA_HOME) / "bin" / "nvcc")]
    for path in candidates:
        if path and os.access(path, os.X_OK):
            return path
    raise ToolchainError(f"target cuda needs nvcc, which is not on this machine: "
                         f"{CUDA_INSTALL}")


def cuda_arch(target: tvm.target.Target) -> str:
    """``sm_80`` etc. from the target (the default when it names none)."""
    arch = str(target.attrs.get("arch", "") or "sm_80")
    if not re.fullmatch(r"sm_\d+[a-z]?", arch):
        raise ToolchainError(f"cuda target arch {arch!r} is not of the form sm_80 / sm_90a")
    return arch


def compile_cuda(source: str, arch: str, fmt: str = "cubin") -> bytes:
    """nvcc ``source`` for ``arch`` to a cubin (or PTX with ``fmt="ptx"``).

    Raises
    ------
    ToolchainError
        nvcc missing, or it does not know ``arch``.
    LoweringError
        nvcc rejected TVM's code (its first error lines are kept).
    """
    nvcc = find_nvcc()
    with tempfile.TemporaryDirectory(prefix="dscompile-nvcc-") as tmp:
        src, out = Path(tmp) / "kernels.cu", Path(tmp) / f"kernels.{fmt}"
        src.write_text(source)
        cmd = [nvcc, f"--{fmt}", "-O3", f"-arch={arch}", "--expt-relaxed-constexpr",
               "-U__CUDA_NO_HALF_OPERATORS__", "-U__CUDA_NO_HALF_CONVERSIONS__",
               "-U__CUDA_NO_BFLOAT16_OPERATORS__", "-U__CUDA_NO_BFLOAT16_CONVERSIONS__",
               "-o", str(out), str(src)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            log = _first_errors(proc.stdout + proc.stderr)
            if "arch" in log and ("not defined" in log or "Unsupported" in log):
                raise ToolchainError(f"{nvcc} cannot compile for {arch}: {log}")
            raise LoweringError(f"nvcc failed on the generated CUDA code for {arch}:\n"
                                f"    {log}")
        return out.read_bytes()


def _first_errors(log: str, lines: int = 6) -> str:
    found = [ln for ln in log.splitlines() if "error" in ln.lower()] or log.splitlines()
    return "\n    ".join(found[:lines])


# ----- ROCm ------------------------------------------------------------------------------


def rocm_bitcode_dir() -> Path:
    """The AMD device library folder: ``$ROCM_PATH/amdgcn/bitcode``, Debian's, ROCm's."""
    roots = [os.environ.get("ROCM_PATH", ""), "/opt/rocm"]
    candidates = [Path(r) / "amdgcn" / "bitcode" for r in roots if r]
    candidates.insert(1, Path(DEBIAN_BITCODE))
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/llvm-*/lib/clang/*/lib/amdgcn/"
                                                     "bitcode"))]
    for path in candidates:
        if (path / "ocml.bc").exists():
            return path
    raise ToolchainError(f"target rocm needs the AMD device libraries (ocml.bc and friends), "
                         f"found in none of {[str(c) for c in candidates[:3]]}: "
                         f"{ROCM_BITCODE_INSTALL}")


def rocm_path() -> str:
    """A ``ROCM_PATH`` whose ``amdgcn/bitcode`` holds the device libraries, made under
    the dscompile cache directory when the environment has none; also exported to
    ``os.environ`` (TVM reads it there)."""
    current = os.environ.get("ROCM_PATH")
    if current and (Path(current) / "amdgcn" / "bitcode" / "ocml.bc").exists():
        return current
    bitcode = rocm_bitcode_dir()
    root = _cache_root() / "rocm"
    link = root / "amdgcn" / "bitcode"
    if not (link.is_symlink() and link.resolve() == bitcode.resolve()):
        link.parent.mkdir(parents=True, exist_ok=True)
        tmp = link.with_name(f".bitcode-{os.getpid()}")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(bitcode, target_is_directory=True)
        os.replace(tmp, link)  # atomic: concurrent builds never see a half-made link
    os.environ["ROCM_PATH"] = str(root)
    return str(root)


def _cache_root() -> Path:
    from compiler.cache import cache_dir

    return cache_dir()


def find_lld() -> str:
    """``ld.lld`` of TVM's LLVM major version (an older one rejects its code objects)."""
    major = tvm.target.codegen.llvm_version_major(allow_none=True)
    names = [f"ld.lld-{major}", f"/usr/lib/llvm-{major}/bin/ld.lld"] if major else []
    names += ["ld.lld", "/opt/rocm/llvm/bin/ld.lld"]
    for name in names:
        path = shutil.which(name)
        if path and (major is None or _lld_major(path) == major):
            return path
    package = f"lld-{major}" if major else "lld"
    raise ToolchainError(f"target rocm needs ld.lld {major or ''} (the linker of TVM's LLVM) "
                         f"to make the code object: install it with `apt-get install "
                         f"{package}`")


def _lld_major(path: str) -> int | None:
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
    except OSError:
        return None
    found = re.search(r"LLD (\d+)", out)
    return int(found.group(1)) if found else None


def rocm_bitcode_files(mcpu: str) -> list[str]:
    """The bitcode TVM links into a kernel for ``mcpu``: the common libraries and the
    ISA-version one of ``mcpu`` (TVM's own list links gfx900's for every GPU)."""
    folder = Path(rocm_path()) / "amdgcn" / "bitcode"
    files = [folder / f"{name}.bc" for name in ROCM_BITCODE]
    missing = [f.name for f in files if not f.exists()]
    isa = isa_version_bitcode(folder, mcpu)
    if isa is None:
        missing.append(f"oclc_isa_version_{mcpu.removeprefix('gfx')}.bc")
    if missing:
        raise ToolchainError(f"the AMD device libraries in {folder} lack {missing} (needed "
                             f"for {mcpu}): {ROCM_BITCODE_INSTALL} (a newer one for new GPUs)")
    return [str(f) for f in (*files, isa)]


def isa_version_bitcode(folder: Path, mcpu: str) -> Path | None:
    """``oclc_isa_version_<mcpu>.bc``, else the newest one of the same generation at or
    below it: Debian's device libraries (ROCm 5.2) stop at gfx940, whose ISA-version
    constant is the closest to gfx942's (same gfx94x family, MI300)."""
    version = mcpu.removeprefix("gfx")
    exact = folder / f"oclc_isa_version_{version}.bc"
    if exact.exists():
        return exact
    family = [p for p in folder.glob(f"oclc_isa_version_{version[:-1]}*.bc")
              if p.stem.rsplit("_", 1)[1] <= version]
    return max(family, key=lambda p: p.stem) if family else None


def link_code_object(obj: bytes, lld: str) -> bytes:
    """ld.lld a relocatable AMDGPU object into a code object (a shared ELF)."""
    with tempfile.TemporaryDirectory(prefix="dscompile-lld-") as tmp:
        src, out = Path(tmp) / "kernels.o", Path(tmp) / "kernels.hsaco"
        src.write_bytes(obj)
        proc = subprocess.run([lld, "--no-undefined", "-shared", str(src), "-o", str(out)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise LoweringError(f"{lld} could not link the AMDGPU code object:\n    "
                                f"{_first_errors(proc.stdout + proc.stderr)}")
        return out.read_bytes()


# ----- the callbacks TVM calls during one build ------------------------------------------


@dataclass
class DeviceBinary:
    """What a GPU build produced besides TVM's module: the binary our tools made (a cubin
    from nvcc, a code object from ld.lld), filled in while TVM compiles."""

    kind: str
    arch: str
    binary: bytes = b""
    source: str = ""  # the CUDA source TVM asked us to compile (where it did ask)


def check_toolchain(kind: str, target: tvm.target.Target) -> dict[str, str]:
    """The tools a ``kind`` build will run, found now (so a missing one fails before any
    work, with what to install)."""
    if kind == "cuda":
        cuda_arch(target)
        return {"nvcc": find_nvcc()}
    if kind == "rocm":
        rocm_bitcode_files(str(target.attrs.get("mcpu", "gfx90a")))
        return {"ld.lld": find_lld(), "ROCM_PATH": rocm_path()}
    return {}


@contextmanager
def gpu_toolchain(kind: str, target: tvm.target.Target) -> Iterator[DeviceBinary | None]:
    """Around ``tvm.compile``: TVM's compile/link callbacks answered by our tools for
    ``target``; yields the ``DeviceBinary`` they fill (None for the CPU)."""
    if kind not in ("cuda", "rocm"):
        yield None
        return
    tools = check_toolchain(kind, target)
    if kind == "cuda":
        result = DeviceBinary(kind, cuda_arch(target))

        def cuda_compile(code: str) -> bytes:  # asked only where TVM's CUDA runtime loaded
            result.source = str(code)
            result.binary = compile_cuda(result.source, result.arch)
            return result.binary

        callbacks = {"tvm_callback_cuda_compile": cuda_compile,
                     "tvm_callback_cuda_postproc": lambda code, _target: fix_cuda_source(
                         str(code))}
    else:
        mcpu = str(target.attrs.get("mcpu", "gfx90a"))
        result = DeviceBinary(kind, mcpu)
        bitcode = rocm_bitcode_files(mcpu)

        def rocm_link(obj: bytearray) -> bytearray:
            result.binary = link_code_object(bytes(obj), tools["ld.lld"])
            return bytearray(result.binary)

        callbacks = {"tvm_callback_rocm_link": rocm_link,
                     "tvm_callback_rocm_bitcode_path": lambda *_: bitcode}
    with _lock, _swapped(callbacks):
        yield result


@contextmanager
def _swapped(callbacks: dict[str, Callable]) -> Iterator[None]:
    saved = {name: tvm_ffi.get_global_func(name, allow_missing=True) for name in callbacks}
    for name, fn in callbacks.items():
        tvm_ffi.register_global_func(name, fn, override=True)
    try:
        yield
    finally:
        for name, fn in saved.items():
            if fn is not None:
                tvm_ffi.register_global_func(name, fn, override=True)
            else:  # TVM had none (its CUDA post-processing hook): leave none
                tvm_ffi.remove_global_func(name)
