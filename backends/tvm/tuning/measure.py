"""Timing one kernel with its real shapes, as the chooser compares candidates.

Each candidate runs on the same random inputs; its time is the median over ``repeat``
repetitions, each the mean of enough back-to-back runs to last ``min_repeat_ms`` (TVM's
``time_evaluator`` for compiled PrimFuncs, the same loop in Python for library kernels).
Medians, because the machines are shared: one preempted repetition must not decide.

``STATS.measurements`` counts every timed kernel (candidate or MetaSchedule trial), so a
test can assert that a compile served from the tuning database measured nothing.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import tvm
from tvm import tirx

from backends.tvm.pipeline import tir_pipeline
from compiler.errors import LoweringError


@dataclass
class Settings:
    """How long to time each candidate: ``repeat`` medians of at least ``min_repeat_ms``."""

    repeat: int = 7
    min_repeat_ms: int = 20
    warmup: int = 2


@dataclass
class Timing:
    median_ms: float
    runs_ms: list[float] = field(default_factory=list)


class Stats:
    """What was measured in this process (tests read it)."""

    def __init__(self) -> None:
        self.measurements = 0

    def count(self, n: int = 1) -> None:
        self.measurements += n


STATS = Stats()


def median_timing(runs_s: Sequence[float]) -> Timing:
    runs_ms = [float(r) * 1e3 for r in runs_s]
    return Timing(statistics.median(runs_ms), runs_ms)


def static_shape(param: tirx.Var) -> tuple[int, ...]:
    """A PrimFunc parameter's shape (TVM 0.27 types buffer parameters with their shape)."""
    shape = []
    for d in param.shape:
        if not isinstance(d, tirx.IntImm):
            raise LoweringError(f"cannot time a kernel with a symbolic size ({d}): tuning "
                                f"needs static shapes")
        shape.append(int(d))
    return tuple(shape)


def buffer_specs(func: tirx.PrimFunc) -> list[tuple[tuple[int, ...], str]]:
    """``(shape, dtype)`` of each parameter of ``func``, outputs included."""
    return [(static_shape(p), str(p.dtype)) for p in func.params]


def random_array(shape: tuple[int, ...], dtype: str, rng: np.random.Generator) -> np.ndarray:
    """Values a kernel can run on: floats in [-1, 1), small non-negative integers (indices
    must stay in range), random booleans."""
    if dtype == "bool":
        return rng.random(shape) > 0.5
    if dtype.startswith(("int", "uint")):
        return np.zeros(shape, dtype=dtype)
    return rng.uniform(-1, 1, shape).astype(dtype)


def random_args(specs: list[tuple[tuple[int, ...], str]],
                device: tvm.runtime.Device, seed: int = 0) -> list[tvm.runtime.Tensor]:
    rng = np.random.default_rng(seed)
    return [tvm.runtime.tensor(random_array(shape, dtype, rng), device)
            for shape, dtype in specs]


def compile_primfunc(func: tirx.PrimFunc, target: tvm.target.Target) -> tvm.runtime.Module:
    """One kernel as a runnable module whose function is ``main``."""
    mod = tvm.IRModule({"main": func.with_attr("global_symbol", "main")})
    return tvm.compile(mod, target=target, tir_pipeline=tir_pipeline(target)).jit()


def time_module(module: tvm.runtime.Module, args: list, device: tvm.runtime.Device,
                settings: Settings) -> Timing:
    evaluator = module.time_evaluator("main", device, number=1, repeat=settings.repeat,
                                      min_repeat_ms=int(settings.min_repeat_ms))
    for _ in range(settings.warmup):
        module["main"](*args)
    STATS.count()
    return median_timing(evaluator(*args).results)


def time_primfunc(func: tirx.PrimFunc, target: tvm.target.Target,
                  settings: Settings | None = None) -> Timing:
    """Compile ``func`` for the local ``target`` and time it on random inputs."""
    device = device_of(target)
    module = compile_primfunc(func, target)
    return time_module(module, random_args(buffer_specs(func), device), device,
                       settings or Settings())


def device_of(target: tvm.target.Target) -> tvm.runtime.Device:
    return tvm.device({"llvm": "cpu", "c": "cpu"}.get(target.kind.name, target.kind.name), 0)


def time_callable(fn: Callable[[], object], settings: Settings | None = None) -> Timing:
    """``time_evaluator``'s protocol for a Python callable: calibrate the runs per
    repetition to ``min_repeat_ms``, then take the median of ``repeat`` means."""
    settings = settings or Settings()
    for _ in range(settings.warmup):
        fn()
    number = 1
    while True:  # calibrate: double the runs until one repetition lasts long enough
        start = time.perf_counter()
        for _ in range(number):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed * 1e3 >= settings.min_repeat_ms or number >= 1 << 16:
            break
        number *= 2
    runs = []
    for _ in range(settings.repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        runs.append((time.perf_counter() - start) / number)
    STATS.count()
    return median_timing(runs)
