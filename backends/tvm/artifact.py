"""Export a GPU program as a deployable folder of files, next to ``path``:

- ``NAME.so``: the TVM library (host code and the kernels as TVM keeps them),
- ``NAME.cubin`` or ``NAME.hsaco``: the GPU binary nvcc or ld.lld made,
- ``NAME.json``: the manifest (target, inputs, outputs, hashes),
- ``NAME_loader.py``: a copy of ``artifact_loader.py``, which runs it with only tvm and
  torch installed.

It is written on any machine; it runs where the GPU is.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from backends.tvm import artifact_loader
from compiler.errors import DSCompileError


def manifest(program: Any) -> dict[str, Any]:
    """What the loader needs to know about ``program`` (a GPU ``BuiltModule``)."""
    code = program.device_code
    weights = [where for kind, where in program.lowered.outputs if kind == "weight"]
    if weights:
        raise DSCompileError(f"cannot export a GPU program whose outputs are weights "
                             f"({', '.join(weights)}) yet: return a copy of them instead")
    return {
        "format": artifact_loader.FORMAT,
        "kind": code.kind,
        "arch": code.arch,
        "target": str(program.target),
        "binary_format": code.binary_format,
        "source_sha256": artifact_loader.source_hash(code.source) if code.kind == "cuda"
        else None,
        "binary_sha256": artifact_loader.source_hash(code.binary),
        "kernels": code.kernel_names(),
        "inputs": [{"name": n.name, "shape": [int(d) for d in n.shape], "dtype": n.dtype}
                   for n in program.graph.inputs],
        "outputs": [[kind, list(where) if isinstance(where, tuple) else where]
                    for kind, where in program.lowered.outputs],
    }


def export_gpu_program(program: Any, path: str | Path) -> list[Path]:
    """Write ``program``'s files beside ``path`` (the ``.so``); returns their paths."""
    library = Path(path)
    if not all(isinstance(d, int) for n in program.graph.inputs for d in n.shape):
        raise DSCompileError("cannot export a GPU program with symbolic input shapes yet")
    info = manifest(program)
    program.executable.export_library(str(library))
    binary = library.with_suffix(f".{info['binary_format']}")
    binary.write_bytes(program.device_code.binary)
    meta = library.with_suffix(".json")
    meta.write_text(json.dumps(info, indent=1))
    loader = library.with_name(f"{library.stem}_loader.py")
    shutil.copyfile(artifact_loader.__file__, loader)
    return [library, binary, meta, loader]
