"""``dscompile``: the one entry point. It reads top to bottom as the pipeline:
resolve the target, capture, optimize, plan memory, build, check numerics."""

from __future__ import annotations

from typing import Any

import torch

from compiler.config import CompileOptions
from compiler.module import CompiledModule


def dscompile(model: torch.nn.Module, example_inputs: Any, target: Any = "cpu", *,
              opt_level: int = 2, passes: tuple | list = (), check: str | None = None,
              dtype: str | None = None, verify: bool | None = None,
              dump_dir: str | None = None, example_kwargs: dict | None = None,
              schedule: bool = True, dynamic: dict | None = None,
              cache: bool | None = None, tune: bool | None = None,
              trials: int | None = None, rpc: Any = None) -> CompiledModule:
    """Compile ``model`` for ``target`` and return a module that runs it.

    Parameters
    ----------
    model : torch.nn.Module
        The model, in eval mode (dscompile compiles inference).
    example_inputs : Tensor, tuple or dict
        Positional arguments (a tuple), a single tensor, or keyword arguments (a dict).
        Shapes and dtypes are fixed at these unless marked dynamic.
    target : str or dict
        ``"cpu"``, ``"cuda"``, ``"rocm"`` or a TVM target dict.
    opt_level : int
        0: capture and lower only; 1: simplification and folding; 2 (default): plus all
        fusions; 3: plus tuning.
    passes : sequence of Pass
        Passes of your own, run after the built-in rewrites and before fusion.
    check : {"raise", "warn", "off"}
        The numerics guard: compare with eager on the example inputs and random ones;
        a mismatch raises ``NumericsError`` naming the culprit pass or kernel with the
        smallest IR that shows it (``"warn"``: a warning). Default: ``DSCOMPILE_CHECK``,
        else ``"raise"``. See docs/writing-passes.md.
    dynamic : dict, optional
        Sizes that vary between calls: input name -> axis -> a name, ``(name, min, max)``
        or ``compiler.dynamic.DimSpec``, e.g. ``{"x": {0: "batch", 1: "seq"}}``. The model
        is compiled once, with those dims symbolic, and runs on any size in range.
    cache : bool, optional
        Load the built program from the on-disk compile cache when the same graph, weights,
        target and options were built before, and store it otherwise (default: on;
        ``DSCOMPILE_CACHE=0`` turns the default off; ``DSCOMPILE_CACHE_DIR`` moves it).
    tune : bool, optional
        Choose each kernel's schedule by measurement on the target: our rule, a
        MetaSchedule-tuned schedule, on CPU a oneDNN call for large conv/linear kernels.
        Decisions go to the tuning database (``DSCOMPILE_TUNING_DIR``), so compiling the
        same model again measures nothing. Default: on at ``opt_level=3`` only. A
        progress bar with the time left shows on a terminal. See docs/tuning.md.
    trials : int, optional
        MetaSchedule samples per kernel when tuning (default 32; 0: rule vs library only).
    rpc : str or dict, optional
        Measure on the machines of an RPC tracker, ``"key@host:port"``.
    """
    overrides = {"check": check, "verify": verify, "dump_dir": dump_dir}  # else env defaults
    options = CompileOptions(target=target, opt_level=opt_level, passes=tuple(passes),
                             dtype=dtype, schedule=schedule, tune=tune, trials=trials, rpc=rpc,
                             **{k: v for k, v in overrides.items() if v is not None})

    from backends.tvm.target import resolve_target

    tvm_target = resolve_target(options.target)  # a bad target fails before any work
    args, kwargs = split_example_inputs(example_inputs, example_kwargs)

    from compiler.capture import capture

    captured = capture(model, args, kwargs, dynamic=dynamic)
    graph, records = optimize_graph(captured.graph, options)
    use_cache = cache if cache is not None else default_cache_enabled()
    module = build_module(graph, captured.out_spec, tvm_target, options, records,
                          captured.method, cache=use_cache)
    from compiler.frozen import FrozenState

    module.frozen = FrozenState(model)
    if dynamic:
        from compiler.dynamic import normalize_dynamic, symbol_ranges

        module.dim_ranges = symbol_ranges(normalize_dynamic(dynamic))
    if options.check != "off":
        from compiler.guard import check_numerics

        check_numerics(model, module, args, kwargs, options)
    return module


def split_example_inputs(example_inputs: Any, example_kwargs: dict | None) -> tuple[tuple, dict]:
    """Normalize the ways users pass example inputs into ``(args, kwargs)``."""
    kwargs = dict(example_kwargs or {})
    if isinstance(example_inputs, dict):
        return (), {**example_inputs, **kwargs}
    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,), kwargs
    return tuple(example_inputs), kwargs


def optimize_graph(graph, options: CompileOptions):
    """Run the pass pipeline of ``options.opt_level`` with the user's passes."""
    from compiler.pipelines import optimize

    instruments = []
    if options.dump_dir:
        from compiler.pass_manager import DumpIRInstrument

        instruments.append(DumpIRInstrument(options.dump_dir))
    return optimize(graph, opt_level=options.opt_level, extra_passes=options.passes,
                    instruments=instruments, verify=options.verify, dtype=options.dtype)


def tuning_options(options: CompileOptions):
    """What ``backends.tvm.build`` tunes with, or None when tuning is off."""
    from backends.tvm.tuning import options_from

    return options_from(options)


def default_cache_enabled() -> bool:
    from compiler.cache import enabled_by_default

    return enabled_by_default()


def build_module(graph, out_spec, tvm_target, options: CompileOptions, records=(),
                 capture_method: str = "fx", cache: bool = False) -> CompiledModule:
    """Plan memory, lower and build ``graph`` (or load it from the compile cache); wrap
    the program as a ``CompiledModule``."""
    from backends.tvm.build import build
    from backends.tvm.target import target_kind
    from compiler.planning import MemoryPlan, plan_program

    graph, memory_plan = plan_program(graph)  # nodes in the order the arena is planned for
    plan = memory_plan if isinstance(memory_plan, MemoryPlan) else None
    if cache:
        from compiler.cache import default_cache

        program = default_cache().build(graph, tvm_target, options, memory_plan=memory_plan)
    else:
        program = build(graph, tvm_target, schedule=options.schedule, memory_plan=memory_plan,
                        tuning=tuning_options(options))
    device = {"cpu": "cpu", "cuda": "cuda", "rocm": "cuda"}[target_kind(tvm_target)]
    return CompiledModule(program, graph, out_spec, device=device, records=list(records),
                          plan=plan, options=options, capture_method=capture_method)
