"""Export a program as a deployable folder of files, next to ``path``:

- ``NAME.so``: the TVM library (host code and the kernels as TVM keeps them),
- ``NAME.cubin`` or ``NAME.hsaco`` (GPU programs): the GPU binary nvcc or ld.lld made,
- ``NAME.weights.npz``: ``main``'s weight arguments, in the layouts the kernels read
  (the library holds none: ``backends.tvm.weights``),
- ``NAME.json``: the manifest (target, inputs, outputs, weights, hashes),
- ``NAME_loader.py``: a copy of ``artifact_loader.py``, which runs it with only tvm and
  torch installed.

It is written on any machine; a GPU program runs where the GPU is.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from backends.tvm import artifact_loader
from backends.tvm.weights import pack
from compiler.errors import DSCompileError


def manifest(program: Any) -> dict[str, Any]:
    """What the loader needs to know about ``program`` (a ``BuiltModule``)."""
    code = program.device_code
    weights = [where for kind, where in program.lowered.outputs if kind == "weight"]
    if weights:
        raise DSCompileError(f"cannot export a program whose outputs are weights "
                             f"({', '.join(weights)}) yet: return a copy of them instead")
    gpu = {} if code is None else {
        "arch": code.arch,
        "binary_format": code.binary_format,
        "source_sha256": artifact_loader.source_hash(code.source) if code.kind == "cuda"
        else None,
        "binary_sha256": artifact_loader.source_hash(code.binary),
        "kernels": code.kernel_names(),
    }
    return {
        "format": artifact_loader.FORMAT,
        "kind": program.kind,
        "target": str(program.target),
        **gpu,
        "weights": [{"name": name, "layout": layout,
                     "dtype": str(program.graph.weights[name].dtype)}
                    for name, layout in program.lowered.weights],
        "inputs": [{"name": n.name, "shape": [int(d) for d in n.shape], "dtype": n.dtype}
                   for n in program.graph.inputs],
        "outputs": [[kind, list(where) if isinstance(where, tuple) else where]
                    for kind, where in program.lowered.outputs],
    }


def export_program(program: Any, path: str | Path) -> list[Path]:
    """Write ``program``'s files beside ``path`` (the ``.so``); returns their paths."""
    library = Path(path)
    if not all(isinstance(d, int) for n in program.graph.inputs for d in n.shape):
        raise DSCompileError("cannot export a program with symbolic input shapes yet")
    info = manifest(program)
    program.executable.export_library(str(library))
    files = [library]
    if program.device_code is not None:
        binary = library.with_suffix(f".{info['binary_format']}")
        binary.write_bytes(program.device_code.binary)
        files.append(binary)
    weights = library.with_suffix(".weights.npz")
    np.savez(weights, **{f"w{i}": _savable(pack(program.graph.weights[name], layout))
                         for i, (name, layout) in enumerate(program.lowered.weights)})
    meta = library.with_suffix(".json")
    meta.write_text(json.dumps(info, indent=1))
    loader = library.with_name(f"{library.stem}_loader.py")
    shutil.copyfile(artifact_loader.__file__, loader)
    return [*files, weights, meta, loader]


def _savable(data: np.ndarray) -> np.ndarray:
    """npz keeps only numpy's own dtypes: bfloat16 is stored as its bits (the manifest
    says the dtype, the loader views them back)."""
    return data.view(np.uint16) if data.dtype.name == "bfloat16" else data
