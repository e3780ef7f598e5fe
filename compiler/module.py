"""``CompiledModule``: what ``dscompile`` returns. A torch ``nn.Module`` that checks each
call against what was compiled, runs the TVM program, and rebuilds the model's own
output structure (tensor, tuple, dict, HuggingFace ``ModelOutput``)."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils import _pytree as pytree

from compiler.errors import InputMismatchError
from ir import Graph

_TORCH_DTYPE = {
    "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
    "float64": torch.float64, "int64": torch.int64, "int32": torch.int32, "int8": torch.int8,
    "uint8": torch.uint8, "bool": torch.bool,
}


def torch_dtype(dtype: str) -> torch.dtype:
    return _TORCH_DTYPE[dtype]


class CompiledModule(torch.nn.Module):
    """A compiled model. Call it like the original; ``.ir`` is the final IR graph,
    ``.records`` the passes that ran, ``.kernels`` the generated kernels."""

    def __init__(self, program: Any, graph: Graph, out_spec: Any, *, device: str,
                 records: list | None = None, plan: Any = None, options: Any = None,
                 capture_method: str = "fx"):
        super().__init__()
        self._program = program
        self.ir = graph
        self.out_spec = out_spec
        self.device = device
        self.records = records or []
        self.plan = plan
        self.options = options
        self.capture_method = capture_method
        self.dim_ranges: dict = {}  # symbolic dim name -> compiler.dynamic.DimSpec
        self.frozen: Any = None  # compiler.frozen.FrozenState of the model compiled

    @property
    def kernels(self) -> list:
        return list(getattr(self._program, "kernels", []))

    @property
    def num_kernels(self) -> int:
        return len(self.kernels)

    @property
    def memory(self) -> Any:
        """What the program allocates (``backends.tvm.memory.MemoryStats``): the planned
        arena, the bytes the final Relax allocates, the route taken and why."""
        return getattr(self._program, "memory", None)

    @property
    def device_code(self) -> Any:
        """For a GPU target, the kernels' binary (cubin or code object) and source (CUDA C
        or AMDGPU assembly): ``backends.tvm.device_code.DeviceCode``; else ``None``."""
        return getattr(self._program, "device_code", None)

    def export_library(self, path: str) -> None:
        """Write the compiled program to ``path``, a shared library, with its weights
        (``NAME.weights.npz``), a manifest, ``NAME_loader.py`` (which runs it with only tvm
        and torch installed) and, for a GPU, its binary beside it
        (``backends.tvm.artifact``)."""
        self._program.export_library(path)

    def report(self):
        """Per-kernel table (ops, shapes, FLOPs, bytes, schedule, arena offset); ``str()``
        of it pretty-prints, ``.to_dict()`` gives data."""
        from compiler.report import build_report

        return build_report(self.ir, self.kernels, self.plan, self.memory,
                            getattr(self._program, "validation", None))

    def profile(self, *args: Any, runs: int = 10, **kwargs: Any):
        """``report()`` with each kernel's time inside the program on these inputs (ms per
        call, median of ``runs``) and its GFLOP/s: which kernel the time goes to."""
        if self.frozen is not None:
            self.frozen.check()
        from compiler.report import attach_profile

        report = self.report()
        attach_profile(report, self._program.profile(*self.check_inputs(args, kwargs),
                                                     runs=runs))
        return report

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        require_device = getattr(self._program, "require_device", None)
        if require_device is not None:  # no GPU here: say so, not "move the input to cuda"
            require_device()
        if self.frozen is not None:
            self.frozen.check()
        flat = self.check_inputs(args, kwargs)
        outputs = self._program(*flat)
        return pytree.tree_unflatten(list(outputs), self.out_spec)

    def run_flat(self, flat: list[torch.Tensor]) -> list[torch.Tensor]:
        """Run on already-flattened inputs (no structure rebuilt); used by the guard."""
        return list(self._program(*flat))

    def check_inputs(self, args: tuple, kwargs: dict) -> list[torch.Tensor]:
        """Flatten the call's arguments and compare each with the compiled input types."""
        leaves = [x for x in pytree.tree_leaves((args, kwargs)) if isinstance(x, torch.Tensor)]
        expected = self.ir.inputs
        if len(leaves) != len(expected):
            names = ", ".join(f"{n.name}: {n.type}" for n in expected)
            raise InputMismatchError(
                f"compiled for {len(expected)} tensor input(s) ({names}), called with "
                f"{len(leaves)}")
        symbols: dict[str, int] = {}
        for node, tensor in zip(expected, leaves):
            self._check_one(node, tensor, symbols)
        return leaves

    def _check_one(self, node: Any, tensor: torch.Tensor, symbols: dict[str, int]) -> None:
        want = node.type
        got_shape = tuple(tensor.shape)
        shape_ok = len(got_shape) == len(want.shape)
        for dim, size in zip(want.shape, got_shape):
            if isinstance(dim, str):
                shape_ok &= symbols.setdefault(dim, size) == size
            else:
                shape_ok &= dim == size
        if not shape_ok:
            raise InputMismatchError(
                f"input '{node.name}': compiled for shape {list(want.shape)}, got "
                f"{list(got_shape)}; recompile with dscompile(...) for this shape, or mark the "
                f"dimension dynamic")
        for dim, size in zip(want.shape, got_shape):
            spec = self.dim_ranges.get(dim) if isinstance(dim, str) else None
            if spec is not None and not spec.min <= size <= (spec.max or size):
                raise InputMismatchError(
                    f"input '{node.name}': dim {dim!r} = {size} is outside the range "
                    f"[{spec.min}, {spec.max}] it was compiled for")
        if tensor.dtype != torch_dtype(want.dtype):
            raise InputMismatchError(
                f"input '{node.name}': compiled for dtype {want.dtype}, got "
                f"{str(tensor.dtype).removeprefix('torch.')}")
        if tensor.device.type != self.device:
            raise InputMismatchError(
                f"input '{node.name}': compiled for device '{self.device}', got a tensor on "
                f"'{tensor.device}'; move it with .to('{self.device}')")
        if tensor.requires_grad and torch.is_grad_enabled():
            raise InputMismatchError(
                f"input '{node.name}' requires grad, but dscompile modules are inference-only "
                f"(no backward); call under torch.no_grad() or pass tensor.detach()")

    def extra_repr(self) -> str:
        return f"kernels={self.num_kernels}, device={self.device}"
