"""The compile cache on disk: a built program is stored under a key of everything that
decides it, and a later ``dscompile`` of the same model (in any process) loads it instead
of lowering, scheduling and compiling again.

Key: sha256 over the final IR graph's text (ops, attrs, types with their symbolic dims),
a blake2b hash of every weight's bytes (the program holds the weights as constants), the
target (TVM's JSON of it), the options that change code (opt level, dtype, schedule), the
versions of dscompile, TVM and torch, and a fingerprint of the backend's and the memory
planner's sources (an edited schedule rule must not be served a stale kernel, nor an edited
planner arena offsets it would no longer choose).

Entry: ``<dir>/<key[:2]>/<key>/`` with ``program.so`` (``Executable.export_library``)
and ``meta.json`` (the key's parts, the library's sha256, where each graph output comes
from, the kernels, the program's memory stats, ``main``'s weight parameters: the weights
themselves are not in the library, they are packed again from the graph on load). It is
written into a temporary folder and renamed into place, so a reader sees a whole entry or
none. On load the key, versions and checksum are verified; an entry that fails any check,
or fails to load, is rebuilt and overwritten: never used.

Directory: ``DSCOMPILE_CACHE_DIR`` or ``~/.cache/dscompile/compiled``; ``DSCOMPILE_CACHE=0``
turns the cache off by default, ``dscompile(..., cache=False)`` for one call.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ir import Graph

log = logging.getLogger(__name__)

FORMAT = 4  # bump when the entry layout changes
_BACKEND_DIR = Path(__file__).resolve().parent.parent / "backends" / "tvm"
_PLANNING_DIR = Path(__file__).resolve().parent / "planning"  # its offsets are compiled in
_fingerprint: str | None = None


def cache_dir() -> Path:
    return Path(os.environ.get("DSCOMPILE_CACHE_DIR") or
                Path.home() / ".cache" / "dscompile" / "compiled")


def enabled_by_default() -> bool:
    return os.environ.get("DSCOMPILE_CACHE", "1").lower() not in ("0", "false", "no", "off")


def versions() -> dict[str, str]:
    import torch
    import tvm

    try:
        from importlib.metadata import version

        ours = version("dscompile")
    except Exception:  # running from a checkout that is not installed
        ours = "0+checkout"
    return {"dscompile": ours, "tvm": tvm.__version__, "torch": torch.__version__,
            "format": str(FORMAT), "backend_sources": backend_fingerprint()}


def backend_fingerprint() -> str:
    """A hash of the backend's Python sources (lowering, schedules, pipeline) and the
    memory planner's."""
    global _fingerprint
    if _fingerprint is None:
        h = hashlib.blake2b(digest_size=16)
        for root in (_BACKEND_DIR, _PLANNING_DIR):
            for path in sorted(root.rglob("*.py")):
                h.update(f"{root.name}/{path.relative_to(root)}".encode())
                h.update(path.read_bytes())
        _fingerprint = h.hexdigest()
    return _fingerprint


def weights_hash(graph: Graph) -> str:
    """blake2b over every weight's name, dtype, shape and bytes, once per compile (about
    1 GB/s: a ResNet-50 costs 0.1 s). Sampling would be cheaper but could miss an edit."""
    h = hashlib.blake2b(digest_size=32)
    for name in sorted(graph.weights):
        data = graph.weights[name]
        h.update(name.encode())
        if data is None:
            h.update(b"<none>")
            continue
        data = np.ascontiguousarray(data)
        h.update(f"{data.dtype}{data.shape}".encode())
        h.update(memoryview(data).cast("B"))
    return h.hexdigest()


def cache_key(graph: Graph, target: Any, options: Any) -> tuple[str, dict[str, Any]]:
    """The key and the parts it hashes (kept in the entry for diagnosis)."""
    parts = {
        "graph": hashlib.sha256(str(graph).encode()).hexdigest(),
        "weights": weights_hash(graph),
        "target": json.dumps(target.export(), sort_keys=True, default=str),
        "options": {"opt_level": options.opt_level, "dtype": options.dtype,
                    "schedule": options.schedule, "tuning": _tuning_key(options),
                    "winograd": _winograd()},
        "versions": versions(),
    }
    key = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    return key, parts


def _winograd() -> bool:
    """Whether the CPU lowering uses Winograd convs (``DSCOMPILE_WINOGRAD``): a program
    built with them is not the one asked for without."""
    from backends.tvm import winograd

    return winograd.enabled()


def _tuning(options: Any) -> Any:
    from backends.tvm.tuning import options_from

    return options_from(options)


def _tuning_key(options: Any) -> dict[str, Any] | None:
    """Tuned programs differ from rule-scheduled ones (and by their trial budget)."""
    if not getattr(options, "tune", False):
        return None
    return {"trials": getattr(options, "trials", None), "rpc": str(getattr(options, "rpc", ""))}


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class CompileCache:
    """Entries under ``root``; ``stats`` counts hits, misses and rejected entries."""

    def __init__(self, root: Path | str | None = None):
        self.root = Path(root) if root is not None else cache_dir()
        self.stats = {"hit": 0, "miss": 0, "rejected": 0}

    def entry(self, key: str) -> Path:
        return self.root / key[:2] / key

    # ----- the one call the compiler makes ----------------------------------------------
    def build(self, graph: Graph, target: Any, options: Any, memory_plan: Any = None) -> Any:
        """The built program for ``graph``: loaded when a valid entry exists, else built
        and stored. ``program.cache_status`` says "hit", "miss" or "rebuilt".
        ``memory_plan`` is ``backends.tvm.build.build``'s; ``graph``'s text (its node
        order) and the planner's sources decide it, so the key covers it."""
        from backends.tvm.build import build
        from backends.tvm.target import target_kind

        if target_kind(target) != "cpu":
            # Not cached: a GPU library loads only where the GPU's runtime is, and would
            # come back without its cubin/code object and sources (program.device_code).
            program = build(graph, target, schedule=options.schedule, memory_plan=memory_plan,
                            tuning=_tuning(options))
            program.cache_status = "off (GPU target)"
            return program
        key, parts = cache_key(graph, target, options)
        status = "miss"
        if self.entry(key).exists():
            try:
                program = self.load(key, graph, target, memory_plan)
                self.stats["hit"] += 1
                program.cache_status = "hit"
                return program
            except Exception as e:  # corrupt, stale or unloadable: never used
                log.warning("dscompile cache: entry %s rejected (%s); rebuilding", key[:12], e)
                self.stats["rejected"] += 1
                status = "rebuilt"
        else:
            self.stats["miss"] += 1
        program = build(graph, target, schedule=options.schedule, memory_plan=memory_plan,
                        tuning=_tuning(options))
        try:
            self.store(key, parts, program)
        except Exception as e:  # a full disk must not fail the compile
            log.warning("dscompile cache: could not store entry %s: %s", key[:12], e)
        program.cache_status = status
        return program

    # ----- entries ------------------------------------------------------------------
    def store(self, key: str, parts: dict[str, Any], program: Any) -> Path:
        """Write the entry into a temporary folder beside it, then rename it into place."""
        final = self.entry(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key[:12]}-", dir=final.parent))
        try:
            library = tmp / "program.so"
            program.save_library(str(library))
            meta = {
                "key": key, "parts": parts, "format": FORMAT,
                "library_sha256": _sha256_file(library),
                "outputs": [list(o) for o in program.lowered.outputs],
                "views": list(program.lowered.views),
                "weights": [list(w) for w in program.lowered.weights],  # main's parameters
                "kernels": [asdict(k) for k in program.kernels],
                "memory": program.memory.to_dict(),
                "validation": program.validation,  # a tuned program against the rules
            }
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1, default=_json_default))
            # each kernel's scheduled TIR, for kernel_sources() after a load
            (tmp / "kernels.json").write_text(json.dumps(program.kernel_sources()))
            if final.exists():  # a rejected entry being overwritten
                shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final

    def load(self, key: str, graph: Graph, target: Any, memory_plan: Any = None) -> Any:
        """The program of a verified entry; raises ``ValueError`` saying why an entry is
        not usable."""
        from backends.tvm.build import BuiltModule
        from backends.tvm.library import load_library
        from backends.tvm.lower import KernelInfo, LoweredModule
        from backends.tvm.memory import MemoryStats, SizeClassArena
        from backends.tvm.target import target_kind

        where = self.entry(key)
        try:
            meta = json.loads((where / "meta.json").read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"unreadable meta.json: {e}") from None
        if meta.get("key") != key or meta.get("format") != FORMAT:
            raise ValueError("meta.json is of another key or format")
        if meta.get("parts", {}).get("versions") != versions():
            raise ValueError(f"built by other versions {meta.get('parts', {}).get('versions')}")
        library = where / "program.so"
        if not library.exists() or _sha256_file(library) != meta.get("library_sha256"):
            raise ValueError("program.so is missing or its checksum does not match")
        executable = load_library(library)  # checked first: a cut .so would SIGBUS
        kernels = [KernelInfo(**k) for k in meta["kernels"]]
        outputs = [(kind, tuple(w) if isinstance(w, list) else w)
                   for kind, w in meta["outputs"]]
        weights = [(name, layout) for name, layout in meta["weights"]]
        lowered = LoweredModule(None, kernels, meta["views"], outputs, weights)
        memory = MemoryStats(**meta["memory"])
        arena = None
        if memory.route == "size-class arena":
            from compiler.planning import SizeClassPlanner

            arena = SizeClassArena(memory_plan or SizeClassPlanner(graph), memory.buffers)
        program = BuiltModule(graph, lowered, None, executable, target, target_kind(target),
                              memory, arena)
        program.validation = meta.get("validation")
        try:
            program.sources = json.loads((where / "kernels.json").read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"unreadable kernels.json: {e}") from None
        return program


def _json_default(v: Any) -> Any:
    if isinstance(v, (np.integer, np.floating)):
        return v.item()
    return str(v)


_default: dict[str, CompileCache] = {}


def default_cache() -> CompileCache:
    """One ``CompileCache`` per directory (the environment may change between calls)."""
    root = str(cache_dir())
    if root not in _default:
        _default[root] = CompileCache(root)
    return _default[root]
