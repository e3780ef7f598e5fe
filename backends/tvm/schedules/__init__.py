"""Schedule rules per target kind. ``schedule_module`` applies, to every kernel, the first
rule of the target's list that accepts it, and records which one fired; when tuning, it
hands over to ``backends.tvm.tuning``, which measures the rule against other candidates.

A target kind's module provides ``RULES`` (tried in order, dlight-style: each has
``name`` and ``apply(func, target) -> Schedule | None``) and ``FALLBACK`` (always works).
"cpu" uses ``schedules/cpu.py`` (our rules); "cuda" and "rocm" use ``schedules/gpu.py``
(dlight's rules, one kernel per fused group, our row kernel for attention), which
builds on ``_dlight_gpu``.
"""

from __future__ import annotations

import importlib
import logging
from types import ModuleType
from typing import Any

import tvm
from tvm import tirx

log = logging.getLogger(__name__)

_MODULES = {"cpu": "backends.tvm.schedules.cpu", "cuda": "backends.tvm.schedules.gpu",
            "rocm": "backends.tvm.schedules.gpu"}


def rules_for(kind: str) -> tuple[list[Any], Any]:
    """``(RULES, FALLBACK)`` for a target kind."""
    try:
        module: ModuleType = importlib.import_module(_MODULES[kind])
    except ModuleNotFoundError:
        from backends.tvm.schedules import _dlight_gpu as module
    return list(module.RULES), module.FALLBACK


def apply_rules(func: tirx.PrimFunc, target: tvm.target.Target, rules: list[Any],
                fallback: Any) -> tuple[tirx.PrimFunc, str]:
    """The scheduled function and the name of the rule that scheduled it. A rule that
    declines (None) or throws passes the kernel on to the next one."""
    for rule in [*rules, fallback]:
        try:
            sch = rule.apply(func, target)
        except Exception as e:  # a rule's bug must not fail the build: try the next one
            log.debug("schedule rule %s failed: %s", rule.name, e)
            continue
        if sch is not None:
            return sch.mod["main"], rule.name
    return func, "none"


def schedule_module(mod: tvm.IRModule, kernels: list[Any], target: tvm.target.Target,
                    kind: str, tuning: Any = None, graph: Any = None) -> tvm.IRModule:
    """Schedule each kernel's PrimFunc in place of the unscheduled one; sets
    ``KernelInfo.schedule``. With ``tuning`` (``backends.tvm.tuning.TuningOptions``) and
    the ``graph``, each kernel gets its fastest candidate by measurement instead of the
    first rule that fires."""
    if tuning is not None:
        from backends.tvm.tuning import tune_module

        return tune_module(mod, kernels, target, kind, graph, tuning)
    rules, fallback = rules_for(kind)
    done: dict[str, str] = {}
    for k in kernels:
        if k.name not in done:  # identical kernels share one PrimFunc
            gv = mod.get_global_var(k.name)
            func, done[k.name] = apply_rules(mod[gv], target, rules, fallback)
            mod[gv] = func
        k.schedule = done[k.name]
    return mod
