"""Our Relax and TIR pipelines.

Relax: TVM's CPU pipeline (tvm/relax/backend/cpu_generic/pipeline.py)
without FuseOps/FuseTIR, since fusion is decided by our IR passes and every kernel is
already one scheduled PrimFunc. Memory: ``memory`` (``backends.tvm.memory.ArenaLowering``)
places planned kernel outputs at our arena offsets before StaticPlanBlockMemory and
measures what is allocated after it. The steps, top to bottom, are in ``relax_passes``.

TIR, for the CPU: TVM's own lowering, then two passes of ours before the host code is
finalized (``backends.tvm.strided_loads``, ``backends.tvm.stack_buffers``)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import tvm
from tvm import relax

if TYPE_CHECKING:
    from backends.tvm.memory import ArenaLowering


def relax_passes(memory: ArenaLowering | None = None) -> list[tvm.transform.Pass]:
    t = relax.transform
    place = memory.before_static_planning() if memory is not None else []
    measure = memory.after_static_planning() if memory is not None else []
    return [
        t.LegalizeOps(),  # the only Relax ops we emit are reshapes (views)
        t.AnnotateTIROpPattern(),
        t.RewriteDataflowReshape(),  # reshape kernels -> vm.builtin.reshape views
        t.DeadCodeElimination(),  # drop the reshape PrimFuncs left unused
        t.ToNonDataflow(),
        t.RemovePurityChecking(),
        t.CallTIRRewrite(),  # explicit output allocation per kernel call
        *place,  # our plan: kernel outputs at their arena offsets
        t.StaticPlanBlockMemory(),  # what is left shares storage, allocated once
        *measure,  # alloc_storage bytes, read before they become VM builtins
        t.LowerAllocTensor(),
        t.KillAfterLastUse(),
        t.LowerRuntimeBuiltin(),
        t.ComputePrimValue(),
        t.VMShapeLower(),
        t.AttachGlobalSymbol(),
    ]


def relax_pipeline(target: tvm.target.Target,
                   memory: ArenaLowering | None = None) -> tvm.transform.Pass:
    """The pass given to ``tvm.compile(relax_pipeline=...)``."""

    @tvm.transform.module_pass(opt_level=0, name="dscompile_relax_pipeline")
    def pipeline(mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        with target:
            return tvm.transform.Sequential(relax_passes(memory))(mod)

    return pipeline


CPU_TIR_PIPELINE = "dscompile_cpu"
CPU_TIR_PASS_SOURCES = ("pipeline.py", "strided_loads.py", "stack_buffers.py")
_registered = False
_fingerprint: str | None = None


def codegen_fingerprint() -> str:
    """A hash of the sources of our TIR passes: what, besides a kernel's schedule, decides
    the code it compiles to. The tuning database trusts a time measured for our rule's
    kernel only under the same passes (an edited pass re-times the rule)."""
    global _fingerprint
    if _fingerprint is None:
        h = hashlib.blake2b(digest_size=8)
        for name in CPU_TIR_PASS_SOURCES:
            h.update(Path(__file__).with_name(name).read_bytes())
        _fingerprint = h.hexdigest()
    return _fingerprint


def _cpu_tir_pipeline():
    import tvm.tirx.compilation_pipeline as pipelines

    from backends.tvm.stack_buffers import small_buffers_on_stack
    from backends.tvm.strided_loads import strided_loads_as_shuffles

    lower, finalize_host, finalize_device = pipelines.get_tir_pipeline("default")
    ours = [strided_loads_as_shuffles, small_buffers_on_stack]
    return tvm.transform.Sequential([lower, *ours]), finalize_host, finalize_device


def tir_pipeline(target: tvm.target.Target) -> str:
    """The ``tir_pipeline`` argument of ``tvm.compile`` for ``target``."""
    global _registered
    if target.kind.name != "llvm":
        return "default"
    if not _registered:
        import tvm.tirx.compilation_pipeline as pipelines

        pipelines.register_tir_pipeline(CPU_TIR_PIPELINE, _cpu_tir_pipeline)
        _registered = True
    return CPU_TIR_PIPELINE
