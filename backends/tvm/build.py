"""Build: lower, schedule per target kind, compile with our Relax pipeline, run on the VM.

Tensors cross torch <-> TVM through DLPack without copies, both ways.
"""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any

import numpy as np
import torch
import tvm
from tvm import relax

from backends.tvm import device_code
from backends.tvm import weights as weight_layouts
from backends.tvm.device_code import DeviceCode
from backends.tvm.lower import KernelInfo, LoweredModule, describe_nodes, lower_graph, tvm_message
from backends.tvm.memory import ArenaLowering, MemoryStats, SizeClassArena
from backends.tvm.pipeline import relax_pipeline, tir_pipeline
from backends.tvm.schedules import apply_rules, rules_for, schedule_module
from backends.tvm.stack_buffers import workspace_bytes
from backends.tvm.target import resolve_target, target_kind
from backends.tvm.toolchain import gpu_toolchain
from backends.tvm.tuning import library as library_kernels  # registers their packed function
from compiler.errors import DeviceError, LoweringError
from ir import Graph

_ALIGN = 64  # TVM's kernels assume 64-byte aligned buffers
_DEVICES = {"cpu": tvm.cpu, "cuda": tvm.cuda, "rocm": tvm.rocm}


def build(graph: Graph, target: Any, *, schedule: bool = True,
          memory_plan: Any = None, tuning: Any = None) -> BuiltModule:
    """Lower ``graph``, schedule every kernel for ``target`` and compile it; a tuned CPU
    program is checked end to end against the rules (``validate_tuned``)."""
    program = build_once(graph, target, schedule=schedule, memory_plan=memory_plan,
                         tuning=tuning)
    if tuning is not None and program.kind == "cpu" and tuning.measure is None \
            and tuning.rpc is None \
            and any(k.schedule in TUNED for k in program.kernels) \
            and all(n.type.is_static for n in graph.inputs):
        program = validate_tuned(program, graph, target, memory_plan, tuning)
    return program


TUNED = ("metaschedule", "onednn")  # candidates other than our rules


def validate_tuned(tuned: BuiltModule, graph: Graph, target: Any, memory_plan: Any,
                   tuning: Any) -> BuiltModule:
    """The fastest, timed as whole programs, of: the tuned program, the same without
    library kernels, and the rules alone. Kernels timed alone miss what a program pays:
    a oneDNN conv measured 0.3 ms alone took 7.5 ms inside ResNet-50 (TVM's and
    OpenMP's threads each spin on the two cores while the other runs), and tuned
    ResNet-50 ran at 40 ms against the rules' 21. ``program.validation`` keeps the times
    (ms per call). The verdict is a record of the tuning database: a second compile
    builds the chosen program and measures nothing. Not for a program tuned through
    RPC: it was measured for the remote machines, not this one."""
    from dataclasses import replace

    from backends.tvm.tuning.database import (
        Record,
        TuningDatabase,
        default_database,
        program_key,
    )
    from compiler.timing import median_ms

    database = tuning.database if tuning.database is not None else default_database()
    tvm_target = resolve_target(target)
    key = program_key(str(graph), tvm_target, tuning.trials, tuning.library)
    # the variant's kernel decisions are this check's lookups, not the compile's
    inner = replace(tuning, progress=False, database=TuningDatabase(database.root))
    builders = {"tuned": lambda: tuned}
    if any(k.schedule == "onednn" for k in tuned.kernels):
        builders["tuned without library"] = lambda: build_once(
            graph, target, memory_plan=memory_plan, tuning=replace(inner, library=False))
    builders["rules"] = lambda: build_once(graph, target, memory_plan=memory_plan)
    known = database.verdict(key)
    if known is not None and known.chosen in builders:
        chosen, times = known.chosen, known.times_ms
        program = builders[chosen]()
    else:
        inputs = [example_input(n) for n in graph.inputs]
        variants = {name: make() for name, make in builders.items()}
        times = {name: round(median_ms(lambda p=p: p(*inputs), warmup=3, reps=15,
                                       min_seconds=0.3), 3)
                 for name, p in variants.items()}
        chosen = min(times, key=times.get)
        program = variants[chosen]
        database.commit(Record(key=key, kernel="(whole program)", chosen=chosen,
                               times_ms=times, trials=tuning.trials, target=str(tvm_target)))
    for kept, measured in zip(program.kernels, tuned.kernels):  # the report still shows
        kept.timings = kept.timings or measured.timings  # what each candidate measured
    program.validation = {"chosen": chosen, **times}
    return program


def example_input(node) -> torch.Tensor:
    """An input of ``node``'s static type to time a program on: normal floats, zero
    integers (valid indices)."""
    dtype = _torch_dtype(node.dtype)
    shape = [int(d) for d in node.shape]
    return torch.randn(shape).to(dtype) if dtype.is_floating_point else \
        torch.zeros(shape, dtype=dtype)


def build_once(graph: Graph, target: Any, *, schedule: bool = True,
               memory_plan: Any = None, tuning: Any = None) -> BuiltModule:
    """Lower ``graph``, schedule every kernel for ``target`` and compile it.

    ``tuning`` (``backends.tvm.tuning.TuningOptions``) chooses each kernel's schedule by
    measurement (rule, MetaSchedule, oneDNN) instead of taking the rule.

    ``memory_plan`` (a ``MemoryPlan`` of ``graph`` in its node order, or a
    ``SizeClassPlanner`` for symbolic shapes) places kernel outputs in one arena
    (``backends.tvm.memory``); without one TVM's planner alone decides.

    Raises
    ------
    LoweringError
        For ops without a lowering (all listed at once), or TVM failing on a kernel (naming
        the kernel's IR nodes).
    """
    tvm_target = resolve_target(target)
    kind = target_kind(tvm_target)
    lowered = lower_graph(graph, tvm_target)
    mod = lowered.mod
    unscheduled = {k.name: mod[k.name] for k in lowered.kernels}  # PrimFuncs are immutable
    if schedule:
        mod = schedule_module(mod, lowered.kernels, tvm_target, kind, tuning, graph)
    else:
        for k in lowered.kernels:
            k.schedule = "none"
    mod = drop_unused_weights(mod, lowered, len(graph.inputs))
    memory = ArenaLowering.for_target(memory_plan, lowered.kernels, kind)
    memory.stats.scratch_bytes = largest_scratch(mod, lowered.kernels)
    with gpu_toolchain(kind, tvm_target) as device_binary:  # nvcc / ld.lld for GPU targets
        executable = _compile(mod, lowered, unscheduled, graph, tvm_target, kind, memory)
    arena = SizeClassArena(memory_plan, memory.stats.buffers) \
        if memory.stats.route == "size-class arena" else None
    program = BuiltModule(graph, lowered, mod, executable, tvm_target, kind, memory.stats, arena)
    if device_binary is not None:
        program.device_code = device_code.collect(executable, device_binary,
                                                  [k.name for k in lowered.kernels])
    return program


def largest_scratch(mod: tvm.IRModule, kernels: list[KernelInfo]) -> int | None:
    """The most bytes one kernel holds in TVM's workspace pool (``workspace_bytes``): the
    pool hands the same blocks from kernel to kernel, so the largest is what it keeps."""
    names = {k.name for k in kernels}
    sizes = [workspace_bytes(func) for gv, func in mod.functions.items()
             if gv.name_hint in names and isinstance(func, tvm.tirx.PrimFunc)]
    return None if None in sizes else max(sizes, default=0)


def drop_unused_weights(mod: tvm.IRModule, lowered: LoweredModule, graph_inputs: int
                        ) -> tvm.IRModule:
    """``main`` without the weight parameters no call reads any more (a kernel that runs in
    a library holds its weights prepacked), and ``lowered.weights`` to match: they would
    be packed and passed for nothing."""
    main = mod["main"]
    used = set(relax.analysis.free_vars(main.body))
    weights = main.params[graph_inputs:]
    if all(w in used for w in weights):
        return mod
    keep = [i for i, w in enumerate(weights) if w in used]
    lowered.weights = [lowered.weights[i] for i in keep]
    params = main.params[:graph_inputs] + [weights[i] for i in keep]
    mod = mod.clone()
    mod["main"] = relax.Function(params, main.body, main.ret_ty, main.is_pure, main.attrs,
                                 main.span)
    return mod


def _compile(mod: tvm.IRModule, lowered: LoweredModule, unscheduled: dict, graph: Graph,
             target: tvm.target.Target, kind: str, memory: ArenaLowering) -> relax.Executable:
    try:
        return tvm.compile(mod, target=target, relax_pipeline=relax_pipeline(target, memory),
                           tir_pipeline=tir_pipeline(target))
    except Exception as first:  # find the kernel(s) at fault, reschedule them, try once more
        bad = [k for k in lowered.kernels if not _builds_alone(mod[k.name], target)]
        if not bad:
            raise LoweringError(f"TVM failed to build the program: {tvm_message(first)}") \
                from None
        _, fallback = rules_for(kind)
        for k in bad:
            func, rule = apply_rules(unscheduled[k.name], target, [], fallback)
            mod[k.name] = func
            k.schedule = f"{rule} (retry)"
        try:
            return tvm.compile(mod, target=target, relax_pipeline=relax_pipeline(target, memory),
                               tir_pipeline=tir_pipeline(target))
        except Exception as second:
            nodes = [graph.node(n) for k in bad for n in k.node_names]
            raise LoweringError(f"TVM failed to build the kernel of:\n  {describe_nodes(nodes)}"
                                f"\n  TVM says: {tvm_message(second)}") from None


def _builds_alone(func, target: tvm.target.Target) -> bool:
    try:
        tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target,
                    tir_pipeline=tir_pipeline(target))
        return True
    except Exception:
        return False


class BuiltModule:
    """A compiled program: call it with torch tensors, get the outputs as a flat list in the
    order of ``graph.outputs``."""

    def __init__(self, graph: Graph, lowered: LoweredModule, mod: tvm.IRModule,
                 executable: relax.Executable, target: tvm.target.Target, kind: str,
                 memory: MemoryStats | None = None, arena: SizeClassArena | None = None):
        self.graph = graph
        self.lowered = lowered
        self.mod = mod  # the scheduled IRModule given to tvm.compile
        self.executable = executable
        self.target = target
        self.kind = kind
        self.kernels: list[KernelInfo] = lowered.kernels
        self.memory = memory or MemoryStats(reason="built without memory stats")
        self.arena = arena  # the per-call arena argument of a size-class program
        self._local = threading.local()  # a VM per thread: one VM is not reentrant
        self._weights: dict[str, torch.Tensor] = {}
        self._weight_args: list[tvm.runtime.Tensor] | None = None  # main's weight params
        self._weight_lock = threading.Lock()
        self._pinned: list[torch.Tensor] = []
        self.device_code: DeviceCode | None = None  # GPU binary and source, set by build
        self.sources: dict[str, str] | None = None  # kernel_sources() of a cache entry
        self.validation: dict[str, Any] | None = None  # tuned vs rules, end to end (ms)
        # oneDNN kernels' prepacked weights, rebuilt from the graph (also after a cache load)
        self.library_kernels = library_kernels.bind(self.kernels, graph)

    @property
    def num_kernels(self) -> int:
        return len(self.kernels)

    @property
    def device(self) -> tvm.runtime.Device:
        return _DEVICES[self.kind](0)

    def vm(self) -> relax.VirtualMachine:
        """This thread's VM, created on first use (so that a GPU program builds on a machine
        without the GPU). A Relax VM keeps its registers and call stack in the instance, so
        threads calling one module concurrently each get their own over the shared
        executable."""
        vm = getattr(self._local, "vm", None)
        if vm is None:
            self.require_device()
            vm = self._local.vm = relax.VirtualMachine(self.executable, self.device)
        return vm

    def require_device(self) -> None:
        """Raise ``DeviceError`` when the device the program was built for is absent."""
        if self.kind != "cpu" and not _device_exists(self.device):
            name = {"cuda": "CUDA", "rocm": "ROCm"}[self.kind]
            arch = self.device_code.arch if self.device_code else self.kind
            raise DeviceError(f"no {name} device is present: the program was compiled for "
                              f"{self.kind} ({arch}) and runs only on such a GPU; "
                              f"compiled.export_library(path) writes it for a machine that "
                              f"has one")

    def vm_arguments(self, inputs: list[torch.Tensor]) -> list[Any]:
        """What ``main`` takes for these inputs: them, the weights, and a size-class
        program's arena sizes and offsets."""
        args = [_to_tvm(t) for t in inputs] + self.weight_arguments()
        return args + self.arena(inputs) if self.arena is not None else args

    def weight_arguments(self) -> list[tvm.runtime.Tensor]:
        """``main``'s weight parameters, made once (``backends.tvm.weights``): on the CPU
        the graph's arrays themselves where the layout is theirs, packed copies where not;
        on a GPU copies in its memory."""
        if self._weight_args is None:
            with self._weight_lock:
                if self._weight_args is None:
                    self._weight_args = [self._weight_argument(name, layout)
                                         for name, layout in self.lowered.weights]
        return self._weight_args

    def _weight_argument(self, name: str, layout: str | None) -> tvm.runtime.Tensor:
        data = weight_layouts.pack(self.graph.weights[name], layout)
        if self.kind == "cpu":
            tensor = weight_layouts.as_torch(data)
            self._pinned.append(tensor)  # tvm's view does not keep torch's memory alive
            return tvm.runtime.from_dlpack(tensor)
        self.require_device()
        return tvm.runtime.tensor(data, self.device)

    def profile(self, *inputs: torch.Tensor, runs: int = 10) -> dict[str, list[float]]:
        """Each kernel call's time inside the program, in ms: for every kernel name, its
        calls in the order the program makes them (identical kernels share a name), each
        the median over ``runs`` calls of the program. A VM instrument times every call
        (on a GPU, launches only). Where a program's time goes, which kernels timed alone
        can miss: threads handed between TVM and a library, caches cold after the
        previous kernel."""
        self.require_device()
        kernels = {k.name for k in self.kernels}
        started: list[float] = []
        calls: list[tuple[str, float]] = []

        def instrument(_func: Any, name: str, before: bool, _ret: Any, *_args: Any) -> int:
            if name in kernels:
                if before:
                    started.append(time.perf_counter())
                else:
                    calls.append((name, time.perf_counter() - started.pop()))
            return 0

        vm = relax.VirtualMachine(self.executable, self.device)
        main, args = vm["main"], self.vm_arguments(list(inputs))
        main(*args)  # warm-up: the arena and packed weights exist
        vm.set_instrument(instrument)
        per_run = []
        for _ in range(runs):
            calls.clear()
            main(*args)
            per_run.append(list(calls))
        by_name: dict[str, list[float]] = {}
        for position, (name, _) in enumerate(per_run[0]):
            ms = 1e3 * statistics.median(run[position][1] for run in per_run)
            by_name.setdefault(name, []).append(ms)
        return by_name

    def __call__(self, *inputs: torch.Tensor) -> list[torch.Tensor]:
        main = self.vm()["main"]
        results = main(*self.vm_arguments(list(inputs)))
        outputs: list[torch.Tensor] = []
        for kind, where in self.lowered.outputs:
            if kind == "result":
                outputs.append(torch.from_dlpack(results[where]))
            elif kind == "input":
                outputs.append(inputs[where])
            elif kind == "weight":
                outputs.append(self._weight(where).to(self.torch_device))
            else:
                value, dtype = where
                outputs.append(torch.tensor(value, dtype=_torch_dtype(dtype),
                                            device=self.torch_device))
        return outputs

    @property
    def torch_device(self) -> str:
        return "cpu" if self.kind == "cpu" else "cuda"  # torch names ROCm GPUs cuda too

    def _weight(self, name: str) -> torch.Tensor:
        if name not in self._weights:
            data = np.asarray(self.graph.weights[name], order="C")  # keeps 0-d
            self._weights[name] = torch.from_numpy(data.copy())
        return self._weights[name].clone()  # callers may write to outputs

    def kernel_sources(self) -> dict[str, str]:
        """Each kernel's code, keyed by kernel name: for a GPU its generated CUDA source or
        AMDGPU assembly, else its scheduled TIR (TVMScript); the first line names the rule
        that scheduled it."""
        if self.mod is None and self.sources is not None:  # loaded from the compile cache
            return dict(self.sources)
        code = self.device_code
        if code is not None:
            return {k.name: f"// schedule: {k.schedule}\n" + "\n\n".join(
                code.kernel_source(n) for n in code.kernels_of(k.name)) for k in self.kernels}
        return {k.name: f"# schedule: {k.schedule}\n{self.mod[k.name].script()}"
                for k in self.kernels}

    def export_library(self, path: str) -> None:
        """Write the compiled program to ``path`` (a shared library) with its weights, a
        manifest, a small loader and, for a GPU, its binary beside it
        (``backends.tvm.artifact``)."""
        from backends.tvm.artifact import export_program

        export_program(self, path)

    def save_library(self, path: str) -> None:
        """Write the shared library alone (the compile cache's entry: weights are packed
        again from the graph when it is loaded)."""
        self.executable.export_library(path)

    def __repr__(self) -> str:
        return f"BuiltModule({self.num_kernels} kernels, target={self.kind})"


def _device_exists(device: tvm.runtime.Device) -> bool:
    try:
        return bool(device.exist)
    except Exception:  # TVM without this GPU's runtime library cannot even ask
        return False


def _to_tvm(t: torch.Tensor) -> tvm.runtime.Tensor:
    if not t.is_contiguous() or t.data_ptr() % _ALIGN:
        t = _aligned_copy(t)
    return tvm.runtime.from_dlpack(t)


def _aligned_copy(t: torch.Tensor) -> torch.Tensor:
    out = torch.empty_like(t, memory_format=torch.contiguous_format)
    out.copy_(t)
    return out


def _torch_dtype(dtype: str) -> torch.dtype:
    return getattr(torch, dtype)
