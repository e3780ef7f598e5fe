"""The systems the model benchmark compares, one builder each.

A builder takes ``(model, args, kwargs)``, compiles (and runs once, so lazy compilers such
as ``torch.compile`` have compiled when it returns) and gives back a ``Built``: ``run()``
calls the compiled model and returns its outputs as a flat list of torch tensors, in the
order of ``torch.utils._pytree.tree_leaves(model(*args, **kwargs))``.

Every builder imports its system inside itself: a system that is missing or broken fails
only its own cells.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils import _pytree as pytree

THREADS = 2


@dataclass
class Built:
    run: Callable[[], list[torch.Tensor]]
    kernels: int | None = None  # None where the system has no kernel count we can read
    flops: int | None = None  # dscompile's own count, reused for every system of a model
    info: dict[str, Any] = field(default_factory=dict)


def flat_inputs(args: tuple, kwargs: dict) -> list[torch.Tensor]:
    """The tensor leaves of a call, in the order torch.export numbers its user inputs."""
    return [x for x in pytree.tree_leaves((args, kwargs)) if isinstance(x, torch.Tensor)]


def tensor_leaves(outputs: Any) -> list[torch.Tensor]:
    return [x for x in pytree.tree_leaves(outputs) if isinstance(x, torch.Tensor)]


def eager(model, args, kwargs) -> Built:
    return Built(lambda: tensor_leaves(model(*args, **kwargs)))


def _torch_compile(model, args, kwargs, freezing: bool) -> Built:
    import torch._inductor.config as inductor_config

    inductor_config.freezing = freezing
    compiled = torch.compile(model)
    run = lambda: tensor_leaves(compiled(*args, **kwargs))
    run()  # torch.compile compiles on the first call
    return Built(run, info={"freezing": freezing})


def inductor(model, args, kwargs) -> Built:
    return _torch_compile(model, args, kwargs, freezing=False)


def inductor_freezing(model, args, kwargs) -> Built:
    return _torch_compile(model, args, kwargs, freezing=True)


def onnxruntime(model, args, kwargs) -> Built:
    """``torch.onnx.export(dynamo=True)`` (needs onnxscript), then an ORT CPU session
    at its default graph optimization level (ORT_ENABLE_ALL) with 2 intra-op threads."""
    import onnxruntime as ort

    path = os.path.join(tempfile.mkdtemp(prefix="bench_onnx_"), "model.onnx")
    program = torch.onnx.export(model, args, kwargs=kwargs, dynamo=True)
    program.save(path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    tensors = flat_inputs(args, kwargs)
    if len(names) != len(tensors):
        raise RuntimeError(f"ONNX model takes {len(names)} inputs ({names}), call has "
                           f"{len(tensors)}")
    feed = {n: t.numpy() for n, t in zip(names, tensors)}
    run = lambda: [torch.from_numpy(a) for a in session.run(None, feed)]
    run()
    return Built(run, info={"exporter": "dynamo", "onnx_nodes": _onnx_nodes(path)})


def _onnx_nodes(path: str) -> int | None:
    try:
        import onnx

        return len(onnx.load(path, load_external_data=False).graph.node)
    except Exception:  # only an informative count
        return None


def host_target():
    import tvm

    return tvm.target.Target({"kind": "llvm", "mtriple": "x86_64-linux-gnu",
                              "mcpu": tvm.target.codegen.llvm_get_system_cpu()})


def tvm_relax(model, args, kwargs) -> Built:
    """TVM's own frontend, ``from_exported_program``, and ``tvm.compile``'s default
    pipeline. The pipeline runs here, then ``tvm.compile(..., relax_pipeline=None)``,
    which is exactly ``tvm.compile(mod, target)`` but lets us count the PrimFuncs."""
    import tvm
    from tvm import relax
    from tvm.relax.frontend.torch import from_exported_program

    target = host_target()
    exported = torch.export.export(model, args, kwargs)
    mod = from_exported_program(exported)
    with target:
        lowered = relax.get_pipeline("default")(mod)
    kernels = sum(isinstance(f, tvm.tirx.PrimFunc) for f in lowered.functions.values())
    vm = relax.VirtualMachine(tvm.compile(lowered, target, relax_pipeline=None), tvm.cpu())
    inputs = [tvm.runtime.from_dlpack(t.contiguous()) for t in flat_inputs(args, kwargs)]
    main = vm["main"]
    run = lambda: _tvm_leaves(main(*inputs))
    run()
    return Built(run, kernels=kernels)


def _tvm_leaves(value: Any) -> list[torch.Tensor]:
    if hasattr(value, "__dlpack__"):
        return [torch.from_dlpack(value)]
    return [t for v in value for t in _tvm_leaves(v)]


# O3 tunes: trials per kernel, and the tuning database it reuses across runs (the first
# run of a model measures, later runs only replay; DSCOMPILE_TUNING_DIR moves it)
TUNING_TRIALS = int(os.environ.get("DSCOMPILE_BENCH_TRIALS", "16"))


def _dscompile(model, args, kwargs, opt_level: int) -> Built:
    from compiler import dscompile

    tuning = {"trials": TUNING_TRIALS} if opt_level == 3 else {}
    compiled = dscompile(model, args, example_kwargs=kwargs, check="off", opt_level=opt_level,
                         **tuning)
    run = lambda: tensor_leaves(compiled(*args, **kwargs))
    run()
    plan = compiled.plan
    info = {} if plan is None else {"arena_bytes": plan.arena_bytes,
                                    "naive_bytes": plan.naive_bytes}
    if opt_level == 3:
        info["tuning"] = tuning_summary(compiled.kernels)
    return Built(run, kernels=compiled.num_kernels, flops=compiled.report().total_flops,
                 info=info)


def tuning_summary(kernels: list) -> dict[str, Any]:
    """How many kernels each candidate won, and the sum of the chosen candidates' times
    against the rules' (what tuning saved, by its own measurements)."""
    from collections import Counter

    chosen = Counter(k.schedule for k in kernels)
    tuned = [k for k in kernels if len(k.timings) > 1]
    chosen_ms = sum(k.timings.get(k.schedule, 0.0) for k in tuned)
    rule_ms = sum(min(t for n, t in k.timings.items() if n not in ("metaschedule", "onednn"))
                  for k in tuned if any(n not in ("metaschedule", "onednn") for n in k.timings))
    return {"trials": TUNING_TRIALS, "chosen": dict(chosen), "kernels_measured": len(tuned),
            "chosen_ms": round(chosen_ms, 3), "rules_ms": round(rule_ms, 3)}


def dscompile_o2(model, args, kwargs) -> Built:
    """Rules only: every kernel scheduled by the first of our rules that fires."""
    return _dscompile(model, args, kwargs, opt_level=2)


def dscompile_o3(model, args, kwargs) -> Built:
    """O2 plus tuning: each kernel's fastest of rule, MetaSchedule and oneDNN, measured
    (or reused from the tuning database)."""
    return _dscompile(model, args, kwargs, opt_level=3)


SYSTEMS: dict[str, Callable[..., Built]] = {
    "eager": eager,
    "inductor": inductor,
    "inductor_freezing": inductor_freezing,
    "onnxruntime": onnxruntime,
    "tvm_relax": tvm_relax,
    "dscompile_O2": dscompile_o2,
    "dscompile_O3": dscompile_o3,
}
