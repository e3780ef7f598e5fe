"""Mixed precision: store and compute in float16 or bfloat16, keep the model's signature.

Rewrites (``dtype`` is the low precision, "float16" or "bfloat16"):
    weight w : f32                      -> weight w : dtype (data rounded once, here)
    input x : f32                       -> cast(x, dtype) before its first use
    cast/full/arange(..., dtype=f32)    -> the same with dtype
    every op                            -> re-typed from its operands (promotion gives dtype)
    output y : dtype, was f32           -> cast(y, float32)
so callers still pass and get float32 tensors, and the guard compares with eager float32
at the tolerance of ``dtype``. Accumulation stays float32 where it matters: the backend
widens the operands of reductions (matmul, conv, softmax, norms, means) as it reads them
(``backends.tvm.op_table.ACCUMULATE_IN_FP32``), and computes transcendental
functions in float32 (``TRANSCENDENTAL``). Integer and bool tensors are untouched;
0-d float constants do not widen a tensor (torch's promotion), so they stay as they are.
"""

from __future__ import annotations

import numpy as np

from compiler.pass_manager import Pass, PassResult, derived_meta
from ir import Graph, Node
from ir.registry import infer_type
from ir.types import TensorType

LOW_DTYPES = ("float16", "bfloat16")
_DTYPE_ATTR_OPS = ("cast", "full", "arange")  # ops whose attrs name their result dtype


def to_numpy_dtype(dtype: str) -> np.dtype:
    if dtype == "bfloat16":
        import ml_dtypes  # numpy has no bfloat16; TVM depends on ml_dtypes for it

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(dtype)


class MixedPrecision(Pass):
    name = "mixed_precision"

    def __init__(self, dtype: str = "bfloat16"):
        super().__init__()
        if dtype not in LOW_DTYPES:
            raise ValueError(f"mixed precision dtype must be one of {LOW_DTYPES}, got {dtype!r}")
        self.dtype = dtype

    def run(self, graph: Graph) -> PassResult:
        wanted = [o.dtype for o in graph.outputs]
        changed = [self.lower_weight(graph, n) for n in list(graph.nodes) if n.op == "weight"]
        changed += [self.lower_input(graph, n) for n in list(graph.inputs)]
        changed += [self.lower_dtype_attr(graph, n) for n in list(graph.ops())
                    if n.op in _DTYPE_ATTR_OPS]
        for node in graph.ops():
            node.type = infer_type(node.op, [i.type for i in node.inputs], node.attrs)
        graph.outputs = self.restore_outputs(graph, wanted)
        return PassResult(graph, any(changed))

    def lower_weight(self, graph: Graph, node: Node) -> bool:
        if node.dtype != "float32":
            return False
        data = graph.weights.get(node.name)
        low = None if data is None else np.asarray(data).astype(to_numpy_dtype(self.dtype))
        meta = {**node.meta, **derived_meta(node, self.name)}
        new = graph.add_weight(node.name + f"_{self.dtype}", low,
                               TensorType(node.shape, self.dtype), meta=meta, before=node)
        graph.replace_all_uses(node, new)
        graph.erase(node)
        graph.rename(new, node.name)  # torch names and dumps keep matching
        return True

    def lower_input(self, graph: Graph, node: Node) -> bool:
        if node.dtype != "float32" or not node.users:
            return False
        first_op = next(n for n in graph.nodes if n.op != "input")
        cast = graph.call("cast", [node], {"dtype": self.dtype}, name=f"{node.name}_{self.dtype}",
                          before=first_op, meta=derived_meta(node, self.name))
        for user in [u for u in node.users if u is not cast]:
            graph.set_inputs(user, [cast if i is node else i for i in user.inputs])
        return True

    def lower_dtype_attr(self, graph: Graph, node: Node) -> bool:
        if node.attrs.get("dtype") != "float32":
            return False
        new = graph.call(node.op, node.inputs, {**node.attrs, "dtype": self.dtype},
                         before=node, meta=derived_meta(node, self.name))
        graph.replace_all_uses(node, new)
        graph.erase(node)
        graph.rename(new, node.name)
        return True

    def restore_outputs(self, graph: Graph, wanted: list[str]) -> list[Node]:
        """Outputs that were float32 and are now ``dtype``, cast back (one cast each)."""
        casts: dict[int, Node] = {}
        outputs = []
        for node, dtype in zip(graph.outputs, wanted):
            if node.dtype == dtype:
                outputs.append(node)
                continue
            if id(node) not in casts:
                casts[id(node)] = graph.call("cast", [node], {"dtype": dtype},
                                             name=f"{node.name}_{dtype}", after=node,
                                             meta=derived_meta(node, self.name))
            outputs.append(casts[id(node)])
        return outputs


PASS = MixedPrecision
