"""Winograd's minimal filtering for 3x3 convs (CPU, blocked layout): fewer multiplies.

Our conv kernels already run at this CPU's FMA ceiling (about 230 GFLOP/s on 2 cores, as
do ONNX Runtime's), so a 3x3 conv gets faster only by doing less arithmetic. F(m x m,
3 x 3) computes an m x m tile of output from a (m + 2) x (m + 2) tile of input with
(m + 2)^2 multiplies per input and output channel instead of 9 m^2: 2.25x fewer for m = 2,
4x for m = 4. Per tile and channel::

    Y = AT [(G g GT) * (BT d B)] A        (* elementwise)

The weight's transform ``U = G g GT`` is done once, when the weight is packed
(``transform_weight``, in float64); the kernel (``op_table._conv2d_winograd``) does the
rest in three steps: the input transform ``V = BT d B`` per tile, one matrix product per
position of the (m + 2)^2 (sum over input channels of U V, the inner loop of our 1x1
conv), and the output transform with the kernel's epilogue (``WinogradConv2d``).

Measured on ResNet-50's 3x3 convs, kernel by kernel in one process: 64 ch at 56x56 0.34
against 1.07 ms direct (m = 4), 128 ch at 28x28 0.30 against 1.04, 256 ch at 14x14
0.48 against 1.04 (m = 2), 512 ch at 7x7 0.84 against 1.19 with the caches flushed (m =
2, the last tiles past the edge). The whole model: 31.3 against 38.3 ms.

The price is rounding: the transforms' coefficients (up to 8 and 1/24 for m = 4) grow
the error of a conv to about 7e-6 of its largest output, well inside the numerics
guard's 1e-4 (ResNet-50's logits: 1.2e-5 of up to 10.5, 5.7e-6 direct). And infinities: the
transforms add and subtract a tile's values, so an Inf in the input makes NaN over its
whole output tile, where a direct conv makes NaN or Inf in the 3x3 around it (as merging
a chain of linears does, ``compiler.passes``: exact for finite values only).
``DSCOMPILE_WINOGRAD=0`` turns it off.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

ENV = "DSCOMPILE_WINOGRAD"
MIN_CHANNELS = 32  # below, the transforms cost more than the multiplies they save
MIN_TILES = 16  # tiles: fewer leave the products too short to tile
MAX_WEIGHT_BYTES = 20 * 1024 * 1024  # a transformed weight, read from memory every call
WEIGHT_TILES = 13  # ``cost``

# (BT, G, AT) of F(m x m, 3 x 3), interpolation points 0, +-1 (m = 2) and 0, +-1, +-2
# (m = 4), with the point at infinity: Lavin & Gray, "Fast Algorithms for Convolutional
# Neural Networks" (2016).
_MATRICES = {
    2: ([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
        [[1, 0, 0], [1 / 2, 1 / 2, 1 / 2], [1 / 2, -1 / 2, 1 / 2], [0, 0, 1]],
        [[1, 1, 1, 0], [0, 1, -1, -1]]),
    4: ([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
         [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
        [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
         [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]],
        [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]),
}
TILES = tuple(sorted(_MATRICES, reverse=True))  # the output tiles tried, largest first


@dataclass(frozen=True)
class Matrices:
    """F(m x m, 3 x 3)'s transforms: ``bt`` [t, t] (input), ``g`` [t, 3] (weight), ``at``
    [m, t] (output), t = m + 2."""

    m: int
    bt: np.ndarray
    g: np.ndarray
    at: np.ndarray

    @property
    def t(self) -> int:
        return self.m + 2


def matrices(m: int) -> Matrices:
    bt, g, at = (np.array(a, dtype=np.float64) for a in _MATRICES[m])
    return Matrices(m, bt, g, at)


# ----- the packed weight -------------------------------------------------------------

LAYOUT_PREFIX = "winograd"


def layout(m: int, lanes: int) -> str:
    """The packed layout of a Winograd conv's weight: ``U`` as [t * t, OC / lanes, IC,
    lanes], e.g. "winograd4_16o"."""
    return f"{LAYOUT_PREFIX}{m}_{lanes}o"


def parse_layout(name: str | None) -> tuple[int, int] | None:
    """(m, lanes) of a Winograd layout name, None for any other layout."""
    if not name or not name.startswith(LAYOUT_PREFIX):
        return None
    m, lanes = name[len(LAYOUT_PREFIX):].rstrip("o").split("_")
    return int(m), int(lanes)


def packed_shape(shape: tuple, name: str) -> tuple:
    m, lanes = parse_layout(name)
    oc, ic = shape[:2]
    return ((m + 2) ** 2, oc // lanes, ic, lanes)


def transform_weight(weight: np.ndarray, name: str) -> np.ndarray:
    """``U = G g GT`` of every [3, 3] filter of ``weight`` [OC, IC, 3, 3], packed in layout
    ``name``; computed in float64 so the packing adds no rounding of its own."""
    m, lanes = parse_layout(name)
    mats = matrices(m)
    oc, ic = weight.shape[:2]
    u = mats.g @ weight.astype(np.float64) @ mats.g.T  # [OC, IC, t, t], batched matmuls
    u = u.transpose(2, 3, 0, 1).reshape(mats.t * mats.t, oc // lanes, lanes, ic)
    u = u.transpose(0, 1, 3, 2)
    return np.ascontiguousarray(u.astype(weight.dtype))


# ----- which convs -------------------------------------------------------------------


def enabled() -> bool:
    return os.environ.get(ENV, "1") not in ("0", "false", "off")


def output_tile(in_channels: int, out_channels: int, out_lanes: int, height: int,
                width: int, batch: int = 1) -> int | None:
    """The output tile m of a 3x3, stride-1, padding-1 fp32 conv computed with Winograd,
    or None to keep it direct. Of the tiles that leave at least MIN_TILES tiles and a
    transformed weight of at most MAX_WEIGHT_BYTES, the one of least ``cost``; the last
    tiles of a row or column may reach past the output's edge (7x7 in 4 x 4 tiles of 2).
    Tiles count over the whole batch."""
    if not enabled() or min(in_channels, out_channels) < MIN_CHANNELS \
            or out_channels % out_lanes:
        return None
    fits = [m for m in TILES
            if batch * tiles(m, height, width) >= MIN_TILES
            and (m + 2) ** 2 * in_channels * out_channels * 4 <= MAX_WEIGHT_BYTES]
    return min(fits, key=lambda m: cost(m, batch * tiles(m, height, width)), default=None)


def tiles(m: int, height: int, width: int) -> int:
    return -(-height // m) * -(-width // m)


def cost(m: int, n_tiles: int) -> int:
    """The products' work per pair of channels, (m + 2)^2 per tile, plus the transformed
    weight's read from memory, which weighs as much as WEIGHT_TILES tiles' products. Fit
    to ResNet-50's shapes, timed with the caches flushed: 7x7 at m = 2 0.84 ms, m = 4 1.12
    (direct 1.19); 14x14 at m = 2 0.60, m = 4 0.61 (direct 1.06)."""
    return (m + 2) ** 2 * (n_tiles + WEIGHT_TILES)
