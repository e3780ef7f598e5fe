"""Weights as arguments of ``main``: their layouts, and the tensors a program is called with.

A program does not carry its weights as Relax constants: those are copied into the
executable, serialized into every exported or cached library and copied again on load
(a BERT-base program held its 440 MB of weights two to four times over). Instead ``main``
takes each weight, in the layout its kernel reads, after the graph inputs, and the
``BuiltModule`` passes the same tensors on every call: a weight whose layout is the IR's
is the graph's own array (no copy, which in turn is the torch parameter's memory, see
``compiler.capture.context``); a packed one is made once, at build or load time.

Layouts (the kernel asks for one through ``attrs["weight_layout"]``):

- ``KN``: a linear weight [out, in] transposed to [in, out], for contiguous inner loops;
- ``KN32``: ... in panels [out / 32, in, 32]: one register tile's columns, contiguous over
  the whole reduction (a row stride of a wide [in, out] layer thrashes the TLB);
- ``OIHW16o``: a conv2d weight [OC, IC, KH, KW] as [OC / 16, IC, KH, KW, 16]: 16 output
  channels, one vector, contiguous for the CPU rule; ``OIHW8o`` the same in blocks of 8,
  for a conv whose output is stored in blocks of 8 channels (``blocked_layout``);
- ``OI``: a 1x1 conv2d weight [OC, IC, 1, 1] as [OC, IC], and ``flat``: any weight's last
  two dims as one ([C, 1, 1] -> [C, 1]), for a 1x1 conv kernel lowered as a matmul over
  H*W (``lower``); views, no copies;
- ``winograd{m}_{b}o``: a 3x3 conv2d weight transformed for Winograd's F(m x m, 3 x 3),
  [(m + 2)^2, OC / b, IC, b] (``backends.tvm.winograd``).
"""

from __future__ import annotations

import numpy as np
import torch

from backends.tvm import winograd

KN = "KN"
PANEL = 32
PACKED = "KN32"
CONV_LANES = 16
CONV_PACKED = "OIHW16o"
CONV_PACKED8 = "OIHW8o"
CONV_BLOCKS = {CONV_PACKED: CONV_LANES, CONV_PACKED8: 8}  # layout: output channels a block
FLAT = "flat"
OI = "OI"
ALIGN = 64  # TVM's kernels assume 64-byte aligned buffers


def packed_shape(shape: tuple, layout: str | None) -> tuple:
    """The shape of a weight of ``shape`` in ``layout``."""
    if layout == KN:
        return tuple(reversed(shape))
    if layout == PACKED:
        out_features, in_features = shape
        return (out_features // PANEL, in_features, PANEL)
    if layout in CONV_BLOCKS:
        lanes = CONV_BLOCKS[layout]
        oc, *rest = shape
        return (oc // lanes, *rest, lanes)
    if layout == FLAT:
        return flat_shape(shape)
    if layout == OI:
        return tuple(shape[:2])
    if winograd.parse_layout(layout):
        return winograd.packed_shape(shape, layout)
    return tuple(shape)


def flat_shape(shape: tuple) -> tuple:
    """``shape`` with its last two dims as one."""
    *lead, h, w = shape
    return (*lead, h * w)


def pack(data: np.ndarray, layout: str | None) -> np.ndarray:
    """``data`` in ``layout``: a view of it when the layout is the IR's, else a new array."""
    if layout == KN:
        return np.ascontiguousarray(data.T)
    if layout == PACKED:
        out_features, in_features = data.shape
        panels = data.reshape(out_features // PANEL, PANEL, in_features).transpose(0, 2, 1)
        return np.ascontiguousarray(panels)
    if layout in CONV_BLOCKS:
        lanes = CONV_BLOCKS[layout]
        oc = data.shape[0]
        blocks = data.reshape(oc // lanes, lanes, *data.shape[1:])
        return np.ascontiguousarray(blocks.transpose(0, 2, 3, 4, 1))
    if layout in (FLAT, OI):
        return np.asarray(data, order="C").reshape(packed_shape(data.shape, layout))
    if winograd.parse_layout(layout):
        return winograd.transform_weight(data, layout)
    if layout is not None:
        raise ValueError(f"unknown weight layout {layout!r}")
    return np.asarray(data, order="C")


def as_torch(data: np.ndarray) -> torch.Tensor:
    """``data`` as a 64-byte aligned torch tensor, sharing its memory where it already is
    aligned (torch's allocator aligns; numpy's does not promise to)."""
    bfloat16 = data.dtype.name == "bfloat16"  # ml_dtypes' numpy type, which torch
    if bfloat16:  # cannot take: its bits as uint16, then a view as torch's bfloat16
        data = data.view(np.uint16)
    tensor = torch.from_numpy(data) if data.flags.writeable else torch.tensor(data)
    if bfloat16:
        tensor = tensor.view(torch.bfloat16)
    if tensor.data_ptr() % ALIGN:
        tensor = tensor.clone(memory_format=torch.contiguous_format)
    return tensor
