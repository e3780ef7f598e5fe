"""TVM's dlight GPU rules as they come, under our rule interface: ``gpu.py`` wraps them
(one kernel per group, no bool vectors) and adds its own; this plain list is the baseline
its tests compare with, and what ``schedules`` falls back to without ``gpu.py``."""

from __future__ import annotations

from tvm.s_tir import dlight


class _Dlight:
    def __init__(self, rule: dlight.ScheduleRule):
        self.rule = rule
        self.name = f"dlight.{type(rule).__name__}"

    def apply(self, func, target):
        sch = self.rule.apply(func, target, False)
        return sch[0] if isinstance(sch, list) else sch


RULES = [_Dlight(r) for r in (dlight.gpu.Matmul(), dlight.gpu.GEMV(), dlight.gpu.Reduction(),
                              dlight.gpu.GeneralReduction())]
FALLBACK = _Dlight(dlight.gpu.Fallback())
