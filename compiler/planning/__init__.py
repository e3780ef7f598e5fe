"""Memory planning: kernels as steps, liveness, in-place reuse, a static arena, and a
memory-aware execution order. ``plan_memory(graph)`` plans one order; ``plan_program(graph)``
picks the order a compiled program runs in (its graph comes back in that order, which the
backend lowers) and, for symbolic shapes, plans per size class. The backend reads
``plan.offset_of(name)`` and ``plan.arena_bytes``."""

from compiler.planning.arena import ALIGNMENT, check_no_overlap
from compiler.planning.liveness import live_bytes, live_intervals, lower_bound
from compiler.planning.order import Ordering, memory_aware_order, reorder
from compiler.planning.plan import Buffer, MemoryPlan, apply_order, plan_memory
from compiler.planning.program import plan_program
from compiler.planning.size_classes import SizeClassPlanner
from compiler.planning.steps import PlanInvariantError, Step, kernel_steps

__all__ = [
    "ALIGNMENT", "Buffer", "MemoryPlan", "Ordering", "PlanInvariantError", "SizeClassPlanner",
    "Step", "apply_order", "check_no_overlap", "kernel_steps", "live_bytes", "live_intervals",
    "lower_bound", "memory_aware_order", "plan_memory", "plan_program", "reorder",
]
