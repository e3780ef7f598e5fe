"""End to end: every zoo model compiled for CPU matches eager PyTorch, returns the
model's own output structure, and refuses calls it was not compiled for."""

from collections import namedtuple

import pytest
import torch
from torch import nn

from compiler import InputMismatchError, dscompile
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


@pytest.fixture(scope="module")
def compiled_mlp():
    model, (x,) = ZOO["mlp"]()
    return dscompile(model, (x,), check="off"), x


def test_wrong_shape_says_expected_and_got(compiled_mlp):
    compiled, x = compiled_mlp
    with pytest.raises(InputMismatchError, match=r"compiled for shape \[8, 64\], got \[4, 64\]"):
        compiled(torch.randn(4, 64))


def test_wrong_dtype(compiled_mlp):
    compiled, x = compiled_mlp
    with pytest.raises(InputMismatchError, match="compiled for dtype float32, got float64"):
        compiled(x.double())


def test_wrong_number_of_inputs(compiled_mlp):
    compiled, x = compiled_mlp
    with pytest.raises(InputMismatchError, match=r"1 tensor input\(s\).*called with 2"):
        compiled(x, x)


def test_wrong_device(compiled_mlp):
    compiled, x = compiled_mlp
    with pytest.raises(InputMismatchError, match="compiled for device 'cpu', got a tensor on"):
        compiled(x.to("meta"))


def test_requires_grad_is_refused_with_a_reason(compiled_mlp):
    compiled, x = compiled_mlp
    with pytest.raises(InputMismatchError, match="inference-only"):
        compiled(x.clone().requires_grad_())
    with torch.no_grad():
        compiled(x.clone().requires_grad_())  # fine where no gradient is being recorded


def test_nan_and_inf_propagate_like_eager():
    model, (x,) = ZOO["mlp"]()
    compiled = dscompile(model, (x,), check="off")
    bad = x.clone()
    bad[0, 0] = float("nan")
    bad[1, :] = float("inf")
    bad[2, 3] = float("-inf")
    with torch.no_grad():
        expected = model(bad)
    out = compiled(bad)
    assert torch.equal(torch.isnan(out), torch.isnan(expected))
    assert torch.isnan(out[0]).all()
    torch.testing.assert_close(out, expected, rtol=RTOL, atol=ATOL, equal_nan=True)
