"""The model's weights as they were compiled: a compiled module holds them (the graph's
arrays share the parameters' memory, and folded or packed weights were computed from
them), so an in-place change to a parameter afterwards (an optimizer step,
``load_state_dict``, ``param.data.mul_``) would make its answers silently stale.
``FrozenState`` records each tensor's version counter at compile time and refuses the
call when one moved: a counter read per tensor, about 10 us for a BERT-base."""

from __future__ import annotations

import torch

from compiler.errors import WeightsChangedError


class FrozenState:
    """The parameters and buffers of ``model`` and their versions at compile time."""

    def __init__(self, model: torch.nn.Module):
        self.tensors = [(name, t, t._version) for name, t in
                        [*model.named_parameters(), *model.named_buffers()]]

    def check(self) -> None:
        for name, tensor, version in self.tensors:
            if tensor._version != version:
                raise WeightsChangedError(
                    f"{name} was changed in place after compiling (an optimizer step, "
                    f"load_state_dict, ...); the compiled module still computes with the "
                    f"weights it was compiled with: compile the model again")
