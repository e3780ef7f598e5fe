"""The numerics guard catches wrong answers and names the culprit pass."""

import warnings

import pytest
import torch

from compiler import NumericsError, dscompile
from compiler.guard import compare, random_like
from examples.models import ZOO


def test_compare_uses_dtype_tolerances():
    ref = torch.randn(100)
    assert not compare([ref + 1e-7], [ref])
    assert compare([ref + 1e-2], [ref])
    half = ref.half()
    assert not compare([half + 1e-3], [half])  # within fp16's tolerance
    assert compare([half + 0.5], [half])


def test_compare_requires_nan_and_inf_in_the_same_places():
    ref = torch.tensor([1.0, float("nan"), float("inf")])
    assert not compare([ref.clone()], [ref])
    assert "NaN" in str(compare([torch.tensor([1.0, 0.0, float("inf")])], [ref])[0])
    assert "Inf" in str(compare([torch.tensor([1.0, float("nan"), float("-inf")])], [ref])[0])


def test_compare_integers_exactly():
    ref = torch.arange(5)
    assert not compare([ref.clone()], [ref])
    assert compare([ref + 1], [ref])


def test_random_inputs_stay_valid():
    gen = torch.Generator().manual_seed(0)
    ids = torch.tensor([[3, 7, 9]])
    r = random_like(ids, gen)
    assert r.dtype == torch.int64 and r.min() >= 3 and r.max() <= 9
    assert random_like(torch.zeros(3, dtype=torch.bool), gen).dtype == torch.bool


def _breaking_pass():
    """A user pass with a bug: it turns every relu into a sigmoid."""
    from compiler.pass_manager import function_pass

    @function_pass
    def relu_to_sigmoid(graph) -> bool:
        changed = False
        for node in list(graph.ops()):
            if node.op == "relu":
                new = graph.call("sigmoid", node.inputs, after=node, meta=node.meta)
                graph.replace_all_uses(node, new)
                graph.erase(node)
                changed = True
        return changed

    return relu_to_sigmoid


def test_a_wrong_pass_is_named():
    model, inputs = ZOO["mlp"]()
    with pytest.raises(NumericsError) as err:
        dscompile(model, inputs, passes=[_breaking_pass()])
    assert "relu_to_sigmoid" in str(err.value)
    assert "max error" in str(err.value)


def test_warn_mode_warns_and_returns_the_module():
    model, inputs = ZOO["mlp"]()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compiled = dscompile(model, inputs, passes=[_breaking_pass()], check="warn")
    assert any("disagrees with eager" in str(w.message) for w in caught)
    assert compiled(*inputs).shape == (8, 10)


def test_a_correct_model_passes_silently():
    model, inputs = ZOO["resnet_block"]()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dscompile(model, inputs, check="raise")
