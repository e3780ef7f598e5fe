"""End to end: every zoo model compiled for CPU matches eager PyTorch and returns the
model's own output structure (calls it was not compiled for: tests/test_bad_inputs.py)."""

from collections import namedtuple

import pytest
import torch
from torch import nn

from compiler import dscompile
from examples.models import ZOO

RTOL, ATOL = 1e-4, 1e-5


def assert_close(actual, expected):
    torch.testing.assert_close(actual, expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("opt_level", [0, 2])
@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_matches_eager(name, opt_level):
    model, inputs = ZOO[name]()
    compiled = dscompile(model, inputs, opt_level=opt_level, check="off")
    with torch.no_grad():
        expected = model(*inputs)
    assert_close(compiled(*inputs), expected)
    fresh = tuple(torch.randn_like(x) for x in inputs)  # not the inputs it was compiled on
    with torch.no_grad():
        assert_close(compiled(*fresh), model(*fresh))


Pair = namedtuple("Pair", "left right")


class StructuredOutputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x, y):
        h = self.fc(x)
        return {"hidden": h, "pair": Pair(h.relu(), y * 2), "list": [x, h.sum(dim=-1)]}


def test_output_structure_is_the_models():
    model = StructuredOutputs().eval()
    x, y = torch.randn(2, 8), torch.randn(3)
    out = dscompile(model, (x, y), check="off")(x, y)
    with torch.no_grad():
        ref = model(x, y)
    assert set(out) == {"hidden", "pair", "list"}
    assert isinstance(out["pair"], Pair) and isinstance(out["list"], list)
    assert_close(out, ref)


def test_keyword_inputs():
    model = StructuredOutputs().eval()
    x, y = torch.randn(2, 8), torch.randn(3)
    compiled = dscompile(model, {"x": x, "y": y}, check="off")
    assert_close(compiled(x=x, y=y)["hidden"], model.fc(x))


def test_profile_names_where_the_time_goes():
    model, (x,) = ZOO["resnet_block"]()
    compiled = dscompile(model, (x,), check="off")
    report = compiled.profile(x, runs=3)
    rows = [r for r in report.rows if r.ms is not None]
    assert {r.kernel for r in rows} == {k.name for k in compiled.kernels}
    assert all(r.ms > 0 for r in rows)
    conv = next(r for r in rows if r.ops == "conv2d+add+relu")
    assert conv.gflops == conv.flops / (conv.ms * 1e6)
    assert "GFLOP/s" in str(report).splitlines()[0]
