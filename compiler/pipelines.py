"""The pass pipeline of each optimization level, one explicit list read top to bottom.

User passes (``dscompile(..., passes=[...])``) run after the built-in rewrites and before
the clean-up and fusion tail: they see a simplified graph, what they leave behind is
cleaned by ``simplify``/``dce``, and fusion sees the ops they introduce (a user
``x*sigmoid(x) -> silu(x)`` pass makes ``linear + silu`` one kernel).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from compiler.pass_manager import Instrument, Pass, PassManager, PassRecord
from compiler.passes import PASSES
from compiler.passes.batch_linears import BatchIndependentLinears
from compiler.passes.constant_fold import ConstantFold
from compiler.passes.cse import CommonSubexpressionElimination
from compiler.passes.dce import DeadCodeElimination
from compiler.passes.fold_batch_norm import FoldBatchNorm
from compiler.passes.fuse import FuseOps
from compiler.passes.merge_linear_chain import MergeLinearChain
from compiler.passes.merge_parallel_linear import ParallelLinearToConcatSlice
from compiler.passes.mixed_precision import MixedPrecision
from compiler.passes.simplify import Simplify
from ir import Graph

OPT_LEVELS = (0, 1, 2, 3)


def build_pipeline(opt_level: int, extra_passes: Sequence[Pass] = (),
                   dtype: str | None = None) -> list[Pass]:
    """Fresh pass instances for ``opt_level`` with the user's ``extra_passes`` in place;
    ``dtype`` "float16"/"bfloat16" adds mixed precision before fusion, at every level (it
    is the precision the user asked for, not an optimization)."""
    user = list(extra_passes)
    precision = [MixedPrecision(dtype)] if dtype in ("float16", "bfloat16") else []
    if opt_level == 0:  # capture and lower only; no groups (one kernel per op)
        return user + precision
    rewrites = [
        Simplify(),
        CommonSubexpressionElimination(),
        ConstantFold(),
        FoldBatchNorm(),
    ]
    if opt_level == 1:
        return rewrites + user + precision + [DeadCodeElimination()]
    if opt_level in (2, 3):  # 3: O2 plus schedule tuning, done in the backend
        return rewrites + [
            DeadCodeElimination(),
            MergeLinearChain(),
            ParallelLinearToConcatSlice(),
            BatchIndependentLinears(),
            *user,
            *precision,
            Simplify(),
            DeadCodeElimination(),
            FuseOps(),
        ]
    raise ValueError(f"opt_level must be one of {OPT_LEVELS}, got {opt_level!r}")


def run_passes(graph: Graph, passes: Sequence[Pass], instruments: Iterable[Instrument] = (),
               verify: bool | None = None) -> tuple[Graph, list[PassRecord]]:
    """Run ``passes`` on a copy of ``graph``; returns the result and one record per pass."""
    return PassManager(passes, instruments, verify).run(graph)


def optimize(graph: Graph, opt_level: int = 2, extra_passes: Sequence[Pass] = (),
             instruments: Iterable[Instrument] = (), verify: bool | None = None,
             dtype: str | None = None) -> tuple[Graph, list[PassRecord]]:
    """Optimize a copy of ``graph`` at ``opt_level``; ``graph`` itself is not changed.

    Parameters
    ----------
    graph : ir.Graph
    opt_level : int
        0, 1, 2 (default) or 3; see ``build_pipeline``.
    extra_passes : sequence of Pass
        The user's passes, run before the clean-up and fusion tail.
    instruments : sequence of Instrument
        E.g. ``DumpIRInstrument(dir)``, ``TimingInstrument()``.
    verify : bool or None
        Verify after each pass; ``None`` reads ``DSCOMPILE_VERIFY``.
    dtype : {None, "float32", "float16", "bfloat16"}
        Mixed precision: weights and compute in this dtype (``MixedPrecision``).

    Returns
    -------
    (ir.Graph, list of PassRecord)
    """
    return run_passes(graph, build_pipeline(opt_level, extra_passes, dtype), instruments, verify)


def run_named_passes(graph: Graph, names: Sequence[str], instruments: Iterable[Instrument] = (),
                     verify: bool | None = None) -> tuple[Graph, list[PassRecord]]:
    """Run built-in passes by name (``dscompile dump --passes simplify,cse``)."""
    unknown = [n for n in names if n not in PASSES]
    if unknown:
        raise ValueError(f"unknown pass(es) {unknown}; built-in passes: {sorted(PASSES)}")
    return run_passes(graph, [PASSES[n]() for n in names], instruments, verify)
