"""The compiled program honours the memory plan: every planned kernel output is written at
its arena offset (seen from inside the VM), the arena is one allocation reused across
calls, the final Relax allocates exactly the planned arena for intermediates, and results
match eager with in-place kernels, a reordered branching model, symbolic sizes and a
program loaded from the compile cache."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from backends.tvm.build import build
from backends.tvm.memory import trace_kernel_outputs
from backends.tvm.target import resolve_target
from compiler import dscompile
from compiler.cache import CompileCache
from compiler.capture import capture
from compiler.config import CompileOptions
from compiler.pipelines import optimize
from compiler.planning import plan_memory, plan_program
from examples.models import MLP, ZOO, TransformerBlock


def arena_offsets(plan) -> dict[str, int]:
    return {b.name: b.offset for b in plan.buffers if b.offset is not None and b.alias_of is None}


def check_program_honours(compiled, inputs: list[torch.Tensor]) -> None:
    """Static plan: the Relax allocates the arena and nothing else for intermediates, and
    each call writes every planned output at its offset in one reused block."""
    plan, memory = compiled.plan, compiled.memory
    assert memory.route == "arena", memory.reason
    assert memory.allocated_bytes == memory.arena_storage_bytes == plan.arena_bytes
    assert memory.tvm_storage_bytes == 0
    assert memory.output_bytes == plan.output_bytes
    assert plan.lower_bound_bytes <= plan.arena_bytes <= plan.naive_bytes
    trace = trace_kernel_outputs(compiled._program, inputs, arena_offsets(plan), calls=3)
    assert trace.honours_plan, (trace.offsets[0], trace.planned)
    assert trace.arena_reused, trace.bases


def close_to_eager(model, compiled, inputs, atol: float = 1e-4) -> None:
    with torch.no_grad():
        want = model(*inputs)
    torch.testing.assert_close(compiled(*inputs), want, rtol=1e-4, atol=atol)


@pytest.mark.parametrize("opt_level", [0, 2])
@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_program_runs_in_the_planned_arena(name: str, opt_level: int) -> None:
    """O0 (one kernel per op) puts many elementwise kernels in place; O2 fuses them."""
    model, args = ZOO[name]()
    compiled = dscompile(model, args, opt_level=opt_level, check="off", cache=False)
    check_program_honours(compiled, list(args))
    for _ in range(2):  # fresh inputs: nothing left in the arena may leak into a result
        close_to_eager(model, compiled, [torch.randn_like(a) for a in args])
    if opt_level == 0 and name in ("resnet_block", "mobilenet_block", "gpt_block"):
        assert compiled.memory.inplace_kernels >= 4


class Inception(nn.Module):
    """Branches declared cheap first: the captured order keeps their outputs live while the
    128-channel branch runs; running it first needs a smaller arena."""

    def __init__(self, c: int = 32):
        super().__init__()
        self.a = nn.Conv2d(c, 32, 1)
        self.b1, self.b2 = nn.Conv2d(c, 16, 1), nn.Conv2d(16, 32, 3, padding=1)
        self.c1, self.c2 = nn.Conv2d(c, 128, 1), nn.Conv2d(128, 16, 3, padding=1)
        self.pool, self.d = nn.MaxPool2d(3, 1, 1), nn.Conv2d(c, 16, 1)

    def forward(self, x):
        a = F.relu(self.a(x))
        b = F.relu(self.b2(F.relu(self.b1(x))))
        c = F.relu(self.c2(F.relu(self.c1(x))))
        return torch.cat([a, b, c, F.relu(self.d(self.pool(x)))], 1)


def test_branching_model_runs_reordered_in_a_smaller_arena() -> None:
    model, x = Inception().eval(), torch.randn(1, 32, 16, 16)
    captured, _ = optimize(capture(model, (x,), {}).graph, opt_level=2)
    compiled = dscompile(model, (x,), check="off", cache=False)
    kib = 1024  # 16x16 float32 maps: 1 KiB per channel
    assert plan_memory(captured).arena_bytes == 208 * kib  # a, b, c1 and c2 live at once
    assert compiled.plan.arena_bytes == 144 * kib  # c1 and c2 first, then the rest
    assert compiled.plan.kernel_order[:2] == ["relu_3", "relu_4"]  # the c branch
    check_program_honours(compiled, [x])
    close_to_eager(model, compiled, [x])


def test_transformer_block_plans_per_size_class() -> None:
    model = TransformerBlock().eval()
    compiled = dscompile(model, (torch.randn(2, 16, 64),), check="off", cache=False,
                         dynamic={"x": {1: ("seq", 1, 512)}})
    program = compiled._program
    assert compiled.memory.route == "size-class arena", compiled.memory.reason
    assert compiled.memory.tvm_storage_bytes == 0
    planner = program.arena.planner
    bases = {}
    for seq in (1, 5, 16, 33, 64, 100):
        x = torch.randn(2, seq, 64)
        close_to_eager(model, compiled, [x])
        sizes = planner.sizes_of([x])
        layout = planner.layout(sizes, program.arena.buffers)
        plan = planner.plan_for(sizes)
        assert layout[0] == plan.arena_bytes == plan.lower_bound_bytes
        trace = trace_kernel_outputs(program, [x], dict(zip(program.arena.buffers, layout[1:])),
                                     calls=2)
        assert trace.honours_plan and trace.arena_reused
        bases.setdefault(layout[0], set()).add(trace.bases[0])
    classes = [row["class"]["seq"] for row in planner.table()]
    assert classes == [1, 8, 16, 64, 128]  # 33 and 64 share the class of 64
    assert len(bases[planner.plan_for({"seq": 64}).arena_bytes]) == 1  # ... and its block


def test_program_from_the_cache_keeps_its_plan(tmp_path) -> None:
    cache, target, options = CompileCache(tmp_path), resolve_target("cpu"), CompileOptions()
    for model, x, dynamic in [(MLP().eval(), torch.randn(8, 64), None),
                              (MLP().eval(), torch.randn(3, 64), {"x": {0: "batch"}})]:
        graph = capture(model, (x,), {}, dynamic=dynamic).graph
        graph, memory_plan = plan_program(optimize(graph, opt_level=2)[0])
        built = cache.build(graph, target, options, memory_plan)
        loaded = cache.build(graph, target, options)  # no plan given: all from meta.json
        assert (built.cache_status, loaded.cache_status) == ("miss", "hit")
        assert loaded.memory == built.memory
        assert loaded.memory.route == ("size-class arena" if dynamic else "arena")
        for batch in (3, 5, 8):
            xi = torch.randn(batch, 64) if dynamic else x
            with torch.no_grad():
                torch.testing.assert_close(loaded(xi)[0], model(xi), rtol=1e-4, atol=1e-5)


def test_gpu_programs_keep_tvms_planner_and_say_why() -> None:
    model, x = MLP().eval(), torch.randn(8, 64)
    graph, plan = plan_program(optimize(capture(model, (x,), {}).graph, opt_level=2)[0])
    program = build(graph, {"kind": "cuda", "arch": "sm_80"}, memory_plan=plan)
    assert program.memory.route == "tvm"
    assert "pointer arithmetic" in program.memory.reason
    assert program.memory.allocated_bytes is not None  # what TVM's planner allocates
