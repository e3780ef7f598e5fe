"""Load and run a program that dscompile exported, with torch tensors in and out.

This file is copied beside every exported program (``NAME_loader.py``) and needs only
``tvm`` and ``torch``, not dscompile:

    from model_loader import load
    run = load("model.so")           # reads model.json and model.weights.npz beside it
    outputs = run(x.cuda())          # a list, in the order of the graph's outputs

The weights are read once, onto the program's device, and passed on every call.

The library keeps the kernels as TVM wrote them: a ROCm code object, or, for CUDA, the
CUDA source (TVM compiles CUDA when it loads a module). For CUDA we answer that compile
with the cubin nvcc made at export time (``NAME.cubin``, checked against the source's
hash), so the target machine needs no CUDA compiler.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

FORMAT = 2
_TVM_DEVICE = {"cpu": "cpu", "cuda": "cuda", "rocm": "rocm"}


class NoDeviceError(RuntimeError):
    """The GPU the program was compiled for is not on this machine."""


def source_hash(source: str | bytes) -> str:
    data = source.encode() if isinstance(source, str) else bytes(source)
    return hashlib.sha256(data).hexdigest()


def load(library: str | Path, device_id: int = 0) -> Program:
    """The program in ``library`` (a ``.so`` written by ``export_library``), on GPU
    ``device_id``."""
    library = Path(library)
    manifest = json.loads(library.with_suffix(".json").read_text())
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{library}: manifest format {manifest.get('format')}, this loader "
                         f"reads {FORMAT}")
    return Program(library, manifest, device_id)


class Program:
    """A loaded program: call it with torch tensors on its GPU."""

    def __init__(self, library: Path, manifest: dict[str, Any], device_id: int):
        import tvm
        from tvm import relax

        self.manifest = manifest
        kind = manifest["kind"]
        device = getattr(tvm, _TVM_DEVICE[kind])(device_id)
        if kind != "cpu" and not _exists(device):
            raise NoDeviceError(f"no {kind.upper() if kind == 'cuda' else 'ROCm'} device is "
                                f"present: {library.name} was compiled for {kind} "
                                f"({manifest['arch']})")
        if kind == "cuda":
            _answer_cuda_compile(library.with_suffix(".cubin"), manifest["source_sha256"])
        self.vm = relax.VirtualMachine(tvm.runtime.load_module(str(library)), device)
        self.weights = _load_weights(library.with_suffix(".weights.npz"),
                                     manifest["weights"], device)

    def __call__(self, *inputs: Any) -> list[Any]:
        import torch
        import tvm

        expected = self.manifest["inputs"]
        if len(inputs) != len(expected):
            raise TypeError(f"takes {len(expected)} inputs, got {len(inputs)}")
        for spec, t in zip(expected, inputs):
            if list(t.shape) != spec["shape"] or str(t.dtype) != f"torch.{spec['dtype']}":
                raise TypeError(f"input {spec['name']}: expected {spec['dtype']}"
                                f"{spec['shape']}, got {t.dtype}{list(t.shape)}")
        args = [tvm.runtime.from_dlpack(t.contiguous()) for t in inputs]
        results = self.vm["main"](*args, *self.weights)
        outputs = []
        for kind, where in self.manifest["outputs"]:
            if kind == "result":
                outputs.append(torch.from_dlpack(results[where]))
            elif kind == "input":
                outputs.append(inputs[where])
            else:  # a constant: (value, dtype)
                device = inputs[0].device if inputs else \
                    ("cpu" if self.manifest["kind"] == "cpu" else "cuda")
                outputs.append(torch.tensor(where[0], dtype=getattr(torch, where[1]),
                                            device=device))
        return outputs


def _load_weights(path: Path, specs: list[dict], device: Any) -> list[Any]:
    """``main``'s weight arguments, in the manifest's order, on ``device``."""
    import numpy as np
    import tvm

    with np.load(path) as saved:
        arrays = [saved[f"w{i}"] for i in range(len(specs))]
    out = []
    for spec, data in zip(specs, arrays):
        if spec["dtype"] == "bfloat16":  # stored as its bits
            import ml_dtypes

            data = data.view(ml_dtypes.bfloat16)
        out.append(tvm.runtime.tensor(data, device))
    return out


def _exists(device: Any) -> bool:
    try:
        return bool(device.exist)
    except Exception:  # no runtime library for this GPU kind in this TVM
        return False


def _answer_cuda_compile(cubin: Path, expected_hash: str) -> None:
    """Register TVM's CUDA compile callback so it returns the shipped cubin for our
    source (any other source falls through to the callback that was there)."""
    import tvm_ffi

    binary = cubin.read_bytes()
    previous = tvm_ffi.get_global_func("tvm_callback_cuda_compile", allow_missing=True)

    def compile_cuda(code: str) -> bytes:
        if source_hash(str(code)) == expected_hash:
            return binary
        if previous is None:
            raise RuntimeError("a CUDA source other than the exported one needs compiling "
                               "and no CUDA compiler callback is registered")
        return previous(code)

    tvm_ffi.register_global_func("tvm_callback_cuda_compile", compile_cuda, override=True)
