"""A pass of your own: x * sigmoid(x) -> silu(x), written with the pattern API.

    python examples/custom_pass.py      # the IR before and after the pass, then compile
"""

import torch

from compiler.pattern import Any, Pat, PatternRewritePass, RewriteRule


class SiluPass(PatternRewritePass):
    name = "silu"

    def __init__(self):
        # x * sigmoid(x) -> silu(x); the two Any("x") must be the same node
        rule = RewriteRule(Pat("mul", Any("x"), Pat("sigmoid", Any("x")), commutative=True),
                           lambda rw, x: rw.call("silu", [x]), "x*sigmoid(x) -> silu(x)")
        super().__init__([rule], name="silu")


class Swish(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(16, 16)

    def forward(self, x):
        y = self.fc(x)
        return y * torch.sigmoid(y)


SWISH_IR = """graph(%x : f32[4,16]) {
  %w : f32[16,16] = weight()
  %y : f32[4,16] = linear(%x, %w)
  %s : f32[4,16] = sigmoid(%y)
  %m : f32[4,16] = mul(%y, %s)
  return (%m)
}"""

if __name__ == "__main__":
    import ir

    graph = ir.parse(SWISH_IR)  # the IR works on its own, without torch or a backend
    print(graph, SiluPass()(graph.copy()).graph, sep="\n")

    from compiler import dscompile

    model, inputs = Swish().eval(), (torch.randn(4, 16),)
    compiled = dscompile(model, inputs, passes=[SiluPass()])  # runs before fusion
    print(compiled.ir)  # the silu is fused into the linear's kernel
    torch.testing.assert_close(compiled(*inputs), model(*inputs))
