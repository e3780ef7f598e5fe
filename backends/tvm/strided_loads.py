"""Strided vector loads as one contiguous load and a shuffle, for the CPU.

A stride-2 conv or pooling window vectorized along its output columns reads every other
input element. TVM's LLVM code generator loads such a vector one lane at a time (16
scalar loads and inserts per vector: MobileNetV2's stride-2 depthwise convs ran at a
quarter of the stride-1 ones' rate). Loading the span the lanes cover and picking every
k-th element lets LLVM emit two vector loads and a permute. The span lies between the
first and last lane's element, so it reads nothing the loop did not already touch.

``backends.tvm.pipeline.tir_pipeline`` runs it after TVM's lowering passes (after
VectorizeLoop has turned vector loops into ramps).
"""

from __future__ import annotations

import tvm
import tvm_ffi
from tvm import tirx

MAX_STRIDE = 4  # a span of (lanes - 1) * stride + 1 elements; wider ones stay gathers


def contiguous_span(load: tvm.ir.TensorLoad,
                    mutator: tvm_ffi.StructuralMutator) -> tvm.ir.PrimExpr:
    """``buf[ramp(base, k, lanes)]`` as ``shuffle(buf[ramp(base, 1, span)], 0, k, 2k..)``."""
    load = mutator.default_mutate(load)
    if len(load.indices) != 1 or not isinstance(load.indices[0], tirx.Ramp):
        return load
    ramp = load.indices[0]
    if not isinstance(ramp.stride, tirx.IntImm) or not isinstance(ramp.lanes, tirx.IntImm):
        return load
    stride, lanes = int(ramp.stride), int(ramp.lanes)
    if not 2 <= stride <= MAX_STRIDE or lanes < 4:
        return load
    span = tirx.BufferLoad(load.source, [tirx.Ramp(ramp.base, 1, (lanes - 1) * stride + 1)])
    return tirx.Shuffle([span], [tirx.IntImm("int32", i * stride) for i in range(lanes)])


@tirx.transform.prim_func_pass(opt_level=0, name="dscompile.StridedLoadsAsShuffles")
def strided_loads_as_shuffles(func: tirx.PrimFunc, _mod, _ctx) -> tirx.PrimFunc:
    return func.with_body(tvm_ffi.structural_mutate(
        func.body, [(tvm.ir.TensorLoad, contiguous_span)]))
