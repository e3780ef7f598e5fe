"""The catalogue of misuse: each case gets a specific error type and message, and no
partial state is left behind (the model is untouched and still runs eagerly)."""

import pytest
import torch
from torch import nn

import ir
from compiler import (
    CaptureError,
    InputMismatchError,
    TargetError,
    UnsupportedOpError,
    dscompile,
)
from examples.models import ZOO


class UsesUnsupportedOps(nn.Module):
    def forward(self, x):
        a = torch.fft.fft(x).real  # unsupported
        b = torch.linalg.inv(x)  # unsupported
        return a + b


class DataDependent(nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # a Python branch on a tensor's value
            return x * 2
        return x - 1


def test_unsupported_ops_are_listed_together_with_source_lines():
    with pytest.raises(UnsupportedOpError) as err:
        dscompile(UsesUnsupportedOps().eval(), (torch.randn(4, 4),))
    message = str(err.value)
    assert "fft" in message and "inv" in message
    assert len(err.value.ops) >= 2
    assert all("test_bad_inputs.py" in (op.source or "") for op in err.value.ops)


def test_data_dependent_control_flow_says_why_and_what_to_try():
    with pytest.raises(CaptureError) as err:
        dscompile(DataDependent().eval(), (torch.randn(4),))
    message = str(err.value)
    assert "fx" in message and "export" in message
    assert "torch.cond" in message or "control flow" in message


def test_unknown_target_suggests_close_names():
    model, inputs = ZOO["mlp"]()
    with pytest.raises(TargetError, match="cuda"):
        dscompile(model, inputs, target="cdua")


def test_training_mode_is_refused_with_the_reason():
    model, inputs = ZOO["resnet_block"]()
    model.train()
    with pytest.raises(CaptureError, match=r"training mode.*eval\(\)"):
        dscompile(model, inputs)
    assert model.training  # left as it was


def test_malformed_ir_names_line_and_column():
    with pytest.raises(ir.IRParseError, match="line 2, column 22"):
        ir.parse("graph(%x : f32[2]) {\n  %y : f32[2] = relu(%z)\n  return (%y)\n}")


def test_truncated_ir_file(tmp_path):
    model, inputs = ZOO["mlp"]()
    compiled = dscompile(model, inputs, check="off")
    path = tmp_path / "model.json"
    ir.save(compiled.ir, path)
    path.write_text(path.read_text()[:-100])
    with pytest.raises(ir.IRFileError, match="truncated or corrupted"):
        ir.load(path)


def test_call_time_mismatches_and_model_left_intact():
    model, (x,) = ZOO["mlp"]()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    compiled = dscompile(model, (x,), check="off")
    for bad, message in [((torch.randn(3, 64),), "compiled for shape"),
                         ((x.double(),), "compiled for dtype"),
                         ((x, x), "called with 2"),
                         ((), "called with 0")]:
        with pytest.raises(InputMismatchError, match=message):
            compiled(*bad)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-5)
