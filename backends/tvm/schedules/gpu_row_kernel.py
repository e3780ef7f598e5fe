"""A GPU rule for chains of reductions that share their rows: one thread block per row.

Attention is the case: per query row, scores over the keys (a reduction over the head
dim), the softmax's max and sum (reductions over the keys), the weighted sum of values
(a reduction over the keys). dlight's rules take one reduction each and its Fallback
launches a kernel per block; here every block is computed at the row loop of the last
one, so the chain is one kernel:

    for row in blockIdx.x:                    # (batch, head, query) fused
        for j in threadIdx.x: score[j] = ...  # shared memory
        max  = allreduce over threadIdx.x     # cross-thread reductions
        for j in threadIdx.x: e[j] = exp(score[j] - max)
        sum  = allreduce over threadIdx.x
        for d in threadIdx.x: out[d] = sum_j e[j] / sum * v[j, d]

Cheap elementwise blocks (the mask, the normalization) are inlined into their readers;
expensive ones (exp) keep a shared buffer so no thread computes them twice.
"""

from __future__ import annotations

import math

import tvm_ffi
from tvm import s_tir, tirx
from tvm.target import Target

from backends.tvm.schedules.cpu import extent, kinds, leading_spatial, root_blocks, vars_in

_get_sblock_realize = tvm_ffi.get_global_func("s_tir.schedule.GetSBlockRealize")

CHEAP_NODES = 40  # an elementwise block this small is recomputed rather than stored
MAX_THREADS = 256


def expression_size(sch: s_tir.Schedule, block) -> int:
    """Expression nodes in the block's body: what inlining it makes each reader redo."""
    nodes: list = []
    tvm_ffi.structural_walk(sch.get(block).body, (tirx.Expr, nodes.append), order="post")
    return len(nodes)


def shared_memory_limit(target: Target) -> int:
    """Static shared memory per thread block: the target's, else CUDA's 48 KiB."""
    return int(target.attrs.get("max_shared_memory_per_block", 48 * 1024))


def shared_bytes_per_row(sch: s_tir.Schedule, stages: list, rows: int) -> float:
    """Shared memory the intermediate stages of one row take (infinite when a shape is
    symbolic: we cannot promise it fits)."""
    out_shape = sch.get(stages[-1]).writes[0].source.shape
    if not all(isinstance(d, tirx.IntImm) for d in out_shape[:rows]):
        return math.inf
    n_rows = math.prod(int(d) for d in out_shape[:rows])
    total = 0.0
    for b in stages[:-1]:
        buffer = sch.get(b).writes[0].source
        if not all(isinstance(d, tirx.IntImm) for d in buffer.shape):
            return math.inf
        total += math.prod(int(d) for d in buffer.shape) * buffer.dtype.bits // 8 / n_rows
    return total


def reduction_loop_vars(sch: s_tir.Schedule, block) -> set:
    """The loop vars that a reduction iter var of ``block`` is bound to."""
    realize = _get_sblock_realize(sch, block)
    found: set = set()
    for iv, value in zip(realize.block.iter_vars, realize.iter_values):
        if iv.iter_type == tirx.IterVar.CommReduce:
            found |= vars_in([value])
    return found


def thread_count(extents: list[int | None], warp: int) -> int:
    """Threads per block: enough for the widest row loop, a whole number of warps."""
    widest = max((e for e in extents if e), default=MAX_THREADS)
    threads = warp
    while threads < min(widest, MAX_THREADS):
        threads *= 2
    return threads


class RowKernel:
    name = "row_kernel"

    def apply(self, func: tirx.PrimFunc, target: Target) -> s_tir.Schedule | None:
        sch = s_tir.Schedule(func)
        blocks = root_blocks(sch)
        if len(blocks) < 3 or sum("R" in kinds(sch, b) for b in blocks) < 2:
            return None  # one reduction: dlight's rules do it
        out = blocks[-1]
        rows = leading_spatial(kinds(sch, out)) - 1
        if rows < 1:
            return None
        for b in blocks[:-1]:
            if set(kinds(sch, b)) == {"S"} and expression_size(sch, b) <= CHEAP_NODES:
                try:
                    sch.compute_inline(b)
                except Exception:  # read with another pattern: it stays a stage
                    pass
        stages = root_blocks(sch)
        out = stages[-1]
        if shared_bytes_per_row(sch, stages, rows) > shared_memory_limit(target):
            return None  # a row does not fit in one thread block's shared memory
        loops = sch.get_loops(out)
        row = sch.fuse(*loops[:rows])
        for b in reversed(stages[:-1]):
            sch.compute_at(b, row, preserve_unit_loops=False)
        inner = {b: sch.get_loops(b)[1:] for b in stages}
        warp = int(target.attrs.get("thread_warp_size", 32))
        threads = thread_count([extent(sch, loops[0]) for loops in inner.values() if loops],
                               warp)
        sch.bind(row, "blockIdx.x")
        for b in stages:
            self.bind_threads(sch, b, inner[b], threads)
            if b != out:
                sch.set_scope(b, 0, "shared")
        return sch

    @staticmethod
    def bind_threads(sch: s_tir.Schedule, block, loops: list, threads: int) -> None:
        """The block's spatial loops across the threads (its reduction loops stay in
        each thread); a row reduction's loops across the threads (a cross-thread
        reduction)."""
        if not loops:
            return
        reducing = reduction_loop_vars(sch, block)
        spatial = [lp for lp in loops
                   if sch.get(lp).loop_var not in reducing and extent(sch, lp) != 1]
        across = spatial or loops
        fused = sch.fuse(*across) if len(across) > 1 else across[0]
        _, lane = sch.split(fused, [None, threads])
        sch.bind(lane, "threadIdx.x")
