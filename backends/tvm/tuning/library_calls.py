"""Putting library kernels into the program.

A call site that runs in the library gets a PrimFunc of its own whose body is one
``call_packed("dscompile.library.run", id, inputs..., out)``, and its ``call_tir`` in
``main`` is pointed at that PrimFunc with only the activations as arguments (the weights
live prepacked in the library kernel, so their parameters drop out of the call).
Staying a ``call_tir`` keeps everything downstream unchanged: the output is allocated,
and placed by the memory plan, like any kernel's.
"""

from __future__ import annotations

from typing import Any

import tvm
from tvm import relax, te, tirx

from backends.tvm.tuning.library import FUNC, LibrarySpec

_CALL_TIR = tvm.ir.Op.get("relax.call_tir")


def wrapper(spec: LibrarySpec, dtype: str = "float32", shapes: list | None = None,
            out_shape: tuple | None = None) -> tirx.PrimFunc:
    """The PrimFunc of one library call site: activations in, ``out`` written by the
    packed function. ``shapes``/``out_shape``: those of the call site where they are
    views of the spec's (a 1x1 conv lowered over H*W flattened); the library kernel views
    them back."""
    shapes = shapes or spec.inputs
    inputs = [te.placeholder(shape, dtype, name=f"in{i}") for i, shape in enumerate(shapes)]
    out = te.extern(out_shape or spec.out, inputs,
                    lambda ins, outs: tirx.call_packed(FUNC, spec.id, *ins, outs[0]),
                    name="library", dtype=dtype)
    return te.create_prim_func([*inputs, out]).without_attr("global_symbol")


def route_to_library(mod: tvm.IRModule, kernels: list[Any], graph_inputs: int
                     ) -> tvm.IRModule:
    """Point each library kernel's call (``KernelInfo.library`` set) at a wrapper
    PrimFunc, renaming the kernel after it. ``main`` calls the kernels in the order of
    ``kernels`` (lowering emits one call per kernel); its parameters after the first
    ``graph_inputs`` are weights (``backends.tvm.weights``)."""
    wanted = [k for k in kernels if k.library]
    if not wanted:
        return mod
    weights = set(mod["main"].params[graph_inputs:])
    sites = dict(zip([id(k) for k in kernels], _kernel_calls(mod["main"])))
    builder = relax.BlockBuilder(mod)  # adds each wrapper with its type on the GlobalVar
    wrappers = {}
    for k in wanted:
        spec = LibrarySpec.from_dict(k.library)
        call = sites[id(k)]
        shapes = [_static_shape(a) for a in _activations(call, weights)]
        func = wrapper(spec, shapes=shapes, out_shape=_static_shape(call.ty_args[0]))
        wrappers[id(k)] = builder.add_func(func, f"{k.name}_{spec.id[:8]}")
    mod = builder.get()
    main_gv = mod.get_global_var("main")
    main = mod[main_gv]
    pending = iter(kernels)
    blocks = []
    for block in main.body.blocks:
        bindings = []
        for binding in block.bindings:
            value = binding.value
            if isinstance(value, relax.Call) and value.op.same_as(_CALL_TIR):
                kernel = next(pending)
                if value.args[0].name_hint != kernel.name:
                    raise AssertionError(f"main calls {value.args[0].name_hint} where kernel "
                                         f"{kernel.name} was expected")
                if kernel.library:
                    value = _library_call(wrappers[id(kernel)], kernel, value, weights)
            bindings.append(relax.VarBinding(binding.var, value))
        kind = relax.DataflowBlock if isinstance(block, relax.DataflowBlock) \
            else relax.BindingBlock
        blocks.append(kind(bindings))
    body = relax.SeqExpr(blocks, main.body.body)
    mod[main_gv] = relax.Function(main.params, body, main.ret_ty, main.is_pure,
                                  main.attrs)
    # normalized: the new call_tir bindings carry no types yet, and LegalizeOps, filling
    # them in while it adds a reshape's PrimFunc, lost track of main ("does not appear in
    # the de-duplication map") when a kernel's operands were views
    return relax.transform.Normalize()(mod)


def _kernel_calls(main: relax.Function) -> list[relax.Call]:
    return [b.value for block in main.body.blocks for b in block.bindings
            if isinstance(b.value, relax.Call) and b.value.op.same_as(_CALL_TIR)]


def _activations(call: relax.Call, weights: set[relax.Var]) -> list[relax.Var]:
    return [a for a in call.args[1].fields if isinstance(a, relax.Var) and a not in weights]


def _static_shape(value: Any) -> tuple[int, ...]:
    ty = value if isinstance(value, relax.TensorType) else value.ty
    return tuple(int(d) for d in ty.shape.values)


def _library_call(gvar: tvm.ir.GlobalVar, kernel: Any, call: relax.Call,
                  weights: set[relax.Var]) -> relax.Call:
    spec = LibrarySpec.from_dict(kernel.library)
    acts = _activations(call, weights)
    if len(acts) != len(spec.inputs):
        raise AssertionError(f"kernel {kernel.name}: {len(acts)} activation arguments, the "
                             f"library spec has {len(spec.inputs)}")
    kernel.name = gvar.name_hint
    return relax.call_tir(gvar, relax.Tuple(acts), call.ty_args[0])
