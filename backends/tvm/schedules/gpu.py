"""GPU schedule rules (CUDA and ROCm): dlight's Matmul, GEMV, Reduction and
GeneralReduction, then our row kernel for reduction chains (attention), then dlight's
Fallback, which always applies.

Two checks on every rule's schedule:

- one kernel per fused group: a schedule that launches more than one kernel is declined,
  so the next rule gets the kernel (Fallback's, the last resort, is kept);
- no vectors of bool: TVM's CUDA code generator loads two bools as a ``ushort2`` (four
  bytes) into a ``float2`` (nvcc rejects it, and the load would read past the mask), so
  vectorized loops that read a bool buffer are unrolled instead.
"""

from __future__ import annotations

from typing import Any

from tvm import s_tir, tirx
from tvm.s_tir import dlight
from tvm.target import Target

from backends.tvm.schedules._dlight_gpu import _Dlight
from backends.tvm.schedules.gpu_row_kernel import RowKernel


def launches(func: tirx.PrimFunc) -> int:
    """How many kernels ``func`` launches: its thread-bound loop nests at top level."""
    return _count_launches(func.body)


def _count_launches(stmt: Any) -> int:
    if isinstance(stmt, tirx.For) and stmt.kind == tirx.ForKind.THREAD_BINDING:
        return 1
    if isinstance(stmt, tirx.SeqStmt):
        return sum(_count_launches(s) for s in stmt.seq)
    if isinstance(stmt, s_tir.SBlockRealize):
        return _count_launches(stmt.block)
    if isinstance(stmt, tirx.IfThenElse):
        return _count_launches(stmt.then_case) + (
            _count_launches(stmt.else_case) if stmt.else_case is not None else 0)
    body = getattr(stmt, "body", None)
    return _count_launches(body) if body is not None else 0


def unroll_bool_vectors(sch: s_tir.Schedule) -> None:
    """Unroll the vectorized loops around blocks that read a bool buffer."""
    for block in _all_blocks(sch):
        if not any(r.source.dtype == "bool" for r in sch.get(block).reads):
            continue
        for loop in sch.get_loops(block):
            if sch.get(loop).kind == tirx.ForKind.VECTORIZED:
                sch.unroll(loop)


def _all_blocks(sch: s_tir.Schedule) -> list:
    names: list[str] = []

    def visit(block: s_tir.SBlock) -> None:
        if block.name_hint != "root":
            names.append(block.name_hint)

    import tvm_ffi

    tvm_ffi.structural_walk(sch.mod["main"].body, (s_tir.SBlock, visit), order="post")
    return [sch.get_sblock(n) for n in dict.fromkeys(names)]


class OneKernel:
    """A rule whose schedules must launch one kernel and hold no bool vectors."""

    def __init__(self, rule: Any, single_launch: bool = True):
        self.rule = rule
        self.name = rule.name
        self.single_launch = single_launch

    def apply(self, func: tirx.PrimFunc, target: Target) -> s_tir.Schedule | None:
        sch = self.rule.apply(func, target)
        if sch is None:
            return None
        if self.single_launch and launches(sch.mod["main"]) != 1:
            return None
        unroll_bool_vectors(sch)
        return sch


RULES = [OneKernel(r) for r in (_Dlight(dlight.gpu.Matmul()), _Dlight(dlight.gpu.GEMV()),
                                _Dlight(dlight.gpu.Reduction()),
                                _Dlight(dlight.gpu.GeneralReduction()), RowKernel())]
FALLBACK = OneKernel(_Dlight(dlight.gpu.Fallback()), single_launch=False)
