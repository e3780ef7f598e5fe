"""Graph passes (IR -> IR), one per module; each module's docstring states its algebra.

``PASSES`` maps each built-in pass's name to its class; ``compiler.pipelines`` puts them
in order per optimization level.
"""

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

PASSES = {
    p.name: p
    for p in (Simplify, CommonSubexpressionElimination, ConstantFold, FoldBatchNorm,
              DeadCodeElimination, MergeLinearChain, ParallelLinearToConcatSlice,
              BatchIndependentLinears, MixedPrecision, FuseOps)
}

__all__ = [
    "PASSES", "BatchIndependentLinears", "CommonSubexpressionElimination", "ConstantFold",
    "DeadCodeElimination", "FoldBatchNorm", "FuseOps", "MergeLinearChain", "MixedPrecision",
    "ParallelLinearToConcatSlice", "Simplify",
]
