"""Weights are frozen at compile time, without a copy: the graph shares the parameters'
memory, and a parameter changed in place afterwards makes calls fail loudly instead of
answering with the old weights."""

from __future__ import annotations

import pytest
import torch

from compiler import dscompile
from compiler.errors import WeightsChangedError
from examples.models import MLP


def compiled_mlp():
    model = MLP().eval()
    return model, dscompile(model, (torch.randn(4, 64),), cache=False)


def test_graph_weights_share_the_parameters_memory():
    model, compiled = compiled_mlp()
    bias = model.layers[0].bias
    (name,) = [n for n in compiled.ir.weights if n.endswith("layers_0_bias")]
    assert compiled.ir.weights[name].ctypes.data == bias.data_ptr()


@pytest.mark.parametrize("change", ["in place", "load_state_dict", "buffer"])
def test_a_changed_parameter_refuses_the_call(change):
    model, compiled = compiled_mlp()
    x = torch.randn(4, 64)
    compiled(x)
    with torch.no_grad():
        if change == "in place":
            model.layers[1].weight.mul_(2)
        elif change == "load_state_dict":
            model.load_state_dict(MLP().state_dict())
        else:
            model.register_buffer("scale", torch.ones(1))
            compiled = dscompile(model, (x,), cache=False)
            model.scale.add_(1)
    changed = {"in place": "layers.1.weight", "load_state_dict": "layers.0.weight",
               "buffer": "scale"}[change]
    with pytest.raises(WeightsChangedError, match=f"{changed} was changed in place after"):
        compiled(x)
    again = dscompile(model, (x,), cache=False)  # recompiling takes the new weights
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x), rtol=1e-4, atol=1e-5)
