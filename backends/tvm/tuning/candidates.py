"""A kernel's candidates: our rule's schedule, a MetaSchedule-tuned schedule and, on CPU
for large conv2d/linear kernels, the oneDNN library call. Each knows how to be timed
(``time``) so the chooser can compare them on equal terms.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import tvm
from tvm import tirx

from backends.tvm.schedules import apply_rules, rules_for
from backends.tvm.tuning import library as lib
from backends.tvm.tuning.measure import Settings, Timing, time_callable, time_primfunc
from ir import Node

RULE, METASCHEDULE, LIBRARY = "rule", "metaschedule", "library"


@dataclass
class Candidate:
    """``name`` is what decisions and the report show: the rule's name, "metaschedule" or
    "onednn". A schedule candidate has ``func`` (the scheduled PrimFunc); the library
    candidate has ``spec``."""

    name: str
    kind: str
    func: tirx.PrimFunc | None = None
    spec: lib.LibrarySpec | None = None
    trace: list | None = None  # MetaSchedule's schedule, stored for replay

    def time(self, target: tvm.target.Target, settings: Settings,
             weights: dict[str, np.ndarray], timer: Any = None) -> Timing:
        """Median time on random inputs; ``timer`` (an ``rpc.RemoteTimer``) times
        schedules on another machine."""
        if self.kind == LIBRARY:
            return time_library(self.spec, weights, settings)
        if timer is not None:
            return timer.time_primfunc(self.func, target, settings)
        return time_primfunc(self.func, target, settings)


def rule(func: tirx.PrimFunc, target: tvm.target.Target, kind: str) -> Candidate:
    rules, fallback = rules_for(kind)
    scheduled, name = apply_rules(func, target, rules, fallback)
    return Candidate(name, RULE, func=scheduled)


def metaschedule(func: tirx.PrimFunc, target: tvm.target.Target, trials: int, *,
                 runner: Any = None, settings: Settings | None = None,
                 on_trials: Callable[[int], None] | None = None) -> Candidate | None:
    """The best of ``trials`` MetaSchedule samples, or None when none ran."""
    from backends.tvm.tuning import metaschedule as ms_tuning  # imports MetaSchedule

    found = ms_tuning.tune(func, target, trials, runner=runner, settings=settings,
                           on_trials=on_trials)
    if found is None:
        return None
    scheduled, trace, _ = found
    return Candidate(METASCHEDULE, METASCHEDULE, func=scheduled, trace=trace)


def replayed(func: tirx.PrimFunc, trace: list) -> Candidate:
    """The MetaSchedule candidate rebuilt from a stored trace (no search)."""
    from backends.tvm.tuning import metaschedule as ms_tuning

    return Candidate(METASCHEDULE, METASCHEDULE, func=ms_tuning.replay(func, trace),
                     trace=trace)


def library(members: list[Node]) -> Candidate | None:
    spec = lib.match(members)
    return None if spec is None else Candidate(lib.NAME, LIBRARY, spec=spec)


def time_library(spec: lib.LibrarySpec, weights: dict[str, np.ndarray],
                 settings: Settings) -> Timing:
    """The library kernel on random activations, with the real (prepacked) weights."""
    kernel = lib.LibraryKernel(spec, weights)
    generator = torch.Generator().manual_seed(0)
    acts = [torch.rand(shape, generator=generator) * 2 - 1 for shape in spec.inputs]
    out = torch.empty(spec.out)
    return time_callable(lambda: kernel.run(acts, out), settings)
