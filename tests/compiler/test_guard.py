"""The numerics guard catches wrong answers and names the culprit: a wrong pass, a wrong
op lowering or a wrong fusion, each with the smallest IR that shows it."""

import warnings

import pytest
import torch
import tvm
from torch import nn
from tvm import te, tirx

from backends.tvm import op_table
from compiler import NumericsError, dscompile
from compiler.guard import compare, random_like, tolerance, trial_inputs
from compiler.pass_manager import function_pass
from examples.models import ZOO


def test_each_float_dtype_has_its_own_tolerance():
    ref = torch.linspace(-1, 1, 101)
    for dtype, ok, too_far in [(torch.float32, 5e-5, 1e-3), (torch.float16, 5e-3, 5e-2),
                               (torch.bfloat16, 3e-2, 0.2)]:
        e = ref.to(dtype)
        assert not compare([(ref + ok).to(dtype)], [e]), dtype
        assert compare([(ref + too_far).to(dtype)], [e]), dtype
    # an error fp16 allows and fp32 does not; bf16 allows more than fp16
    assert tolerance(torch.float32) < tolerance(torch.float16) < tolerance(torch.bfloat16)
    near = ref + 5e-3
    assert compare([near], [ref]) and not compare([near.half()], [ref.half()])


def test_a_reduced_compute_precision_loosens_the_tolerance():
    ref = torch.linspace(-1, 1, 101)
    assert compare([ref + 5e-3], [ref])
    assert not compare([ref + 5e-3], [ref], compute_dtype="float16")


def test_compare_requires_eagers_dtype():
    ref = torch.arange(5)
    bad = compare([ref.int()], [ref])
    assert bad and "dtype int32 vs eager's int64" in str(bad[0])
    assert "dtype float16" in str(compare([torch.ones(3).half()], [torch.ones(3)])[0])


def test_compare_requires_nan_and_inf_in_the_same_places():
    ref = torch.tensor([1.0, float("nan"), float("inf")])
    assert not compare([ref.clone()], [ref])
    assert "NaN" in str(compare([torch.tensor([1.0, 0.0, float("inf")])], [ref])[0])
    assert "Inf" in str(compare([torch.tensor([1.0, float("nan"), float("-inf")])], [ref])[0])


def test_compare_integers_exactly():
    ref = torch.arange(5)
    assert not compare([ref.clone()], [ref])
    assert compare([ref + 1], [ref])


def test_random_inputs_keep_ids_in_range_and_dtypes():
    gen = torch.Generator().manual_seed(0)
    ids = torch.tensor([[3, 7, 9]] * 50)
    r = random_like(ids, gen)
    assert r.dtype == torch.int64 and r.min() >= 3 and r.max() <= 9
    assert len(r.unique()) > 3  # random, not the example again
    assert random_like(torch.zeros(3, dtype=torch.bool), gen).dtype == torch.bool
    for dtype in (torch.float16, torch.bfloat16, torch.float32):
        x = torch.randn(64).to(dtype) * 3 + 5
        y = random_like(x, gen)
        assert y.dtype == dtype and not torch.equal(x, y)
        assert abs(float(y.float().mean()) - 5) < 1.5
    planted = torch.tensor([1.0, float("nan"), float("inf"), 2.0])
    assert torch.isfinite(random_like(planted, gen)).all()  # NaN stays in the example only


class Embed(nn.Module):
    def __init__(self):
        super().__init__()
        self.table = nn.Embedding(10, 8)

    def forward(self, ids, x):
        return self.table(ids) * x


def test_random_trials_of_an_embedding_stay_valid():
    ids = torch.tensor([[0, 9, 4, 2]])
    trials = trial_inputs((ids, torch.randn(1, 4, 8)), {})
    assert len(trials) == 3
    for (t_ids, _), _ in trials[1:]:
        assert t_ids.dtype == torch.int64 and 0 <= t_ids.min() and t_ids.max() <= 9
    dscompile(Embed().eval(), (ids, torch.randn(1, 4, 8)), cache=False)  # guard runs them


def relu_to_identity():
    @function_pass
    def drop_relu(graph) -> bool:
        """Wrong unless the relu's input is never negative."""
        changed = False
        for node in list(graph.ops()):
            if node.op == "relu":
                graph.replace_all_uses(node, node.inputs[0])
                graph.erase(node)
                changed = True
        return changed

    return drop_relu


class Relu(nn.Module):
    def forward(self, x):
        return torch.relu(x) * 2


def test_random_inputs_catch_what_the_example_hides():
    x = torch.rand(4, 8) + 0.1  # all positive: relu(x) == x on the example
    with pytest.raises(NumericsError, match=r"on random inputs #2") as err:
        dscompile(Relu().eval(), (x,), passes=[relu_to_identity()], opt_level=1, cache=False)
    assert err.value.culprit.pass_name == "drop_relu"


def _breaking_pass():
    """A user pass with a bug: it turns every relu into a sigmoid."""

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


def test_a_wrong_pass_is_named_with_what_it_changed():
    model, inputs = ZOO["mlp"]()
    with pytest.raises(NumericsError) as err:
        dscompile(model, inputs, passes=[_breaking_pass()], cache=False)
    message, culprit = str(err.value), err.value.culprit
    assert "max error" in message and "culprit pass: relu_to_sigmoid" in message
    assert culprit.pass_name == "relu_to_sigmoid" and culprit.reason == "ir"
    assert "already computes other numbers" in message
    assert "  - %" in message and "= relu(" in message  # what it removed ...
    assert "  + %" in message and "= sigmoid(" in message  # ... and added
    assert "sigmoid" in {n.op for n in culprit.ir.ops()}
    assert "relu" not in {n.op for n in culprit.ir.ops()}
    assert "smallest IR that shows it:\ngraph(" in message
    assert err.value.mismatches and err.value.mismatches[0].output == 0


def leaky(x):
    """relu, subtly wrong: 1% of each negative value leaks through."""
    return tirx.Select(x < op_table.const(0, op_table.dtype_of(x)),
                       x * op_table.const(0.01, op_table.dtype_of(x)), x)


def test_a_wrong_lowering_names_its_kernel_and_op(monkeypatch):
    monkeypatch.setitem(op_table.OP_TABLE, "relu", op_table.unary(leaky))
    model, inputs = ZOO["mlp"]()
    with pytest.raises(NumericsError) as err:
        dscompile(model, inputs, cache=False)
    message, culprit = str(err.value), err.value.culprit
    assert culprit.pass_name is None and "no pass to blame" in message
    assert culprit.kernel and culprit.kernel.startswith("linear_relu")
    assert culprit.group is not None and f"fused group {culprit.group}" in message
    assert culprit.reason == "lowering" and "OP_TABLE['relu']" in message
    assert [n.op for n in culprit.ir.ops()] == ["relu"]  # the op alone shows it
    assert "relu(%" in message.split("smallest IR that shows it:")[1]


def test_a_wrong_fusion_names_the_fused_kernel(monkeypatch):
    """relu right as a kernel of its own, wrong when composed after an op in one group."""
    right = op_table.OP_TABLE["relu"]

    def relu(args, attrs, out):
        x = args[0]
        if isinstance(x, te.Tensor) and isinstance(x.op, te.ComputeOp):  # fused
            return op_table.elementwise(leaky, args, out)
        return right(args, attrs, out)

    monkeypatch.setitem(op_table.OP_TABLE, "relu", relu)
    model, inputs = ZOO["mlp"]()
    with pytest.raises(NumericsError) as err:
        dscompile(model, inputs, cache=False)
    message, culprit = str(err.value), err.value.culprit
    assert culprit.pass_name == "fuse"
    assert culprit.reason == "fusion" and "each of its ops agrees" in message
    ops = list(culprit.ir.ops())
    assert [n.op for n in ops] == ["linear", "relu"]
    assert len({n.meta["group"] for n in ops}) == 1  # built as one kernel
    assert culprit.kernel.startswith("linear_relu")


def test_a_wrong_schedule_rule_is_named(monkeypatch):
    """A schedule that changes the math (relu's 0 becomes 0.25) of the fused kernels."""
    from backends.tvm import build

    right = build.schedule_module

    def broken(mod, kernels, *args, **kwargs):
        mod = right(mod, kernels, *args, **kwargs)
        for k in kernels:
            if k.name.startswith("linear_relu"):
                text = mod[k.name].script().replace(", T.float32(0.0), ", ", T.float32(0.25), ")
                mod[k.name] = tvm.script.from_source(text)
        return mod

    monkeypatch.setattr(build, "schedule_module", broken)
    model, inputs = ZOO["mlp"]()
    with pytest.raises(NumericsError) as err:
        dscompile(model, inputs, cache=False)
    culprit = err.value.culprit
    assert culprit.reason == "schedule" and culprit.kernel.startswith("linear_relu")
    assert "our schedule rule breaks it (it agrees with schedule=False)" in str(err.value)
    assert [n.op for n in culprit.ir.ops()] == ["linear", "relu"]


def test_warn_mode_warns_and_returns_the_module():
    model, inputs = ZOO["mlp"]()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compiled = dscompile(model, inputs, passes=[_breaking_pass()], check="warn",
                             cache=False)
    assert any("disagrees with eager" in str(w.message) and "relu_to_sigmoid" in
               str(w.message) for w in caught)
    assert compiled(*inputs).shape == (8, 10)


@pytest.mark.parametrize("mode", ["off", "warn"])
def test_the_environment_sets_the_default(monkeypatch, mode):
    monkeypatch.setenv("DSCOMPILE_CHECK", mode)
    model, inputs = ZOO["mlp"]()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dscompile(model, inputs, passes=[_breaking_pass()], cache=False)
    warned = any("disagrees with eager" in str(w.message) for w in caught)
    assert warned == (mode == "warn")


def test_an_unknown_check_mode_is_refused():
    model, inputs = ZOO["mlp"]()
    with pytest.raises(ValueError, match=r"check must be one of \('raise', 'warn', 'off'\)"):
        dscompile(model, inputs, check="strict")


def test_a_correct_model_passes_silently():
    model, inputs = ZOO["resnet_block"]()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dscompile(model, inputs, check="raise")


def test_float16_models_are_judged_at_float16():
    model, (x,) = ZOO["mlp"]()
    model, x = model.half(), x.half()
    compiled = dscompile(model, (x,), cache=False)  # passes the guard at fp16's tolerance
    with torch.no_grad():
        expected = model(x)
    out = compiled(x)
    assert out.dtype == torch.float16 and not compare([out], [expected])


def test_cross_compiling_skips_the_guard_with_a_warning(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    model, inputs = ZOO["mlp"]()
    with pytest.warns(RuntimeWarning, match="numerics guard skipped: .* no cuda device"):
        compiled = dscompile(model, inputs, target="cuda", cache=False)
    assert compiled.device == "cuda"
