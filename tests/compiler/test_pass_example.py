"""The user-pass example (examples/custom_pass.py): the pattern rewrite on IR text, its
place in the pipeline, and - once capture and the backend exist - through dscompile."""

import importlib.util

import pytest

from compiler.passes.fusion import groups
from compiler.passes.testing import check_pass, graph_from_text, random_weights
from compiler.pipelines import optimize
from examples.custom_pass import SWISH_IR, SiluPass

EXPECTED = """graph(%x : f32[4,16]) {
  %w : f32[16,16] = weight()
  %y : f32[4,16] = linear(%x, %w)
  %m : f32[4,16] = silu(%y)
  return (%m)
}"""


def test_silu_pass_rewrites():
    check_pass(SiluPass(), SWISH_IR, EXPECTED)


def test_silu_pass_runs_before_fusion_so_the_linear_takes_it_as_epilogue():
    graph = graph_from_text(SWISH_IR)
    random_weights(graph)
    out, records = optimize(graph, extra_passes=[SiluPass()], verify=True)
    assert "silu" in [r.name for r in records if r.modified]
    assert [[n.op for n in members] for members in groups(out).values()] == [["linear", "silu"]]
    without, _ = optimize(graph, verify=True)  # y has two users: no epilogue fusion
    assert [[n.op for n in m] for m in groups(without).values()] == [["linear"],
                                                                    ["sigmoid", "mul"]]


@pytest.mark.skipif(importlib.util.find_spec("compiler.capture") is None,
                    reason="needs compiler.capture (torch -> IR), not written yet")
def test_through_dscompile():
    import torch

    from compiler import dscompile
    from examples.custom_pass import Swish

    model, inputs = Swish().eval(), (torch.randn(4, 16),)
    compiled = dscompile(model, inputs, passes=[SiluPass()])
    assert "silu" in [n.op for n in compiled.ir.nodes]
    torch.testing.assert_close(compiled(*inputs), model(*inputs))
