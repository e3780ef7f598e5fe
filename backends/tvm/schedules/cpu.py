"""CPU schedule rules (dlight-style): each rule's ``apply(func, target)`` returns a
``tvm.s_tir.Schedule`` or ``None`` to decline. ``RULES`` are tried in order, ``FALLBACK``
last; it always succeeds."""

from __future__ import annotations

from tvm import s_tir, tirx
from tvm.s_tir.dlight.analysis import get_sblock_info
from tvm.target import Target

VEC = 16  # fp32 lanes of an AVX-512 register


def root_blocks(sch: s_tir.Schedule) -> list:
    return list(sch.get_child_blocks(sch.get_sblock("root")))


class Fallback:
    """Every root block: fuse its leading spatial loops and run them in parallel; a block
    without reduction gets its innermost VEC elements vectorized."""

    name = "fallback"

    def apply(self, func: tirx.PrimFunc, target: Target) -> s_tir.Schedule | None:
        sch = s_tir.Schedule(func)
        for block in root_blocks(sch):
            info = get_sblock_info(sch, block)
            loops = sch.get_loops(block)
            kinds = info.dom_kind()
            lead = len(kinds) - len(kinds.lstrip("S"))
            if lead == 0 or len(loops) != len(kinds):
                continue
            spatial = sch.fuse(*loops[:lead])
            if lead == len(kinds):
                outer, inner = sch.split(spatial, [None, VEC])
                sch.parallel(outer)
                sch.vectorize(inner)
            else:
                sch.parallel(spatial)
        return sch


RULES: list = []
FALLBACK = Fallback()
