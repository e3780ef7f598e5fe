"""Random torch models for differential testing: a spec, the model it builds, and a seeded
generator of specs.

A *spec* is a plain JSON-able list of dicts, one per node, in topological order::

    [{"op": "input", "shape": [2, 8], "dtype": "float32", "seed": 1},
     {"op": "linear", "args": [0], "out": 16, "bias": true, "seed": 7},
     {"op": "unary", "fn": "gelu", "args": [1]}]

``args`` are indices of earlier nodes. Every attribute that depends on an input's shape
(a linear's in-features, a conv's in-channels, a reshape's target) is derived when the
model is built, so the shrinker can delete nodes, rewire users and shrink sizes freely; a
spec that no longer makes sense fails to build (``InvalidSpec``) and is skipped. Each node
that owns parameters or inputs has a ``seed`` so its numbers survive shrinking. Outputs are
the nodes nobody reads, plus those marked ``"output": true``.

``build_model(spec) -> (nn.Module, example_inputs)``; ``generate(seed) -> spec``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

Spec = list[dict[str, Any]]


class InvalidSpec(Exception):
    """The spec does not describe a valid model (shapes do not fit, values blow up)."""


# ----- node state: parameters and shape-derived constants -------------------------------


class BuildState:
    """What a handler sees while the model is built on real tensors: it creates modules,
    parameters and constants (computed from the real input shapes) and records them."""

    def __init__(self, program: Program, index: int, node: dict):
        self.program, self.index, self.node = program, index, node
        self.double = program.double
        self.gen = torch.Generator().manual_seed(int(node.get("seed", index)))

    def module(self, factory: Callable[[], nn.Module], owner: int | None = None) -> nn.Module:
        key = f"n{self.index if owner is None else owner}"
        if key not in self.program.modules:
            module = factory()
            self.program.modules[key] = module.double() if self.double else module
        return self.program.modules[key]

    def param(self, name: str, factory: Callable[[], torch.Tensor]) -> torch.Tensor:
        key = f"n{self.index}_{name}"
        if key not in self.program.params:
            data = factory().double() if self.double else factory()
            self.program.params[key] = nn.Parameter(data, requires_grad=False)
        return self.program.params[key]

    def const(self, name: str, compute: Callable[[], Any]) -> Any:
        key = (self.index, name)
        if key not in self.program.consts:
            self.program.consts[key] = compute()
        return self.program.consts[key]

    def randn(self, *shape: int, scale: float = 1.0) -> torch.Tensor:
        return torch.randn(shape, generator=self.gen) * scale


class RunState:
    """The same interface inside ``forward`` (also under torch.fx tracing): everything was
    made at build time, so it only looks things up and never touches a shape."""

    def __init__(self, model: SpecModule, index: int):
        self.model, self.index = model, index
        self.double = model.float64

    def module(self, factory: Callable, owner: int | None = None) -> nn.Module:
        return self.model.mods[f"n{self.index if owner is None else owner}"]

    def param(self, name: str, factory: Callable) -> torch.Tensor:
        return self.model.params[f"n{self.index}_{name}"]

    def const(self, name: str, compute: Callable) -> Any:
        return self.model.consts[(self.index, name)]


# ----- handlers: one per spec op ----------------------------------------------------------

Handler = Callable[[Any, dict, list], Any]
HANDLERS: dict[str, Handler] = {}


def handler(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        HANDLERS[name] = fn
        return fn

    return register


def _shape(st: Any, x: Any, name: str = "shape") -> tuple[int, ...]:
    return st.const(name, lambda: tuple(x.shape))


# Unary functions on any float; the ones with a restricted domain are made total here so
# the model never produces NaN (the guard compares NaN positions exactly).
UNARY: dict[str, Callable] = {
    "relu": F.relu, "relu6": F.relu6, "silu": F.silu, "sigmoid": torch.sigmoid,
    "tanh": torch.tanh, "hardswish": F.hardswish, "hardsigmoid": F.hardsigmoid,
    "gelu": F.gelu, "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "leaky_relu": lambda x: F.leaky_relu(x, 0.2), "neg": torch.neg, "abs": torch.abs,
    "erf": torch.erf, "sin": torch.sin, "cos": torch.cos,
    "exp": lambda x: torch.exp(torch.clamp(x, -8.0, 8.0)),
    "log": lambda x: torch.log(x.abs() + 1.0),
    "sqrt": lambda x: torch.sqrt(x.abs()),
    "rsqrt": lambda x: torch.rsqrt(x.abs() + 0.5),
    "reciprocal": lambda x: torch.reciprocal(x.abs() + 0.5),
    "clamp": lambda x: torch.clamp(x, -0.5, 0.7), "clamp_min": lambda x: x.clamp(min=0.1),
    "square": lambda x: x * x, "pow2": lambda x: torch.pow(x, 2),
    "pow_half": lambda x: torch.pow(x.abs() + 0.1, 0.5),
    "softplus_like": lambda x: torch.log(torch.exp(torch.clamp(x, -8.0, 8.0)) + 1.0),
    "dropout": lambda x: F.dropout(x, 0.3, training=False),
    "contiguous": lambda x: x.contiguous(),
}


@handler("unary")
def _unary(st: Any, node: dict, xs: list) -> Any:
    return UNARY[node["fn"]](xs[0])


BINARY: dict[str, Callable] = {
    "add": torch.add, "sub": torch.sub, "mul": torch.mul,
    "div": lambda a, b: a / b, "maximum": torch.maximum, "minimum": torch.minimum,
    "pow": lambda a, b: torch.pow(a, b),
}


@handler("binary")
def _binary(st: Any, node: dict, xs: list) -> Any:
    """fn(a, b) with b another value, a scalar (``scalar``) or a parameter of a shape that
    broadcasts (``param``: the shape); ``rev`` swaps the operands. A divisor is kept away
    from zero and a base of ``pow`` positive, so no NaN or Inf can appear."""
    fn, a = node["fn"], xs[0]
    if len(xs) > 1:
        b = xs[1]
    elif "param" in node:
        b = st.param("b", lambda: st.randn(*node["param"], scale=0.5))
    else:
        b = node["scalar"]
    scalar = isinstance(b, (int, float))
    if scalar and fn in ("maximum", "minimum"):
        return torch.clamp(a, min=b) if fn == "maximum" else torch.clamp(a, max=b)
    if fn == "pow":
        return torch.pow(a.abs() + 0.1, b)
    if node.get("rev"):
        a, b = b, a
    if fn == "div" and not isinstance(b, (int, float)):
        b = b.abs() + 0.5
    return BINARY[fn](a, b)


COMPARE = {"lt": torch.lt, "le": torch.le, "gt": torch.gt, "ge": torch.ge, "eq": torch.eq,
           "ne": torch.ne}


@handler("compare")
def _compare(st: Any, node: dict, xs: list) -> Any:
    b = xs[1] if len(xs) > 1 else node["scalar"]
    return COMPARE[node["fn"]](xs[0], b)


@handler("logical")
def _logical(st: Any, node: dict, xs: list) -> Any:
    if node["fn"] == "not":
        return ~xs[0]
    return xs[0] & xs[1] if node["fn"] == "and" else xs[0] | xs[1]


@handler("where")
def _where(st: Any, node: dict, xs: list) -> Any:
    """where(cond, a, b); with two args, b is ``scalar``."""
    other = xs[2] if len(xs) > 2 else node["scalar"]
    return torch.where(xs[0], xs[1], other)


@handler("masked_fill")
def _masked_fill(st: Any, node: dict, xs: list) -> Any:
    return xs[0].masked_fill(xs[1], node["value"])


@handler("cast")
def _cast(st: Any, node: dict, xs: list) -> Any:
    dtype = "float64" if st.double and node["dtype"] == "float32" else node["dtype"]
    return xs[0].to(getattr(torch, dtype))


@handler("reduce")
def _reduce(st: Any, node: dict, xs: list) -> Any:
    fn, dims, keep = node["fn"], node.get("dims"), node.get("keepdim", False)
    x = xs[0]
    if dims is None:
        return getattr(torch, fn)(x)
    if fn in ("amax", "amin", "sum", "mean"):
        return getattr(torch, fn)(x, dim=tuple(dims), keepdim=keep)
    raise InvalidSpec(fn)


@handler("softmax")
def _softmax(st: Any, node: dict, xs: list) -> Any:
    fn = F.softmax if node["fn"] == "softmax" else F.log_softmax
    return fn(xs[0], dim=node["dim"])


@handler("linear")
def _linear(st: Any, node: dict, xs: list) -> Any:
    """nn.Linear(in, out); ``share``: call the linear of that earlier node (the same
    parameters twice); ``functional``: F.linear on the module's parameters."""
    x = xs[0]
    in_features = st.const("in", lambda: x.shape[-1])

    def make() -> nn.Module:
        layer = nn.Linear(in_features, node["out"], bias=node.get("bias", True))
        with torch.no_grad():
            layer.weight.copy_(st.randn(node["out"], in_features, scale=in_features ** -0.5))
            if layer.bias is not None:
                layer.bias.copy_(st.randn(node["out"], scale=0.3))
        return layer

    layer = st.module(make, node.get("share"))
    if node.get("functional"):
        return F.linear(x, layer.weight, layer.bias)
    return layer(x)


@handler("tied_linear")
def _tied_linear(st: Any, node: dict, xs: list) -> Any:
    """F.linear(x, embedding.weight): a language model's head tied to its embedding."""
    table = st.module(lambda: _raise("tied_linear needs an embedding"), node["share"])
    if not isinstance(table, nn.Embedding):
        raise InvalidSpec("tied_linear shares a non-embedding")
    return F.linear(xs[0], table.weight)


def _raise(why: str) -> Any:
    raise InvalidSpec(why)


@handler("conv2d")
def _conv2d(st: Any, node: dict, xs: list) -> Any:
    """nn.Conv2d; ``groups`` "dw" means depthwise (groups = in = out)."""
    x = xs[0]
    cin = st.const("in", lambda: x.shape[1])
    groups = cin if node.get("groups") == "dw" else node.get("groups", 1)
    out = cin if node.get("groups") == "dw" else node["out"]
    k = node.get("k", 3)

    def make() -> nn.Module:
        conv = nn.Conv2d(cin, out, k, node.get("stride", 1), node.get("pad", 0),
                         node.get("dil", 1), groups, bias=node.get("bias", True))
        fan_in = cin // groups * k * k
        with torch.no_grad():
            conv.weight.copy_(st.randn(*conv.weight.shape, scale=fan_in ** -0.5))
            if conv.bias is not None:
                conv.bias.copy_(st.randn(out, scale=0.3))
        return conv

    conv = st.module(make, node.get("share"))
    if node.get("functional"):
        return F.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation,
                        conv.groups)
    return conv(x)


@handler("batch_norm")
def _batch_norm(st: Any, node: dict, xs: list) -> Any:
    """BatchNorm1d/2d in eval mode with random running statistics."""
    x = xs[0]
    channels = st.const("c", lambda: x.shape[1])
    rank = st.const("rank", lambda: x.dim())

    def make() -> nn.Module:
        cls = nn.BatchNorm2d if rank == 4 else nn.BatchNorm1d
        bn = cls(channels, eps=node.get("eps", 1e-5), affine=node.get("affine", True))
        with torch.no_grad():
            bn.running_mean.copy_(st.randn(channels, scale=0.5))
            bn.running_var.copy_(torch.rand(channels, generator=st.gen) * 1.5 + 0.2)
            if bn.affine:
                bn.weight.copy_(1.0 + st.randn(channels, scale=0.3))
                bn.bias.copy_(st.randn(channels, scale=0.3))
        return bn.eval()

    bn = st.module(make)
    if node.get("functional"):
        return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False,
                            0.1, bn.eps)
    return bn(x)


@handler("layer_norm")
def _layer_norm(st: Any, node: dict, xs: list) -> Any:
    x = xs[0]
    shape = st.const("normalized", lambda: tuple(x.shape[x.dim() - node.get("ndim", 1):]))

    def make() -> nn.Module:
        ln = nn.LayerNorm(shape, elementwise_affine=node.get("affine", True))
        if node.get("affine", True):
            with torch.no_grad():
                ln.weight.copy_(1.0 + st.randn(*shape, scale=0.3))
                ln.bias.copy_(st.randn(*shape, scale=0.3))
        return ln

    ln = st.module(make)
    if node.get("functional"):
        return F.layer_norm(x, shape, ln.weight, ln.bias, ln.eps)
    return ln(x)


@handler("embedding")
def _embedding(st: Any, node: dict, xs: list) -> Any:
    idx = xs[0]
    if isinstance(idx, torch.Tensor) and (idx.is_floating_point() or idx.dtype == torch.bool
                                          or int(idx.max()) >= node["num"]
                                          or int(idx.min()) < 0):
        raise InvalidSpec("embedding indices out of range")

    def make() -> nn.Module:
        emb = nn.Embedding(node["num"], node["dim"])
        with torch.no_grad():
            emb.weight.copy_(st.randn(node["num"], node["dim"]))
        return emb

    return st.module(make)(idx)


@handler("pool")
def _pool(st: Any, node: dict, xs: list) -> Any:
    k, s, p = node["k"], node.get("stride") or node["k"], node.get("pad", 0)
    if node["fn"] == "max":
        return F.max_pool2d(xs[0], k, s, p, ceil_mode=node.get("ceil", False))
    return F.avg_pool2d(xs[0], k, s, p, ceil_mode=node.get("ceil", False),
                        count_include_pad=node.get("count_pad", True))


@handler("adaptive_pool")
def _adaptive_pool(st: Any, node: dict, xs: list) -> Any:
    return F.adaptive_avg_pool2d(xs[0], node["size"])


@handler("matmul")
def _matmul(st: Any, node: dict, xs: list) -> Any:
    """a @ b; with one arg, b is ``a`` transposed (``self_t``) or a parameter [K, ``n``]."""
    a = xs[0]
    if len(xs) > 1:
        b = xs[1]
    elif node.get("self_t"):
        b = a.transpose(-1, -2)
    else:
        k = st.const("k", lambda: a.shape[-1])
        b = st.param("b", lambda: st.randn(k, node["n"], scale=k ** -0.5))
    return torch.matmul(a, b) if node.get("fn") == "matmul" else a @ b


@handler("sdpa")
def _sdpa(st: Any, node: dict, xs: list) -> Any:
    mask = xs[3] if len(xs) > 3 else None
    return F.scaled_dot_product_attention(xs[0], xs[1], xs[2], attn_mask=mask,
                                          is_causal=node.get("causal", False))


@handler("attention")
def _attention(st: Any, node: dict, xs: list) -> Any:
    """softmax(q k^T / sqrt(d) [masked]) v, written out; q, k, v: [..., T, d]."""
    q, k, v = xs[:3]
    d = st.const("d", lambda: q.shape[-1])
    scores = q @ k.transpose(-2, -1) / math.sqrt(d)
    if node.get("causal"):
        t = st.const("t", lambda: (q.shape[-2], k.shape[-2]))
        mask = torch.tril(torch.ones(t[0], t[1], dtype=torch.bool))
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(dim=-1) @ v


@handler("reshape")
def _reshape(st: Any, node: dict, xs: list) -> Any:
    """kind: flatten (from ``dim``), unflatten (``dim`` into (``factor``, -1)), unsqueeze,
    squeeze (a size-1 ``dim``), view (to [``lead``, -1])."""
    x, kind, dim = xs[0], node["kind"], node.get("dim", 0)
    if kind == "flatten":
        return torch.flatten(x, dim) if node.get("fn") != "method" else x.flatten(dim)
    if kind == "unsqueeze":
        return x.unsqueeze(dim)
    if kind == "squeeze":
        if isinstance(x, torch.Tensor) and x.shape[dim] != 1:
            raise InvalidSpec("squeeze of a dim that is not 1")
        return x.squeeze(dim)
    shape = _shape(st, x)
    if kind == "unflatten":
        d = dim % len(shape)
        if shape[d] % node["factor"]:
            raise InvalidSpec("unflatten factor does not divide")
        new = (*shape[:d], node["factor"], shape[d] // node["factor"], *shape[d + 1:])
        return x.view(*new) if node.get("fn") == "view" else x.reshape(new)
    if kind == "view":
        return x.reshape(node["lead"], -1)
    raise InvalidSpec(kind)


@handler("permute")
def _permute(st: Any, node: dict, xs: list) -> Any:
    return xs[0].permute(*node["dims"])


@handler("transpose")
def _transpose(st: Any, node: dict, xs: list) -> Any:
    return xs[0].transpose(node["a"], node["b"])


@handler("expand")
def _expand(st: Any, node: dict, xs: list) -> Any:
    """Expand every size-1 dim to ``size``."""
    shape = _shape(st, xs[0])
    if 1 not in shape:
        raise InvalidSpec("expand needs a size-1 dim")
    return xs[0].expand(*[node["size"] if d == 1 else d for d in shape])


@handler("slice")
def _slice(st: Any, node: dict, xs: list) -> Any:
    rank = st.const("rank", lambda: xs[0].dim())
    dim = node["dim"] % rank
    index = [slice(None)] * dim + [slice(node.get("start"), node.get("end"), node.get("step"))]
    out = xs[0][tuple(index)]
    if isinstance(out, torch.Tensor) and out.numel() == 0:
        raise InvalidSpec("empty slice")
    return out


@handler("select")
def _select(st: Any, node: dict, xs: list) -> Any:
    rank = st.const("rank", lambda: xs[0].dim())
    dim = node["dim"] % rank
    return xs[0][(slice(None),) * dim + (node["index"],)]


@handler("concat")
def _concat(st: Any, node: dict, xs: list) -> Any:
    if node.get("fn") == "stack":
        return torch.stack(xs, dim=node["dim"])
    return torch.cat(xs, dim=node["dim"])


@handler("split")
def _split(st: Any, node: dict, xs: list) -> Any:
    """One piece (``take``) of split/chunk/unbind along ``dim``."""
    x, fn, dim = xs[0], node["fn"], node["dim"]
    if fn == "split":
        pieces = torch.split(x, node["size"], dim)
    elif fn == "chunk":
        pieces = x.chunk(node["chunks"], dim)
    else:
        pieces = x.unbind(dim)
    count = st.const("count", lambda: len(pieces))
    return pieces[node["take"] % count]


@handler("gather")
def _gather(st: Any, node: dict, xs: list) -> Any:
    """torch.gather(x, dim, ids): ids an int64 input whose values index ``dim``."""
    return torch.gather(xs[0], node["dim"], xs[1])


@handler("index")
def _index(st: Any, node: dict, xs: list) -> Any:
    """x[:, .., ids1, ids2, ..]: advanced indexing of adjacent axes from ``first`` by int
    tensors (negative ids count from the end)."""
    x, *ids = xs
    return x[(slice(None),) * node["first"] + tuple(ids)]


@handler("pad")
def _pad(st: Any, node: dict, xs: list) -> Any:
    return F.pad(xs[0], tuple(node["pads"]), value=node.get("value", 0.0))


@handler("tri")
def _tri(st: Any, node: dict, xs: list) -> Any:
    return (torch.tril if node["fn"] == "tril" else torch.triu)(xs[0], node.get("diagonal", 0))


@handler("cumsum")
def _cumsum(st: Any, node: dict, xs: list) -> Any:
    return torch.cumsum(xs[0], node["dim"])


@handler("arange_add")
def _arange_add(st: Any, node: dict, xs: list) -> Any:
    """x + arange(n) * ``scale`` along the last dim (a position ramp)."""
    n = st.const("n", lambda: xs[0].shape[-1])
    return xs[0] + torch.arange(n, dtype=torch.float32) * node.get("scale", 0.1)


@handler("full_mul")
def _full_mul(st: Any, node: dict, xs: list) -> Any:
    """x * full(x.shape, value) (``ones``/``zeros``/``full`` through the capture)."""
    shape = _shape(st, xs[0])
    value = node.get("value", 1.0)
    filler = torch.ones(shape) if value == 1.0 else torch.full(shape, value)
    return xs[0] * filler


@handler("fill")
def _fill(st: Any, node: dict, xs: list) -> Any:
    """A tensor of x's shape that does not read x: full / full_like / ones_like * value."""
    kind, value = node["kind"], node.get("value", 1.0)
    if kind == "new":
        return torch.full(_shape(st, xs[0]), value)
    if kind == "like":
        return torch.full_like(xs[0], value)
    return torch.ones_like(xs[0]) * value


# ----- building --------------------------------------------------------------------------


def make_input(node: dict, double: bool = False) -> torch.Tensor:
    gen = torch.Generator().manual_seed(int(node.get("seed", 0)))
    shape, dtype = tuple(node["shape"]), node.get("dtype", "float32")
    if dtype == "bool":
        return torch.rand(shape, generator=gen) > 0.5
    if dtype in ("int64", "int32"):
        return torch.randint(node.get("low", 0), node.get("high", 10), shape, generator=gen,
                             dtype=getattr(torch, dtype))
    value = torch.randn(shape, generator=gen, dtype=getattr(torch, dtype))
    return value.double() if double else value


ROUNDING = 2.0 ** -23  # twice float32's unit roundoff


def perturb(value: torch.Tensor, index: int) -> torch.Tensor:
    """``value`` with a relative error of float32 rounding's size: the float64 twin does
    this after every node, so a graph that amplifies rounding (a layer norm of a nearly
    constant row) shows it there, whatever rounding eager float32 happened to do."""
    if not value.is_floating_point():
        return value
    gen = torch.Generator().manual_seed(index)
    noise = torch.randn(value.shape, generator=gen, dtype=torch.float64).to(value.dtype)
    return value * (1 + ROUNDING * noise)


def agrees(value: torch.Tensor, reference: torch.Tensor) -> bool:
    """Whether a float result is within a tenth of its dtype's tolerance (the guard's) of
    the same computation in the (perturbed) float64 twin; ints and bools must be equal. If
    not, the graph is ill-conditioned (a layer norm of a nearly constant row, a comparison
    of a computed value at its threshold) and no compiler could match eager reliably."""
    from compiler.guard import tolerance

    if not value.is_floating_point():
        return torch.equal(value, reference.to(value.dtype))
    rtol, atol = tolerance(value.dtype if value.dtype != torch.float64 else torch.float32)
    v, ref = value.double(), reference.double()
    nan, inf = torch.isnan(ref), torch.isinf(ref)
    if not torch.equal(nan, torch.isnan(v)) or not torch.equal(inf, torch.isinf(v)) \
            or not torch.equal(v[inf], ref[inf]):
        return False
    finite = ~nan & ~inf
    if not finite.any():
        return True
    err = float((v[finite] - ref[finite]).abs().max())
    return err <= (atol + rtol * float(ref[finite].abs().max())) / 10


def outputs_of(spec: Spec) -> list[int]:
    used = {a for node in spec for a in node.get("args", ())}
    return [i for i, node in enumerate(spec)
            if node["op"] != "input" and (i not in used or node.get("output"))]


class Program:
    """A spec executed node by node on real tensors: the values (for shapes and checks)
    and the modules, parameters and constants the model will hold."""

    MAX_ABS = 1e4  # values beyond this make float tolerance meaningless

    def __init__(self, double: bool = False) -> None:
        """``double``: compute in float64 (float32 inputs, weights and casts widened); a
        float32 program keeps such a shadow to check that each node is well-conditioned."""
        self.double = double
        self.shadow = None if double else Program(double=True)
        self.spec: Spec = []
        self.values: list[Any] = []
        self.modules: dict[str, nn.Module] = {}
        self.params: dict[str, nn.Parameter] = {}
        self.consts: dict[tuple[int, str], Any] = {}

    def append(self, node: dict) -> torch.Tensor:
        """Run ``node``; on failure nothing is kept and ``InvalidSpec`` is raised."""
        index = len(self.spec)
        if self.shadow is not None:
            self.shadow.append(node)
        saved = (dict(self.modules), dict(self.params), dict(self.consts))
        try:
            value = self._run(index, node)
            if self.shadow is not None and not agrees(value, self.shadow.values[-1]):
                raise InvalidSpec(f"node {index}: ill-conditioned (float32 differs from "
                                  f"float64 in eager)")
        except Exception as e:
            self.modules, self.params, self.consts = saved
            if self.shadow is not None:
                self.shadow.pop()
            if isinstance(e, InvalidSpec):
                raise
            raise InvalidSpec(f"{type(e).__name__}: {e}") from None
        self.spec.append(node)
        self.values.append(value)
        return value

    def pop(self) -> None:
        """Drop the last node with everything it made."""
        index = len(self.spec) - 1
        if self.shadow is not None:
            self.shadow.pop()
        self.spec.pop()
        self.values.pop()
        self.modules.pop(f"n{index}", None)
        for key in [k for k in self.params if k.startswith(f"n{index}_")]:
            del self.params[key]
        for key in [k for k in self.consts if k[0] == index]:
            del self.consts[key]

    def _run(self, index: int, node: dict) -> torch.Tensor:
        if node["op"] == "input":
            return make_input(node, self.double)
        args = node.get("args", [])
        if any(not 0 <= a < index for a in args) or not args:
            raise InvalidSpec(f"node {index}: bad args {args}")
        if "share" in node and not 0 <= node["share"] < index:
            raise InvalidSpec(f"node {index}: shares a later node")
        with torch.no_grad():
            value = HANDLERS[node["op"]](BuildState(self, index, node), node,
                                         [self.values[a] for a in args])
            if self.double and isinstance(value, torch.Tensor):
                value = perturb(value, index)
        if not isinstance(value, torch.Tensor) or value.numel() == 0:
            raise InvalidSpec(f"node {index}: empty or not a tensor")
        if value.is_floating_point():
            finite = torch.isfinite(value)
            if not finite.all():
                raise InvalidSpec(f"node {index}: non-finite values")
            if value[finite].abs().max() > self.MAX_ABS:
                raise InvalidSpec(f"node {index}: values beyond {self.MAX_ABS}")
        return value


class SpecModule(nn.Module):
    """The model a spec describes; ``forward`` replays the spec through the handlers."""

    def __init__(self, program: Program):
        super().__init__()
        self.float64 = program.double
        self.spec = [dict(n) for n in program.spec]
        self.mods = nn.ModuleDict(program.modules)
        self.params = nn.ParameterDict(program.params)
        self.consts = dict(program.consts)
        self.output_ids = outputs_of(self.spec)

    def replay(self, inputs: tuple) -> tuple:
        values: dict[int, Any] = {}
        feed = iter(inputs)
        for i, node in enumerate(self.spec):
            if node["op"] == "input":
                values[i] = next(feed)
            else:
                values[i] = HANDLERS[node["op"]](RunState(self, i), node,
                                                 [values[a] for a in node["args"]])
                if self.float64:
                    values[i] = perturb(values[i], i)
        return tuple(values[i] for i in self.output_ids)


def model_class(num_inputs: int) -> type[SpecModule]:
    """A SpecModule whose ``forward`` names each input (``forward(self, x0, x1)``):
    torch.fx cannot trace ``*inputs``."""
    if num_inputs not in _CLASSES:
        names = ", ".join(f"x{i}" for i in range(num_inputs))
        namespace: dict[str, Any] = {}
        exec(f"def forward(self, {names}):\n    return self.replay(({names},))", namespace)
        _CLASSES[num_inputs] = type(f"SpecModule{num_inputs}", (SpecModule,),
                                    {"forward": namespace["forward"]})
    return _CLASSES[num_inputs]


_CLASSES: dict[int, type[SpecModule]] = {}


def run_program(spec: Spec) -> Program:
    program = Program()
    for node in spec:
        program.append(node)
    if not outputs_of(spec):
        raise InvalidSpec("no outputs")
    return program


def build_model(spec: Spec, double: bool = False) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """The eval-mode model of ``spec`` and its example inputs (``InvalidSpec`` if none);
    ``double``: the float64 twin (float inputs and weights widened) that judges whether
    a float32 difference is the compiler's or the graph's."""
    program = run_program(spec)
    if double:
        program = program.shadow
    inputs = tuple(v for n, v in zip(spec, program.values) if n["op"] == "input")
    return model_class(len(inputs))(program).eval(), inputs


def generate(seed: int, max_nodes: int | None = None) -> Spec:
    """A random valid spec; the same seed gives the same spec."""
    from recipes import generate_spec

    return generate_spec(seed, max_nodes)
