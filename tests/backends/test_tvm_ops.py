"""Every op of ir/ops.py lowered alone, built for the CPU and compared with torch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from backend_helpers import C, In, W, check_op

from backends.tvm.op_table import OP_TABLE
from ir.registry import OPS

X = In((2, 3, 5, 7))
POS = In((2, 3, 5, 7), low=0.1, high=3.0)
ROW = In((7,))

# op -> list of (operands, attrs, torch reference); attrs are the IR's
CASES: dict[str, list] = {
    "relu": [([X], {}, F.relu)],
    "relu6": [([In((4, 9), low=-8, high=8)], {}, F.relu6)],
    "silu": [([X], {}, F.silu)],
    "sigmoid": [([X], {}, torch.sigmoid)],
    "tanh": [([X], {}, torch.tanh)],
    "hardswish": [([In((4, 9), low=-5, high=5)], {}, F.hardswish)],
    "hardsigmoid": [([In((4, 9), low=-5, high=5)], {}, F.hardsigmoid)],
    "exp": [([X], {}, torch.exp)],
    "log": [([POS], {}, torch.log)],
    "sqrt": [([POS], {}, torch.sqrt)],
    "rsqrt": [([POS], {}, torch.rsqrt)],
    "erf": [([X], {}, torch.erf)],
    "sin": [([X], {}, torch.sin)],
    "cos": [([X], {}, torch.cos)],
    "reciprocal": [([POS], {}, torch.reciprocal)],
    "neg": [([X], {}, torch.neg), ([In((5,), "int64", -9, 9)], {}, torch.neg)],
    "abs": [([X], {}, torch.abs), ([In((5,), "int32", -9, 9)], {}, torch.abs)],
    "gelu": [([X], {}, F.gelu),
             ([X], {"approximate": "tanh"}, lambda x: F.gelu(x, approximate="tanh"))],
    "leaky_relu": [([X], {"negative_slope": 0.2}, lambda x: F.leaky_relu(x, 0.2))],
    "clamp": [([X], {"min": -0.5, "max": 0.7}, lambda x: x.clamp(-0.5, 0.7)),
              ([X], {"min": 0.1}, lambda x: x.clamp(min=0.1))],
    "logical_not": [([In((3, 4), "bool")], {}, torch.logical_not)],
    "cast": [([X], {"dtype": "int32"}, lambda x: x.to(torch.int32)),
             ([In((3, 4), "bool")], {"dtype": "float32"}, lambda x: x.float())],
    "add": [([X, ROW], {}, torch.add), ([X, C(2.5)], {}, torch.add),
            ([In((3, 1), "int64", -5, 5), In((4,), "int64", -5, 5)], {}, torch.add)],
    "sub": [([X, In((3, 1, 1))], {}, torch.sub)],
    "mul": [([X, W((3, 1, 1))], {}, torch.mul)],
    "div": [([X, In((5, 7), low=0.5, high=2)], {}, torch.div)],
    "pow": [([POS, C(2.0)], {}, torch.pow), ([POS, In((5, 1), low=-1, high=2)], {}, torch.pow)],
    "maximum": [([X, ROW], {}, torch.maximum)],
    "minimum": [([X, ROW], {}, torch.minimum)],
    "eq": [([In((4, 5), "int64", 0, 3), In((5,), "int64", 0, 3)], {}, torch.eq)],
    "ne": [([In((4, 5), "int64", 0, 3), C(1, "int64")], {}, torch.ne)],
    "lt": [([X, ROW], {}, torch.lt)],
    "le": [([X, C(0.0)], {}, torch.le)],
    "gt": [([X, ROW], {}, torch.gt)],
    "ge": [([X, ROW], {}, torch.ge)],
    "logical_and": [([In((3, 4), "bool"), In((4,), "bool")], {}, torch.logical_and)],
    "logical_or": [([In((3, 4), "bool"), In((4,), "bool")], {}, torch.logical_or)],
    "where": [([In((5, 7), "bool"), X, C(-1.0)], {}, lambda c, a, b: torch.where(c, a, b))],
    "batch_norm": [
        ([X, W((3,)), W((3,), 0.5, 2.0), W((3,)), W((3,))], {"eps": 1e-3},
         lambda x, m, v, w, b: F.batch_norm(x, m, v, w, b, eps=1e-3)),
        ([X, W((3,)), W((3,), 0.5, 2.0)], {}, lambda x, m, v: F.batch_norm(x, m, v)),
    ],
    "sum": [([X], {"dims": (1, 3)}, lambda x: x.sum((1, 3))),
            ([X], {"dims": (-1,), "keepdim": True}, lambda x: x.sum(-1, keepdim=True)),
            ([X], {}, lambda x: x.sum()),
            ([In((3, 4), "int32", 0, 9)], {"dims": (0,)}, lambda x: x.sum(0))],
    "mean": [([X], {"dims": (2, 3), "keepdim": True}, lambda x: x.mean((2, 3), keepdim=True))],
    "amax": [([X], {"dims": (1,)}, lambda x: x.amax(1))],
    "amin": [([X], {"dims": (0, 2)}, lambda x: x.amin((0, 2)))],
    "softmax": [([X], {"dim": -1}, lambda x: x.softmax(-1)),
                ([X], {"dim": 1}, lambda x: x.softmax(1))],
    "log_softmax": [([X], {"dim": -1}, lambda x: x.log_softmax(-1))],
    "layer_norm": [
        ([In((2, 5, 16)), W((16,)), W((16,))], {"normalized_ndim": 1},
         lambda x, w, b: F.layer_norm(x, (16,), w, b)),
        ([In((2, 5, 16))], {"normalized_ndim": 2, "eps": 1e-3},
         lambda x: F.layer_norm(x, (5, 16), eps=1e-3)),
    ],
    "max_pool2d": [
        ([In((1, 2, 9, 9))], {"kernel": (3, 3), "stride": (2, 2), "padding": (1, 1)},
         lambda x: F.max_pool2d(x, 3, 2, 1)),
        ([In((1, 2, 10, 10))], {"kernel": (3, 3), "stride": (2, 2), "padding": (0, 0),
                                "ceil_mode": True, "dilation": (1, 1)},
         lambda x: F.max_pool2d(x, 3, 2, 0, ceil_mode=True)),
        ([In((1, 2, 10, 10))], {"kernel": (2, 2), "stride": (1, 1), "padding": (1, 1),
                                "dilation": (2, 2)},
         lambda x: F.max_pool2d(x, 2, 1, 1, dilation=2)),
    ],
    "avg_pool2d": [
        ([In((1, 2, 9, 9))], {"kernel": (3, 3), "stride": (2, 2), "padding": (1, 1)},
         lambda x: F.avg_pool2d(x, 3, 2, 1)),
        ([In((1, 2, 9, 9))], {"kernel": (3, 3), "stride": (2, 2), "padding": (1, 1),
                              "count_include_pad": False, "ceil_mode": True},
         lambda x: F.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False)),
        ([In((1, 2, 10, 10))], {"kernel": (3, 3), "stride": (2, 2), "padding": (1, 1),
                                "ceil_mode": True},
         lambda x: F.avg_pool2d(x, 3, 2, 1, ceil_mode=True)),
    ],
    "adaptive_avg_pool2d": [
        ([In((1, 3, 7, 9))], {"output_size": (1, 1)}, lambda x: F.adaptive_avg_pool2d(x, 1)),
        ([In((1, 3, 7, 9))], {"output_size": (3, 4)},
         lambda x: F.adaptive_avg_pool2d(x, (3, 4))),
    ],
    "conv2d": [
        ([In((1, 3, 9, 9)), W((4, 3, 3, 3)), W((4,))], {"padding": (1, 1)},
         lambda x, w, b: F.conv2d(x, w, b, padding=1)),
        ([In((2, 4, 9, 8)), W((6, 2, 3, 1))], {"stride": (2, 1), "groups": 2, "padding": (1, 0)},
         lambda x, w: F.conv2d(x, w, stride=(2, 1), groups=2, padding=(1, 0))),
        ([In((1, 4, 9, 9)), W((4, 1, 3, 3))], {"groups": 4, "dilation": (2, 2)},
         lambda x, w: F.conv2d(x, w, groups=4, dilation=2)),
    ],
    "linear": [([In((3, 5, 8)), W((6, 8)), W((6,))], {}, F.linear),
               ([In((4, 8)), In((6, 8))], {}, F.linear)],
    "matmul": [([In((2, 3, 5, 8)), In((3, 8, 4))], {}, torch.matmul),
               ([In((5, 8)), W((8, 3))], {}, torch.matmul)],
    "sdpa": [
        ([In((2, 3, 5, 8)), In((2, 3, 6, 8)), In((2, 3, 6, 4))], {},
         F.scaled_dot_product_attention),
        ([In((1, 2, 5, 8)), In((1, 2, 5, 8)), In((1, 2, 5, 8))], {"is_causal": True},
         lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True)),
        ([In((1, 2, 5, 8)), In((1, 2, 6, 8)), In((1, 2, 6, 8)), In((5, 6), "bool")],
         {"scale": 0.5},
         lambda q, k, v, m: F.scaled_dot_product_attention(
             q, k, v, attn_mask=m, scale=0.5)),
        ([In((1, 2, 5, 8)), In((1, 2, 6, 8)), In((1, 2, 6, 8)), In((1, 1, 5, 6))], {},
         lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m)),
    ],
    "embedding": [([W((10, 4)), In((2, 3), "int64", 0, 10)], {},
                   lambda t, i: F.embedding(i, t))],
    "gather": [([In((3, 7)), In((3, 4), "int64", 0, 7)], {"dim": 1},
                lambda x, i: torch.gather(x, 1, i)),
               ([In((5, 2, 3)), In((2, 2, 3), "int64", -5, 5)], {"dim": 0},
                lambda x, i: torch.gather(x, 0, i % 5))],
    "index": [([X, In((4,), "int64", -3, 3)], {"first": 1}, lambda x, i: x[:, i]),
              ([X, In((3, 1), "int64", 0, 2), In((4,), "int64", -3, 3)], {"first": 0},
               lambda x, i, j: x[i, j])],
    "reshape": [([X], {"shape": (6, -1)}, lambda x: x.reshape(6, -1))],
    "permute": [([X], {"dims": (0, 2, 3, 1)}, lambda x: x.permute(0, 2, 3, 1))],
    "expand": [([In((3, 1))], {"shape": (2, 3, 4)}, lambda x: x.expand(2, 3, 4))],
    "slice": [([X], {"dim": 3, "start": 1, "end": -1, "step": 2}, lambda x: x[..., 1:-1:2]),
              ([X], {"dim": 1, "start": 1, "end": 100}, lambda x: x[:, 1:])],
    "concat": [([X, In((2, 2, 5, 7))], {"dim": 1}, lambda a, b: torch.cat([a, b], 1))],
    "pad": [([X], {"pads": (1, 2, 0, 1), "value": -1.0},
             lambda x: F.pad(x, (1, 2, 0, 1), value=-1.0))],
    "tril": [([In((2, 5, 6))], {"diagonal": 1}, lambda x: x.tril(1))],
    "triu": [([In((2, 5, 6))], {}, lambda x: x.triu())],
    "cumsum": [([X], {"dim": 2}, lambda x: x.cumsum(2)),
               ([In((3, 6), "bool")], {"dim": 1}, lambda x: x.cumsum(1))],
}

# ops with no operands: (attrs, torch reference)
SOURCES = {
    "arange": [({"start": 0, "end": 10, "dtype": "int64"}, lambda: torch.arange(10)),
               ({"start": 1.0, "end": 3.0, "step": 0.25, "dtype": "float32"},
                lambda: torch.arange(1.0, 3.0, 0.25))],
    "full": [({"shape": (2, 3), "value": 1.5, "dtype": "float32"},
              lambda: torch.full((2, 3), 1.5))],
}

PARAMS = [pytest.param(op, *case, id=f"{op}-{i}")
          for op, cases in CASES.items() for i, case in enumerate(cases)]
PARAMS += [pytest.param(op, [], attrs, ref, id=f"{op}-{i}")
           for op, cases in SOURCES.items() for i, (attrs, ref) in enumerate(cases)]


@pytest.mark.parametrize("op, operands, attrs, reference", PARAMS)
def test_op_matches_torch(op, operands, attrs, reference):
    check_op(op, operands, attrs, reference)


def test_every_registered_op_has_a_lowering_and_a_test():
    ops = set(OPS) - {"input", "weight", "constant"}
    assert ops <= set(OP_TABLE), f"no lowering: {sorted(ops - set(OP_TABLE))}"
    assert ops <= set(CASES) | set(SOURCES), f"untested: {sorted(ops - set(CASES) - set(SOURCES))}"


class _NonFinite(In):
    """Random data with a NaN, an inf and a -inf planted."""

    def sample(self) -> torch.Tensor:
        x = super().sample()
        x[0, 0], x[1, 1], x[2, 2] = float("nan"), float("inf"), float("-inf")
        return x


NON_FINITE = [
    ("relu", {}, F.relu), ("relu6", {}, F.relu6),  # (torch's gelu(inf) is NaN: not a spec)
    ("clamp", {"min": -1.0, "max": 1.0}, lambda x: x.clamp(-1, 1)),
    ("sigmoid", {}, torch.sigmoid), ("exp", {}, torch.exp), ("erf", {}, torch.erf),
    ("softmax", {"dim": -1}, lambda x: x.softmax(-1)),
]


@pytest.mark.parametrize("op, attrs, reference", NON_FINITE, ids=[c[0] for c in NON_FINITE])
def test_nan_and_inf_propagate_like_torch(op, attrs, reference):
    check_op(op, [_NonFinite((4, 5))], attrs, reference)


@pytest.mark.parametrize("op, reference", [("maximum", torch.maximum),
                                           ("minimum", torch.minimum)])
def test_maximum_minimum_propagate_nan(op, reference):
    check_op(op, [_NonFinite((4, 5)), In((4, 5))], {}, reference)
    check_op(op, [In((4, 5)), _NonFinite((4, 5))], {}, reference)


def test_vectorized_tanh_and_tanh_gelu_over_the_whole_float_range():
    # fastmath.tanh: a polynomial below |x| = 0.625, 1 - 2 / (e^2x + 1) above; the
    # branch points, tiny, huge and special values all as torch computes them.
    from backends.tvm.build import build
    from ir import Graph
    from ir.types import TensorType

    values = torch.cat([torch.linspace(-50, 50, 2001), torch.tensor(
        [0.0, -0.0, 1e-30, -1e-7, 0.625, -0.625, 0.6249, 88.0, -88.0, 1e30,
         float("inf"), float("-inf"), float("nan")])])
    for op, attrs, reference in (("tanh", {}, torch.tanh),
                                 ("gelu", {"approximate": "tanh"},
                                  lambda t: F.gelu(t, approximate="tanh"))):
        g = Graph()
        x = g.add_input("x", TensorType(tuple(values.shape), "float32"))
        g.outputs = [g.call(op, [x], attrs)]
        got = build(g, "cpu")(values)[0]
        torch.testing.assert_close(got, reference(values), rtol=1e-5, atol=1e-6,
                                   equal_nan=True)


@pytest.mark.parametrize("exponent", [2.0, 3.0, 4.0, 2.5])
def test_pow_by_a_constant(exponent):
    m = check_op("pow", [In((4, 33)), C(exponent)], {}, lambda t, e: torch.pow(t, e))
    assert m.kernels
