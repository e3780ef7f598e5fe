"""Target resolution: the short names users write ("cpu", "cuda", "rocm") as TVM targets.

TVM 0.27 only takes JSON-dict targets. For the host CPU we name the exact CPU LLVM detects:
``mcpu="native"`` logs an error and silently builds generic x86-64 without AVX.
"""

from __future__ import annotations

import difflib
import os
import re
from typing import Any

import tvm

from compiler.errors import TargetError

KINDS = {"llvm": "cpu", "c": "cpu", "cuda": "cuda", "rocm": "rocm"}
_ALIASES = {"cpu": "llvm", "host": "llvm", "gpu": "cuda", "nvidia": "cuda", "amd": "rocm",
            "hip": "rocm"}


def host_cpu_target() -> dict[str, Any]:
    """The machine we run on, with the exact CPU name and the cores we may use."""
    return {"kind": "llvm", "mtriple": "x86_64-linux-gnu",
            "mcpu": tvm.target.codegen.llvm_get_system_cpu(),
            "num-cores": len(os.sched_getaffinity(0))}


_NAMED = {
    "llvm": host_cpu_target,
    "cuda": lambda: {"kind": "cuda", "arch": "sm_80"},
    "rocm": lambda: {"kind": "rocm", "mcpu": "gfx90a"},
}


def resolve_target(target: str | dict | tvm.target.Target) -> tvm.target.Target:
    """A ``tvm.target.Target`` for a short name, a JSON dict or a Target.

    Raises
    ------
    TargetError
        For an unknown name (suggesting the closest known ones) or a malformed dict.
    """
    if isinstance(target, tvm.target.Target):
        return target
    if isinstance(target, str):
        return _from_dict(_named_target(target))
    if isinstance(target, dict):
        return _from_dict(target)
    raise TargetError(f"target must be a name such as 'cpu', a dict or a tvm.target.Target, "
                      f"got {type(target).__name__}")


def target_kind(target: str | dict | tvm.target.Target) -> str:
    """``"cpu"``, ``"cuda"`` or ``"rocm"``: what picks the schedule rules and the device."""
    kind = resolve_target(target).kind.name
    if kind not in KINDS:
        raise TargetError(f"target kind {kind!r} is not supported; use one of "
                          f"{sorted(set(KINDS.values()))}")
    return KINDS[kind]


def _named_target(name: str) -> dict[str, Any]:
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key in _NAMED:
        return _NAMED[key]()
    known = sorted(set(_NAMED) | set(_ALIASES))
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise TargetError(f"unknown target {name!r}{hint} Known targets: {', '.join(known)}, or a "
                      f"dict such as {{'kind': 'cuda', 'arch': 'sm_90'}}")


# the GPU arch a target dict names: {"kind": "cuda", "arch": "sm_90"}, {"kind": "rocm",
# "mcpu": "gfx942"}; TVM takes a misspelt one and fails later, deep in code generation
_GPU_ARCH = {"cuda": ("arch", re.compile(r"sm_\d{2,3}[af]?"), "sm_80, sm_90 or sm_90a"),
             "rocm": ("mcpu", re.compile(r"gfx[0-9a-f]{3,4}"), "gfx90a or gfx942")}


def _from_dict(config: dict[str, Any]) -> tvm.target.Target:
    if "kind" not in config:
        raise TargetError(f"target dict {config!r} has no 'kind'")
    if config["kind"] in _GPU_ARCH:
        key, pattern, examples = _GPU_ARCH[config["kind"]]
        if key in config and not pattern.fullmatch(str(config[key])):
            raise TargetError(f"target {config!r}: {key} {config[key]!r} is not a "
                              f"{config['kind']} GPU name such as {examples}")
    if config.get("mcpu") == "native":  # LLVM would silently fall back to generic x86-64
        config = {**config, "mcpu": tvm.target.codegen.llvm_get_system_cpu()}
    try:
        return tvm.target.Target(config)
    except Exception as e:  # TVM raises ValueError/TVMError with a useful first line
        raise TargetError(f"invalid target {config!r}: {str(e).splitlines()[0]}") from None
