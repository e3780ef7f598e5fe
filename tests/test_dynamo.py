"""``torch.compile(model, backend="dscompile")``: Dynamo's graphs through dscompile, with
module state frozen into weights, symbolic sizes as dynamic dims, graph breaks and
options passed through."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import compiler  # noqa: F401  (registers the backend)
import compiler.api as api
from examples.hf_models import bert
from examples.models import SmallResNet, TransformerBlock


@pytest.fixture
def compiles(monkeypatch) -> list:
    """Every dscompile call the backend makes: (compiled module, keyword options)."""
    calls: list = []
    real = api.dscompile

    def recording(*args, **kwargs):
        module = real(*args, **kwargs)
        calls.append((module, kwargs))
        return module

    monkeypatch.setattr(api, "dscompile", recording)
    torch._dynamo.reset()
    yield calls
    torch._dynamo.reset()


def assert_close(got: torch.Tensor, want: torch.Tensor) -> None:
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_dynamic_sequence_lengths_compile_once(compiles):
    model = TransformerBlock().eval()
    compiled = torch.compile(model, backend="dscompile", dynamic=True)
    with torch.no_grad():
        for seq in (7, 9, 64):
            x = torch.randn(1, seq, 64)
            assert_close(compiled(x), model(x))
    (module, options), = compiles
    (x,) = module.ir.inputs  # parameters became weights, not inputs
    assert x.shape[1] != 9 and isinstance(x.shape[1], str)
    assert len(module.ir.weights) >= 8  # (Q/K/V merged into one)
    assert options["dynamic"] is not None


def test_default_mode_recompiles_once_then_stays_dynamic(compiles):
    model = SmallResNet().eval()
    compiled = torch.compile(model, backend="dscompile")
    with torch.no_grad():
        for batch in (1, 3, 13):
            x = torch.randn(batch, 3, 32, 32)
            assert_close(compiled(x), model(x))
    # Dynamo: a static graph for batch 1, then one with a symbolic batch for the rest
    assert [kwargs["dynamic"] is None for _, kwargs in compiles] == [True, False]


def test_graph_breaks_give_one_compile_per_graph(compiles):
    class Breaks(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(8, 8), nn.Linear(8, 4)

        def forward(self, x):
            h = torch.relu(self.a(x))
            torch._dynamo.graph_break()
            return self.b(h) * 2

    model = Breaks().eval()
    x = torch.randn(3, 8)
    with torch.no_grad():
        assert_close(torch.compile(model, backend="dscompile")(x), model(x))
    assert len(compiles) == 2


def test_options_pass_through(compiles):
    model = TransformerBlock().eval()
    compiled = torch.compile(model, backend="dscompile", options={"opt_level": 0})
    x = torch.randn(1, 5, 64)
    with torch.no_grad():
        assert_close(compiled(x), model(x))
    (module, options), = compiles
    assert options["opt_level"] == 0 and module.options.opt_level == 0


def test_hf_bert_with_two_sequence_lengths(compiles):
    model, _ = bert("tiny")
    model.eval()
    compiled = torch.compile(model, backend="dscompile", dynamic=True)
    for seq in (16, 37):
        ids = torch.randint(0, model.config.vocab_size, (1, seq))
        inputs = {"input_ids": ids, "attention_mask": torch.ones(1, seq, dtype=torch.long)}
        with torch.no_grad():
            want = model(**inputs)
            got = compiled(**inputs)
        assert type(got) is type(want)
        assert_close(got.last_hidden_state, want.last_hidden_state)
    assert len(compiles) == 1


def test_a_size_handed_over_a_graph_break(compiles):
    class SizeAcrossBreak(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(8, 8)

        def forward(self, x):
            h = self.lin(x)
            n = h.shape[1] * 2
            torch._dynamo.graph_break()
            return h * n

    model = SizeAcrossBreak().eval()
    compiled = torch.compile(model, backend="dscompile", dynamic=True)
    with torch.no_grad():
        for seq in (3, 5):
            x = torch.randn(1, seq, 8)
            assert_close(compiled(x), model(x))
    assert any(c[0].ir.outputs for c in compiles)
