"""A kernel's small scratch buffers on the stack, not in TVM's workspace pool (CPU).

TVM's LowerTVMBuiltin leaves a CPU allocation on the stack only when its scope is
"global" and it is under 1 KiB. Every other one becomes a pair of calls,
TVMBackendAllocWorkspace and TVMBackendFreeWorkspace, where it is allocated: inside a
parallel loop, once per iteration. Our CPU rules allocate a tile's accumulators
(``cache_write``, 16 vectors are exactly 1 KiB) and a depthwise conv's padded input
plane there, once per output tile or channel; those calls and the accumulators they
kept out of registers cost MobileNetV2's 1x1 convs a quarter of their time. An
allocation of constant size up to ``STACK_BUFFER_BYTES`` is marked with
LowerTVMBuiltin's own opt-out, so the code generator makes it an ``alloca``; larger
ones (a whole padded input, allocated once per call) stay in the pool.
"""

from __future__ import annotations

import math

import tvm
import tvm_ffi
from tvm import s_tir, tirx

STACK_BUFFER_BYTES = 16 * 1024  # per buffer; TVM's threads run on 8 MiB stacks
KEEP_OFF_WORKSPACE = "disable_lower_builtin"  # the annotation LowerTVMBuiltin reads


def constant_bytes(buffer: tirx.Buffer) -> int | None:
    """The buffer's size in bytes, when its shape is constant."""
    if not all(isinstance(extent, tirx.IntImm) for extent in buffer.shape):
        return None
    dtype = tvm.DataType(buffer.dtype)
    return math.prod(int(e) for e in buffer.shape) * dtype.bits * dtype.lanes // 8


def on_stack(alloc: tirx.AllocBuffer, mutator: tvm_ffi.StructuralMutator) -> tirx.AllocBuffer:
    alloc = mutator.default_mutate(alloc)
    nbytes = constant_bytes(alloc.buffer)
    if nbytes is None or not 0 < nbytes <= STACK_BUFFER_BYTES \
            or alloc.buffer.scope() not in ("global", "local") \
            or KEEP_OFF_WORKSPACE in alloc.annotations:
        return alloc
    annotations = {**alloc.annotations, KEEP_OFF_WORKSPACE: tirx.IntImm("bool", 1)}
    return tirx.AllocBuffer(alloc.buffer, annotations, alloc.span)


@tirx.transform.prim_func_pass(opt_level=0, name="dscompile.SmallBuffersOnStack")
def small_buffers_on_stack(func: tirx.PrimFunc, _mod, _ctx) -> tirx.PrimFunc:
    return func.with_body(tvm_ffi.structural_mutate(func.body, [(tirx.AllocBuffer, on_stack)]))


def workspace_bytes(func: tirx.PrimFunc) -> int | None:
    """Bytes of a scheduled kernel's buffers that stay in TVM's workspace pool (those of
    constant size over STACK_BUFFER_BYTES: a Winograd conv's tiles and products, a whole
    padded input), None where one has a symbolic size. They are not in our arena; the
    pool keeps them between calls and kernels."""
    sizes: list[int | None] = []

    def visit(block: s_tir.SBlock) -> None:
        for buffer in block.alloc_buffers:
            if buffer.scope() == "global":
                sizes.append(constant_bytes(buffer))

    tvm_ffi.structural_walk(func.body, (s_tir.SBlock, visit), order="post")
    if None in sizes:
        return None
    return sum(n for n in sizes if n > STACK_BUFFER_BYTES)
