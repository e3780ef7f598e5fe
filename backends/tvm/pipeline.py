"""Our Relax pipeline: TVM's CPU pipeline (tvm/relax/backend/cpu_generic/pipeline.py)
without FuseOps/FuseTIR, since fusion is decided by our IR passes and every kernel is
already one scheduled PrimFunc. The steps, top to bottom:"""

from __future__ import annotations

import tvm
from tvm import relax


def relax_passes() -> list[tvm.transform.Pass]:
    t = relax.transform
    return [
        t.LegalizeOps(),  # the only Relax ops we emit are reshapes (views)
        t.AnnotateTIROpPattern(),
        t.RewriteDataflowReshape(),  # reshape kernels -> vm.builtin.reshape views
        t.DeadCodeElimination(),  # drop the reshape PrimFuncs left unused
        t.ToNonDataflow(),
        t.RemovePurityChecking(),
        t.CallTIRRewrite(),  # explicit output allocation per kernel call
        t.StaticPlanBlockMemory(),  # intermediates share storage, allocated once
        t.LowerAllocTensor(),
        t.KillAfterLastUse(),
        t.LowerRuntimeBuiltin(),
        t.ComputePrimValue(),
        t.VMShapeLower(),
        t.AttachGlobalSymbol(),
    ]


def relax_pipeline(target: tvm.target.Target) -> tvm.transform.Pass:
    """The pass given to ``tvm.compile(relax_pipeline=...)``."""

    @tvm.transform.module_pass(opt_level=0, name="dscompile_relax_pipeline")
    def pipeline(mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        with target:
            return tvm.transform.Sequential(relax_passes())(mod)

    return pipeline
