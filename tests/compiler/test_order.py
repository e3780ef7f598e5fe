"""Memory-aware execution order on branching graphs built in a memory-poor order.

Sizes are float32; the peak counts, during each kernel, the buffers still needed plus
the kernel's own output (graph outputs stay to the end).
"""

from __future__ import annotations

import ir
from compiler.planning import (
    kernel_steps,
    memory_aware_order,
    plan_memory,
    plan_program,
    reorder,
)
from compiler.planning.sample_graphs import (
    inception_block,
    multi_head_attention,
    resnet_chain,
    unet,
)

KIB = 1024


def test_inception_runs_the_wide_branch_first() -> None:
    # 16x16 maps: 1 KiB per channel. Captured: a (32) and b (32) are live while branch c
    # expands to 128 channels: 32 + 32 + 128 + 16 = 208 KiB. Running c first leaves the
    # concat as the peak: four branch outputs (32+32+16+16) + the 96-channel result.
    ordering = memory_aware_order(inception_block())
    assert ordering.captured_peak_bytes == 208 * KIB
    assert ordering.peak_bytes == 192 * KIB
    assert ordering.steps[0].name == "c_expand"


def test_unet_projects_skips_on_the_way_down() -> None:
    # Captured: the 32-channel 32x32 encoder feature (128 KiB) waits for its projection
    # in the decoder, alive through the bottleneck: 240 KiB. Projecting it at once
    # (to 4 channels) frees it: 176 KiB.
    ordering = memory_aware_order(unet())
    assert ordering.captured_peak_bytes == 240 * KIB
    assert ordering.peak_bytes == 176 * KIB
    names = [s.name for s in ordering.steps]
    assert names.index("dec1_skip") < names.index("mid_relu")


def test_attention_heads_run_one_after_another() -> None:
    # Captured stage by stage: all four 64x64 score matrices (16 KiB each) and the
    # probabilities live together: 96 KiB. Head by head: two finished heads, one V, one
    # score matrix and its softmax: 4 + 4 + 4 + 16 + 16 = 44 KiB.
    ordering = memory_aware_order(multi_head_attention())
    assert ordering.captured_peak_bytes == 96 * KIB
    assert ordering.peak_bytes == 44 * KIB
    assert ordering.method == "exact"


def test_greedy_with_lookahead_also_beats_the_captured_order() -> None:
    for build in (inception_block, unet, multi_head_attention):
        ordering = memory_aware_order(build(), exact_max_kernels=0)
        assert ordering.method == "greedy", build.__name__
        assert ordering.peak_bytes < ordering.captured_peak_bytes, build.__name__


def test_reorder_keeps_a_valid_graph_and_lowers_the_planned_arena() -> None:
    for build in (inception_block, unet, multi_head_attention):
        graph = build()
        new = reorder(graph)
        ir.verify(new)
        assert ir.parse(str(new)) == new
        assert {n.name for n in new.nodes} == {n.name for n in graph.nodes}
        assert [s.name for s in kernel_steps(new)] == \
            [s.name for s in memory_aware_order(graph).steps]
        before, after = plan_memory(graph), plan_memory(new)
        assert after.lower_bound_bytes < before.lower_bound_bytes, build.__name__
        assert after.arena_bytes < before.arena_bytes, build.__name__


def test_reorder_keeps_groups_contiguous() -> None:
    graph = unet()
    new = reorder(graph)
    seen_groups, current = set(), None
    for node in new.nodes:
        group = node.meta.get("group")
        if group != current:
            assert group is None or group not in seen_groups
            seen_groups.add(current)
            current = group


def test_large_graphs_take_the_greedy_path() -> None:
    graph = multi_head_attention(heads=16, dim=128)  # 114 kernels: beyond exact search
    ordering = memory_aware_order(graph)
    assert len(ordering.steps) == 114 and ordering.method == "greedy"
    assert ordering.peak_bytes < ordering.captured_peak_bytes / 2


def test_plan_program_runs_the_order_of_the_smaller_arena() -> None:
    for build in (inception_block, unet, multi_head_attention):
        graph = build()
        ordered, plan = plan_program(graph)
        assert plan.arena_bytes < plan_memory(graph).arena_bytes, build.__name__
        assert plan.kernel_order == [s.name for s in kernel_steps(ordered)]
        assert [n.name for n in graph.nodes] != [n.name for n in ordered.nodes]
    chain = resnet_chain()  # nothing to gain: the captured order stays, graph untouched
    ordered, plan = plan_program(chain)
    assert ordered is chain and plan.arena_bytes == plan_memory(chain).arena_bytes
