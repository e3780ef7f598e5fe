"""Capture: torch models -> IR. Each zoo model must verify, print and parse back, have the
expected ops, carry source lines into this file, and match eager numerics through the
reference interpreter."""

from __future__ import annotations

import inspect
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils._pytree as pytree

import ir
from compiler.capture import capture
from compiler.capture.interpret import OPS as INTERPRETER_OPS
from compiler.capture.testing import assert_matches_eager, op_histogram
from compiler.errors import CaptureError, UnsupportedOpError

THIS_FILE = "test_capture.py"

# ----- the zoo -------------------------------------------------------------------------


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(16, 32), nn.Linear(32, 4)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)))


class CNN(nn.Module):
    """Conv-BN-ReLU, maxpool, a residual add, global pooling, flatten, linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, padding="same", bias=False), nn.BatchNorm2d(8)
        self.relu, self.pool = nn.ReLU(inplace=True), nn.MaxPool2d(2)
        self.gap, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(8, 10)

    def forward(self, x):
        y = self.pool(self.relu(self.bn1(self.conv1(x))))
        y = F.relu(self.bn2(self.conv2(y)) + y)
        return self.fc(torch.flatten(self.gap(y), 1))


class MobileBlock(nn.Module):
    """Depthwise-separable inverted residual with ReLU6 and hardswish."""

    def __init__(self, c: int = 8, expand: int = 4) -> None:
        super().__init__()
        hidden = c * expand
        self.expand = nn.Sequential(nn.Conv2d(c, hidden, 1, bias=False), nn.BatchNorm2d(hidden),
                                    nn.ReLU6())
        self.depthwise = nn.Sequential(nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden,
                                                 bias=False), nn.BatchNorm2d(hidden),
                                       nn.Hardswish())
        self.project = nn.Sequential(nn.Conv2d(hidden, c, 1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x):
        return x + self.project(self.depthwise(self.expand(x)))


class EncoderBlock(nn.Module):
    """Post-norm transformer encoder block; attention spelled out or via F.sdpa."""

    def __init__(self, d: int = 32, heads: int = 4, use_sdpa: bool = False) -> None:
        super().__init__()
        self.heads, self.use_sdpa = heads, use_sdpa
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))
        self.drop = nn.Dropout(0.1)

    def split_heads(self, t):
        b, s, d = t.shape
        return t.view(b, s, self.heads, d // self.heads).transpose(1, 2)

    def forward(self, x):
        q, k, v = self.split_heads(self.q(x)), self.split_heads(self.k(x)), \
            self.split_heads(self.v(x))
        if self.use_sdpa:
            att = F.scaled_dot_product_attention(q, k, v)
        else:
            scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
            att = self.drop(scores.softmax(dim=-1)) @ v
        att = att.transpose(1, 2).contiguous().view(x.shape)
        x = self.ln1(x + self.drop(self.o(att)))
        return self.ln2(x + self.mlp(x))


class CausalBlock(nn.Module):
    """GPT-style: fused QKV, split, causal mask from torch.tril + masked_fill, the mask's
    size taken from the input (``torch.ones(t, t)`` or ``x.new_ones(t, t)``)."""

    def __init__(self, d: int = 32, heads: int = 4, torch_ones: bool = False) -> None:
        super().__init__()
        self.heads, self.torch_ones = heads, torch_ones
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.ln = nn.LayerNorm(d)

    def forward(self, x):
        b, t, d = x.size()
        q, k, v = self.qkv(self.ln(x)).split(d, dim=2)
        q = q.view(b, t, self.heads, -1).permute(0, 2, 1, 3)
        k = k.view(b, t, self.heads, -1).permute(0, 2, 1, 3)
        v = v.view(b, t, self.heads, -1).permute(0, 2, 1, 3)
        mask = torch.tril(torch.ones(t, t) if self.torch_ones else x.new_ones(t, t))
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = att.masked_fill(mask[None, None] == 0, float("-inf"))
        y = (F.softmax(att, dim=-1) @ v).transpose(1, 2).reshape(b, t, d)
        return x + self.proj(y)


class Layout(nn.Module):
    """Indexing, views, splits, casts and scalar arithmetic fx turns into many ops."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(6, 5))
        self.conv1d = nn.Conv1d(4, 4, 3, padding=1)
        self.conv_even = nn.Conv2d(4, 2, 4, padding="same")

    def forward(self, x, bias):
        a, b = x.chunk(2, dim=1)                                 # [2, 2, 6]
        c = torch.cat([a * 2, b - 1.5], dim=-1)                  # [2, 2, 12]
        d = c[:, 1:, None, ::2].squeeze(2) + x[..., -1:]          # [2, 1, 6]
        e = torch.stack(x.unbind(1), dim=0).sum(dim=(0, 2), keepdim=True)
        f = torch.addmm(bias, x.flatten(0, 1), self.w)           # [8, 5]
        g = torch.where(f > 0, f, f.pow(2)).clamp(max=3.0).mean(-1)
        h = (x.size(-1) // 2) * x.amax(-1) / x.shape[0]
        i = F.pad(x, (1, 2)).permute(2, 0, 1).to(torch.float64)
        j = self.conv1d(x) + torch.arange(6).float()
        k = self.conv_even(x[:, :, :, None].expand(2, 4, 6, 6))
        l = F.avg_pool2d(k, 2) + (x.long() >= 0).float().sum()  # noqa: E741
        return {"d": d, "e": e, "g": g, "h": h, "i": i, "j": j, "l": l}


class DataDependent(nn.Module):
    def forward(self, x):
        if x.sum() > 0:
            return x * 2
        return x - 1


class Unsupported(nn.Module):
    def forward(self, x):
        a = torch.fft.fft(x)
        b = torch.fft.fft(x * 2)
        c = torch.linalg.inv(x)
        return a.real + b.real + c


class TwoInputs(nn.Module):
    """Keyword inputs, an optional mask left as None, a tuple output."""

    def __init__(self) -> None:
        super().__init__()
        self.emb, self.fc = nn.Embedding(50, 16, padding_idx=0), nn.Linear(16, 16)

    def forward(self, ids, scale, mask=None):
        h = self.emb(ids) * scale
        if mask is not None:
            h = h.masked_fill(mask[..., None], 0.0)
        return self.fc(h), h.mean(1)


ZOO = {
    "mlp": (MLP, lambda: (torch.randn(4, 16),)),
    "cnn": (CNN, lambda: (torch.randn(2, 3, 16, 16),)),
    "mobile": (MobileBlock, lambda: (torch.randn(2, 8, 8, 8),)),
    "encoder": (EncoderBlock, lambda: (torch.randn(2, 6, 32),)),
    "encoder_sdpa": (lambda: EncoderBlock(use_sdpa=True), lambda: (torch.randn(2, 6, 32),)),
    "causal": (CausalBlock, lambda: (torch.randn(2, 6, 32),)),
    "causal_ones": (lambda: CausalBlock(torch_ones=True), lambda: (torch.randn(2, 6, 32),)),
    "layout": (Layout, lambda: (torch.randn(2, 4, 6), torch.randn(5))),
}

EXPECTED_OPS = {
    "mlp": {"linear": 2, "relu": 1},
    "cnn": {"conv2d": 2, "batch_norm": 2, "relu": 2, "max_pool2d": 1, "add": 1,
            "adaptive_avg_pool2d": 1, "reshape": 1, "linear": 1},
    "mobile": {"conv2d": 3, "batch_norm": 3, "relu6": 1, "hardswish": 1, "add": 1},
    "encoder": {"linear": 6, "matmul": 2, "softmax": 1, "layer_norm": 2, "gelu": 1},
    "encoder_sdpa": {"linear": 6, "sdpa": 1, "layer_norm": 2, "gelu": 1},
    "causal": {"linear": 2, "slice": 3, "tril": 1, "full": 1, "where": 1, "softmax": 1},
    "causal_ones": {"linear": 2, "slice": 3, "tril": 1, "full": 1, "where": 1, "softmax": 1},
}

# ----- helpers -------------------------------------------------------------------------


def line_of(cls: type, text: str) -> int:
    """The line of this file where ``text`` appears in ``cls``'s source."""
    lines, start = inspect.getsourcelines(cls)
    return start + next(i for i, line in enumerate(lines) if text in line)


# ----- the zoo tests -------------------------------------------------------------------


@pytest.fixture(scope="module")
def captured() -> dict:
    torch.manual_seed(0)
    results = {}
    for name, (make, make_inputs) in ZOO.items():
        model = make().eval()
        if name == "cnn":  # non-trivial running stats, so batch_norm is not an identity
            for bn in (model.bn1, model.bn2):
                bn.running_mean.uniform_(-1, 1)
                bn.running_var.uniform_(0.5, 2)
        args = make_inputs()
        results[name] = (model, args, capture(model, args))
    return results


@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_graph_verifies_and_round_trips(captured, name: str) -> None:
    _, _, result = captured[name]
    ir.verify(result.graph)
    assert ir.parse(str(result.graph)) == result.graph
    assert result.method == "fx"


@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_numerics_match_eager(captured, name: str) -> None:
    model, args, result = captured[name]
    assert_matches_eager(model, result, args)


@pytest.mark.parametrize("name", list(EXPECTED_OPS))
def test_zoo_op_op_histogram(captured, name: str) -> None:
    counts = op_histogram(captured[name][2].graph)
    for op, n in EXPECTED_OPS[name].items():
        assert counts[op] == n, f"{name}: {op} x{counts[op]}, expected {n}\n{counts}"


def test_no_training_ops_or_dropout_survive(captured) -> None:
    _, _, result = captured["encoder"]
    assert not any("dropout" in n.op for n in result.graph.nodes)
    names = {n.meta.get("torch_name") for n in result.graph.nodes if n.op == "weight"}
    assert "q.weight" in names and "ln2.bias" in names


def test_source_points_at_the_user_line(captured) -> None:
    graph = captured["cnn"][2].graph
    conv2 = next(n for n in graph.nodes if n.op == "conv2d" and n.name == "conv2")
    line = line_of(CNN, "self.bn2(self.conv2(y))")
    assert conv2.source == f"{conv2.source.split(':')[0]}:{line} in forward"
    assert conv2.source.split(":")[0].endswith(THIS_FILE)
    assert all(n.source for n in graph.ops())


def test_causal_mask_is_built_from_ir_ops(captured) -> None:
    graph = captured["causal"][2].graph
    tril = next(n for n in graph.nodes if n.op == "tril")
    assert tril.inputs[0].op == "full" and tril.inputs[0].attrs["value"] == 1.0
    where = next(n for n in graph.nodes if n.op == "where")
    assert where.inputs[1].op == "constant" and where.inputs[1].attrs["value"] == -math.inf


def test_inputs_outputs_and_specs() -> None:
    model = TwoInputs().eval()
    ids = torch.randint(0, 50, (2, 5))
    result = capture(model, (ids,), {"scale": torch.tensor(0.5)})
    assert [n.name for n in result.graph.inputs] == ["ids", "scale"]
    assert pytree.tree_unflatten([1, 2], result.in_spec) == ((1,), {"scale": 2})
    assert len(result.graph.outputs) == 2
    assert_matches_eager(model, result, (ids,), {"scale": torch.tensor(0.5)})

    mask = torch.rand(2, 5) > 0.5
    masked = capture(model, {"ids": ids, "scale": torch.tensor(2.0), "mask": mask})
    assert [n.name for n in masked.graph.inputs] == ["ids", "scale", "mask"]
    assert op_histogram(masked.graph)["where"] == 1
    assert_matches_eager(model, masked, (), {"ids": ids, "scale": torch.tensor(2.0), "mask": mask})


def test_single_tensor_input_and_output_that_is_an_input() -> None:
    class PassThrough(nn.Module):
        def forward(self, x):
            return x, x.relu()

    result = capture(PassThrough().eval(), torch.randn(3))
    assert result.graph.outputs[0] is result.graph.inputs[0]


# ----- errors --------------------------------------------------------------------------


def test_training_mode_is_refused() -> None:
    with pytest.raises(CaptureError, match=r"training mode.*model\.eval\(\)"):
        capture(MLP(), (torch.randn(2, 16),))


def test_data_dependent_control_flow_names_both_failures() -> None:
    with pytest.raises(CaptureError) as info:
        capture(DataDependent().eval(), (torch.randn(4),))
    message = str(info.value)
    assert "torch.fx.symbolic_trace:" in message and "torch.export.export:" in message
    assert "torch.cond" in message


def test_unsupported_ops_are_all_listed_with_their_lines() -> None:
    with pytest.raises(UnsupportedOpError) as info:
        capture(Unsupported().eval(), (torch.randn(4, 4),))
    ops = info.value.ops
    assert [o.op for o in ops] == ["torch._C._fft.fft_fft", "torch._C._fft.fft_fft",
                                   "torch._C._linalg.linalg_inv"]
    lines = [line_of(Unsupported, text) for text in ("fft(x)", "fft(x * 2)", "inv(x)")]
    assert [int(o.source.split(":")[1].split()[0]) for o in ops] == lines
    assert all(o.source.split(":")[0].endswith(THIS_FILE) for o in ops)


def test_unsupported_module_falls_back_to_export() -> None:
    """fx keeps nn.MultiheadAttention whole (no IR op); export decomposes it."""

    class Attention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mha = nn.MultiheadAttention(16, 2, batch_first=True)

        def forward(self, x):
            return self.mha(x, x, x, need_weights=False)[0]

    model = Attention().eval()
    x = torch.randn(2, 5, 16)
    result = capture(model, (x,))
    assert result.method == "export"
    assert_matches_eager(model, result, (x,))


def test_in_place_op_read_afterwards_goes_through_export() -> None:
    class InPlace(nn.Module):
        def forward(self, x):
            y = x * 1
            z = y.add_(1)
            return y * z

    model = InPlace().eval()
    x = torch.randn(4)
    result = capture(model, (x,))
    assert result.method == "export"
    assert_matches_eager(model, result, (x,))


# ----- the interpreter -----------------------------------------------------------------


def test_interpreter_covers_every_ir_op() -> None:
    assert set(ir.OPS) - set(ir.LEAF_OPS) <= set(INTERPRETER_OPS)


def test_traced_sizes_reach_torch_factories_and_are_restored(captured) -> None:
    graph = captured["causal_ones"][2].graph
    ones = next(n for n in graph.nodes if n.op == "full")
    assert ones.source.endswith(f"{THIS_FILE}:{line_of(CausalBlock, 'torch.tril(')} in forward")
    assert torch.ones.__module__ != "compiler.capture.fx_frontend"
    assert torch.ones(2).shape == (2,)


def test_index_with_constant_tensors_is_a_view_and_computed_indices_a_gather() -> None:
    class Index(nn.Module):
        def forward(self, x, ids, positions):
            view = x[torch.arange(2)[:, None], torch.arange(1, 5, 2)]  # strided: no gather
            shuffled = x[:, torch.tensor([4, 0, 5])]  # constant but in no order: a gather
            return view, x[:, ids], shuffled, torch.gather(x, 1, positions)

    model = Index().eval()
    args = (torch.randn(2, 6), torch.tensor([3, -1]), torch.tensor([[5, 0], [2, 2]]))
    result = capture(model, args)
    assert op_histogram(result.graph)["index"] == 2
    assert op_histogram(result.graph)["gather"] == 1
    assert_matches_eager(model, result, args)

    class ViewOnly(nn.Module):
        def forward(self, x):
            return x[torch.arange(2)[:, None], torch.arange(1, 5, 2)]

    model, x = ViewOnly().eval(), torch.randn(2, 6)
    result = capture(model, (x,))
    assert set(op_histogram(result.graph)) <= {"slice", "reshape", "permute"}
    assert_matches_eager(model, result, (x,))


def test_boolean_mask_indexing_is_refused_by_name() -> None:
    class Mask(nn.Module):
        def forward(self, x):
            return x[x > 0]

    with pytest.raises(UnsupportedOpError, match="data-dependent shape|nonzero|index"):
        capture(Mask().eval(), (torch.randn(2, 6),))


def test_non_tensor_output_is_refused() -> None:
    class ReturnsSize(nn.Module):
        def forward(self, x):
            return x + 1, x.shape[0]

    with pytest.raises(UnsupportedOpError, match="non-tensor output 3"):
        capture(ReturnsSize().eval(), (torch.randn(3),))
