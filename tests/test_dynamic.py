"""Dynamic shapes: ``dscompile(..., dynamic=...)`` compiles once with symbolic dims and
runs on every size in range, against eager, with no recompilation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import backends.tvm.build as tvm_build
import compiler.capture.export_frontend as export_frontend
from compiler import dscompile
from compiler.errors import CaptureError, InputMismatchError, UnsupportedOpError
from examples.hf_models import bert
from examples.models import SmallResNet, TransformerBlock


@pytest.fixture
def count_compiles(monkeypatch) -> dict[str, int]:
    """Counts captures and TVM builds from here on: a call must do neither."""
    counts = {"capture": 0, "build": 0}

    def counting(name, fn):
        def wrapper(*args, **kwargs):
            counts[name] += 1
            return fn(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(export_frontend, "capture_export",
                        counting("capture", export_frontend.capture_export))
    monkeypatch.setattr(tvm_build, "build", counting("build", tvm_build.build))
    return counts


def assert_close(got: torch.Tensor, want: torch.Tensor) -> None:
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_transformer_block_on_three_sequence_lengths_compiles_once(count_compiles):
    model = TransformerBlock().eval()
    compiled = dscompile(model, (torch.randn(2, 16, 64),), cache=False,
                         dynamic={"x": {0: "batch", 1: ("seq", 1, 512)}})
    assert compiled.ir.inputs[0].shape == ("batch", "seq", 64)
    assert count_compiles == {"capture": 1, "build": 1}
    for seq in (7, 64, 200):
        x = torch.randn(1, seq, 64)
        with torch.no_grad():
            assert_close(compiled(x), model(x))
    assert count_compiles == {"capture": 1, "build": 1}  # calls captured and built nothing


def test_cnn_on_batch_1_and_13():
    model = SmallResNet().eval()
    compiled = dscompile(model, (torch.randn(2, 3, 32, 32),), dynamic={"x": {0: "batch"}},
                         cache=False)
    assert compiled.ir.inputs[0].shape[0] == "batch"
    for batch in (1, 13):
        x = torch.randn(batch, 3, 32, 32)
        with torch.no_grad():
            assert_close(compiled(x), model(x))


def test_sizes_outside_the_range_and_disagreeing_inputs_are_refused():
    class TwoInputs(nn.Module):
        def forward(self, x, mask):
            return x * mask

    model = TwoInputs().eval()
    compiled = dscompile(model, (torch.randn(1, 8), torch.ones(1, 8)), cache=False,
                         dynamic={"x": {1: ("seq", 2, 32)}, "mask": {1: ("seq", 2, 32)}})
    with pytest.raises(InputMismatchError, match=r"'seq' = 40 is outside the range \[2, 32\]"):
        compiled(torch.randn(1, 40), torch.ones(1, 40))
    with pytest.raises(InputMismatchError, match="input 'mask'"):
        compiled(torch.randn(1, 9), torch.ones(1, 10))  # one seq, two lengths
    x = torch.randn(1, 5)
    assert_close(compiled(x, torch.full((1, 5), 2.0)), 2 * x)


def test_a_dim_the_model_fixes_is_named():
    class FixedWidth(nn.Module):
        def forward(self, x):
            return x.reshape(x.shape[0], 4, 4)

    with pytest.raises((CaptureError, UnsupportedOpError), match="specialized|Constraints|16"):
        dscompile(FixedWidth().eval(), (torch.randn(2, 16),), dynamic={"x": {1: "width"}},
                  cache=False)


def test_bad_dynamic_specs_say_what_is_wrong():
    model = TransformerBlock().eval()
    with pytest.raises(ValueError, match="tensor inputs are x"):
        dscompile(model, (torch.randn(1, 8, 64),), dynamic={"y": {1: "seq"}}, cache=False)
    with pytest.raises(ValueError, match="axis 5 out of range"):
        dscompile(model, (torch.randn(1, 8, 64),), dynamic={"x": {5: "seq"}}, cache=False)
    with pytest.raises(ValueError, match="not an identifier"):
        dscompile(model, (torch.randn(1, 8, 64),), dynamic={"x": {1: "s q"}}, cache=False)


def test_hf_bert_on_two_sequence_lengths():
    model, inputs = bert("tiny")
    model.eval()
    spec = {1: ("seq", 2, 512)}
    compiled = dscompile(model, inputs, dynamic={"input_ids": spec, "attention_mask": spec},
                         cache=False)
    for seq in (9, 50):
        ids = torch.randint(0, model.config.vocab_size, (1, seq))
        call = {"input_ids": ids, "attention_mask": torch.ones(1, seq, dtype=torch.long)}
        with torch.no_grad():
            want = model(**call)
        got = compiled(**call)
        assert type(got) is type(want)
        assert_close(got.last_hidden_state, want.last_hidden_state)
        assert_close(got.pooler_output, want.pooler_output)
