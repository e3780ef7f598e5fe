"""Kernel counts of the compiled TVM module before (O0) and after (O2) fusion, for every
zoo model, and the fusions users came for, checked end to end against eager."""

import pytest
import torch
from torch import nn

from compiler import dscompile
from examples.models import ZOO

# (O0, O2) kernels: O0 is one kernel per op (reshapes are views); O2 folds batch norm,
# merges Q/K/V and fuses epilogues and layout chains.
KERNELS = {
    "mlp": (5, 3),
    "resnet_block": (22, 9),
    "mobilenet_block": (23, 9),
    "transformer_block": (20, 12),
    "gpt_block": (24, 12),
    "sdpa_block": (16, 11),
}


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_kernel_count_before_and_after_fusion(name):
    model, inputs = ZOO[name]()
    counts = tuple(dscompile(model, inputs, opt_level=level).num_kernels for level in (0, 2))
    assert counts == KERNELS[name]


def prim_funcs(compiled) -> list[str]:
    return [gv.name_hint for gv, f in compiled._program.mod.functions.items()
            if f.__class__.__name__ == "PrimFunc"]


def test_conv_bn_relu_is_one_primfunc():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()).eval()
    model[1].running_mean.uniform_(-1, 1)
    model[1].running_var.uniform_(0.5, 2)
    compiled = dscompile(model, (torch.randn(1, 3, 16, 16),))  # the guard checks numerics
    assert [n.op for n in compiled.ir.ops()] == ["conv2d", "relu"]
    assert prim_funcs(compiled) == ["conv2d_relu"]


def test_conv_add_relu_is_one_primfunc():
    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(8, 8, 3, padding=1)

        def forward(self, x):
            return torch.relu(self.conv(x) + x)

    compiled = dscompile(Residual().eval(), (torch.randn(1, 8, 8, 8),))
    assert prim_funcs(compiled) == ["conv2d_add_relu"]


def test_qkv_is_one_gemm():
    model, inputs = ZOO["transformer_block"]()
    compiled = dscompile(model, inputs)
    linears = [n for n in compiled.ir.ops() if n.op == "linear"]
    assert [n.inputs[1].shape for n in linears] == [(192, 64), (64, 64), (256, 64), (64, 256)]


class TwoLinears(nn.Module):
    def __init__(self, second_user: bool):
        super().__init__()
        self.a, self.b = nn.Linear(16, 32), nn.Linear(32, 8)
        self.second_user = second_user

    def forward(self, x):
        h = self.a(x)
        y = self.b(h.reshape(2, 3, 32))
        return (y, h) if self.second_user else y


def test_linear_chain_through_a_reshape_is_one_linear():
    compiled = dscompile(TwoLinears(False).eval(), (torch.randn(6, 16),))
    assert [n.op for n in compiled.ir.ops()] == ["linear", "reshape"] or \
        [n.op for n in compiled.ir.ops()] == ["reshape", "linear"]
    assert compiled.num_kernels == 1


def test_linear_chain_is_kept_when_the_middle_is_used_elsewhere():
    compiled = dscompile(TwoLinears(True).eval(), (torch.randn(6, 16),))
    assert sum(n.op == "linear" for n in compiled.ir.ops()) == 2
