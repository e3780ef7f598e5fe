"""CPU schedule rules, dlight-style: each rule's ``apply(func, target)`` returns a
``tvm.s_tir.Schedule`` or ``None`` to decline. ``RULES`` are tried in order; ``FALLBACK``
(parallel outer loops, vectorized inner loop, for every block) always applies.

The anchor rules (matmul/linear, conv2d, depthwise conv2d) share one tiling: a register
tile of TILE_ROWS values of one spatial axis (the one the vectorized operand does not
depend on: matmul rows, conv output channels) by TILE_VECS vectors of the innermost
spatial axis (matmul columns, conv output width). The accumulator lives in a small local
buffer inside the parallel tile loop; the epilogue (bias, batch norm, activation,
residual add) is inlined into its write-back.
"""

from __future__ import annotations

from collections.abc import Iterable

import tvm
import tvm_ffi
from tvm import s_tir, tirx
from tvm.ir.prim.expr import GE, GT, LE, LT
from tvm.target import Target

VEC = 16  # fp32 lanes of an AVX-512 register
TILE_ROWS = 8  # register tile: 8 rows x 2 vectors = 16 accumulator registers
TILE_VECS = 2
L1_BYTES = 48 * 1024  # L1 data cache per core (Zen 4/5; Intel since Ice Lake)
L2_BYTES = 1024 * 1024  # L2 per core (Zen 4/5)
MAX_VECTOR_LOOP = 256  # a loop vectorized whole (LLVM splits it into registers)
MAX_DEPTHWISE_ROW = 128  # a depthwise conv's output row is one vector loop up to this
DEPTHWISE_ACCUMULATORS = 8  # a depthwise row tile's, or 3 rows' of wider rows (tile_rows)

# ----- block analysis ----------------------------------------------------------------


def root_blocks(sch: s_tir.Schedule) -> list:
    return list(sch.get_child_blocks(sch.get_sblock("root")))


_KIND = {tirx.IterVar.DataPar: "S", tirx.IterVar.CommReduce: "R"}


def kinds(sch: s_tir.Schedule, block) -> str:
    """'S'/'R'/'O' per block iter var, e.g. 'SSSR'."""
    return "".join(_KIND.get(iv.iter_type, "O") for iv in sch.get(block).iter_vars)


def leading_spatial(dom_kind: str) -> int:
    return len(dom_kind) - len(dom_kind.lstrip("S"))


def is_spatial(sch: s_tir.Schedule, block) -> bool:
    return set(kinds(sch, block)) == {"S"}


def vars_in(exprs: Iterable[tirx.PrimExpr]) -> set:
    found: set = set()
    for e in exprs:
        tvm_ffi.structural_walk(e, (tirx.Var, found.add), order="post")
    return found


def read_vars(block: s_tir.SBlock) -> list[tuple[object, set]]:
    """(buffer, iter vars its read indices use) for each read of ``block``."""
    iters = {iv.var for iv in block.iter_vars}
    return [(r.source, vars_in(rg.min for rg in r.region) & iters) for r in block.reads]


IF_THEN_ELSE = tvm.ir.Op.get("prim.if_then_else").name


def has_if_then_else(sch: s_tir.Schedule, block) -> bool:
    """A padding block: inlined into a conv it would put a branch in the inner loop.
    Only ``if_then_else`` calls count: TVM's HasIfThenElse also counts ``Select``, which
    every NaN-keeping relu has, and would keep those epilogues out of the tile."""
    found: list = []

    def visit(call: tvm.ir.Call) -> None:  # TIR calls are tvm.ir.Call in TVM 0.27
        if isinstance(call.op, tvm.ir.Op) and call.op.name == IF_THEN_ELSE:
            found.append(call)

    tvm_ffi.structural_walk(sch.get(block).body, (tvm.ir.Call, visit), order="post")
    return bool(found)


def fits_in_tiles(sch: s_tir.Schedule, a, b) -> bool:
    """Whether block ``b`` (an epilogue) can be computed tile by tile with its anchor
    ``a``: it writes a buffer of ``a``'s shape, or one with fewer rows (second-to-last
    axis: a linear whose rows the lowering padded to whole tiles writes back only the
    real ones). Fewer columns would put a lane predicate in the write-back, which TVM
    then runs scalar."""
    shape_a = sch.get(a).writes[0].source.shape
    shape_b = sch.get(b).writes[0].source.shape
    if len(shape_a) != len(shape_b) or has_if_then_else(sch, b):
        return False
    static = [isinstance(x, tirx.IntImm) and isinstance(y, tirx.IntImm)
              for x, y in zip(shape_a, shape_b)]
    same = [s and int(x) == int(y) or x.same_as(y) for s, x, y in zip(static, shape_a, shape_b)]
    fewer = [s and int(y) < int(x) for s, x, y in zip(static, shape_a, shape_b)]
    # fewer only along the rows: a slice of an outer axis (linear(x)[0:1], a random graph)
    # was written by every parallel tile, each from its own accumulators: a wrong answer
    rows_ok = len(same) < 2 or same[-2] or fewer[-2]
    return same[-1] and all(same[:-2]) and rows_ok


def extent(sch: s_tir.Schedule, loop) -> int | None:
    ext = sch.get(loop).extent
    return int(ext) if isinstance(ext, tirx.IntImm) else None


def inline_all(sch: s_tir.Schedule, blocks: list) -> list:
    """compute_inline each of ``blocks`` where legal; the ones that stay."""
    kept = []
    for b in blocks:
        try:
            sch.compute_inline(b)
        except Exception:  # not inlinable (reduction, or read with a different pattern)
            kept.append(b)
    return kept


def vectorize_block(sch: s_tir.Schedule, block, parallel: bool = True) -> None:
    """Vector lanes along the innermost axis (contiguous), everything outside fused and
    run in parallel."""
    loops = sch.get_loops(block)
    if not loops:
        return
    if parallel and has_if_then_else(sch, block) and vectorize_padding(sch, block):
        return
    n = extent(sch, loops[-1])
    if n is not None and n > VEC and n % 8 and len(loops) > 1:  # a tail, split off
        if parallel:
            sch.parallel(sch.fuse(*loops[:-1]) if len(loops) > 2 else loops[0])
        split_vectors(sch, loops[-1], VEC)
        return
    if n is not None and n <= VEC:
        outer, vec = loops[:-1], loops[-1]
    else:
        lanes = next((k for k in (16, 8) if n and n % k == 0), VEC)
        inner_outer, vec = sch.split(loops[-1], [None, lanes])
        outer = [*loops[:-1], inner_outer]
    if outer and parallel:
        sch.parallel(sch.fuse(*outer) if len(outer) > 1 else outer[0])
    if n is None or n > 1:
        sch.vectorize(vec)


def vectorize_inner(sch: s_tir.Schedule, block) -> None:
    """Vectorize the innermost loop of a spatial block placed under a parallel loop."""
    loops = sch.get_loops(block)
    inner = loops[-1]
    n = extent(sch, inner)
    if n is not None and n <= VEC:
        if n > 1:
            sch.vectorize(inner)
        return
    split_vectors(sch, inner, VEC)


_BOUND = {LE: lambda c: (c, None), LT: lambda c: (c + 1, None),  # c <= v, c < v
          GE: lambda c: (None, c + 1), GT: lambda c: (None, c)}  # c >= v, c > v
_FLIP = {LE: GE, LT: GT, GE: LE, GT: LT}


def padding_bounds(sch: s_tir.Schedule, block) -> dict:
    """{iter var: (lo, hi)}: the in-bound range a padding block's ``if_then_else`` tests
    for each of its iter vars (``c <= v``, ``v < c``, ...), None for an open side."""
    bounds: dict = {}

    def compare(node) -> None:
        a, b = node.a, node.b
        kind = type(node)
        if isinstance(a, tirx.Var) and isinstance(b, tirx.IntImm):
            a, b, kind = b, a, _FLIP[kind]  # v OP c as c OP' v
        if isinstance(a, tirx.IntImm) and isinstance(b, tirx.Var):
            lo, hi = _BOUND[kind](int(a))
            old_lo, old_hi = bounds.get(b, (None, None))
            bounds[b] = (lo if lo is not None else old_lo, hi if hi is not None else old_hi)

    def visit(call: tvm.ir.Call) -> None:
        if isinstance(call.op, tvm.ir.Op) and call.op.name == IF_THEN_ELSE:
            for kind in _BOUND:
                tvm_ffi.structural_walk(call.args[0], (kind, compare), order="post")

    tvm_ffi.structural_walk(sch.get(block).body, (tvm.ir.Call, visit), order="post")
    return bounds


def vectorize_padding(sch: s_tir.Schedule, block, parallel: bool = True) -> bool:
    """A padding block (``out = if_then_else(in bounds, x[..], pad value)``) with its rows
    and columns cut where the bounds test changes: in the middle piece TVM proves the
    test true and drops it, and the columns run as whole vectors. Left whole, the test
    varies per lane and TVM ran the block scalar (MobileNetV2's padded conv outputs)."""
    stmt = sch.get(block)
    loops = sch.get_loops(block)
    if not parallel:  # placed under a loop of the caller's: its own loops are the last
        loops = loops[-len(stmt.iter_vars):]
    if len(loops) < 3 or len(loops) != len(stmt.iter_vars):
        return False
    bounds = padding_bounds(sch, block)
    iters = [iv.var for iv in stmt.iter_vars]
    if iters[-1] not in bounds and iters[-2] not in bounds:
        return False
    if parallel:
        sch.parallel(sch.fuse(*loops[:-2]) if len(loops) > 3 else loops[0])
    rows = _middle_piece(sch, loops[-2], bounds.get(iters[-2]))
    inner = sch.get_loops(sch.get_child_blocks(rows)[0])[-1] if rows is not loops[-2] \
        else loops[-1]
    columns = _middle_piece(sch, inner, bounds.get(iters[-1]))
    n = extent(sch, columns)
    if n is None or not 1 < n <= MAX_VECTOR_LOOP:
        return True
    if _starts_at_zero(sch, columns):
        vector_pieces(sch, columns)
    else:  # loop_partition and split take loops from 0: one wide vector, LLVM cuts it in 16s
        sch.vectorize(columns)
    return True


def _middle_piece(sch: s_tir.Schedule, loop, bound: tuple | None):
    """``loop`` cut at ``bound`` = (lo, hi): the piece [lo, hi), or ``loop`` itself."""
    n = extent(sch, loop)
    if bound is None or n is None:
        return loop
    lo, hi = bound[0] or 0, min(bound[1] if bound[1] is not None else n, n)
    if lo >= hi or (lo == 0 and hi == n):
        return loop
    sizes = [size for size in (lo, hi - lo, n - hi) if size > 0]
    pieces = sch.loop_partition(loop, [*sizes[:-1], None])  # the last piece: the rest
    return pieces[1 if lo > 0 else 0]


def split_vectors(sch: s_tir.Schedule, loop, lanes: int) -> None:
    """Vectorize ``loop`` in vectors of ``lanes``. A tail that does not fill a vector is
    split off as a scalar loop of its own: left in, its lane predicate makes TVM run
    the whole loop scalar (ViT's 197-wide softmax rows ran 10x slower than 128-wide)."""
    n = extent(sch, loop)
    if n is not None and n % lanes and n > lanes:
        loop, _ = sch.loop_partition(loop, [n - n % lanes, None])
    _, vec = sch.split(loop, [None, lanes])
    sch.vectorize(vec)


def vector_pieces(sch: s_tir.Schedule, loop) -> list:
    """Vectorize ``loop`` as unrolled 16-lane vectors and a tail cut into power-of-two
    vectors (56 = 3 x 16 + 8; 7 = 4 + 2 + 1); the pieces' innermost loops. A vector of
    another width, or the loop as one 56-lane vector, LLVM assembles lane by lane
    through the stack."""
    n = extent(sch, loop)
    sizes = [n // VEC * VEC] if n >= VEC else []
    rest = n % VEC
    sizes += [1 << k for k in range(4, -1, -1) if rest & (1 << k)]
    pieces = sch.loop_partition(loop, [*sizes[:-1], None]) if len(sizes) > 1 else [loop]
    inner = []
    for piece, size in zip(pieces, sizes):
        if size > VEC and _starts_at_zero(sch, piece):  # split refuses other loops: those
            outer, piece = sch.split(piece, [None, VEC])  # stay one vector of 16 x k lanes
            sch.unroll(outer)
        if size > 1:
            sch.vectorize(piece)
        inner.append(piece)
    return inner


def _starts_at_zero(sch: s_tir.Schedule, loop) -> bool:
    start = sch.get(loop).min
    return isinstance(start, tirx.IntImm) and int(start) == 0


def whole_vector_row(n: int) -> int:
    """A row of ``n`` values rounded up to whole vectors: 16 lanes, 8 up to 8 values (the
    depthwise/max-pool rows the CPU lowering computes, ``op_table._plane_windows``)."""
    lanes = VEC if n > 8 else 8
    return -(-n // lanes) * lanes


def register_tile(n_vec: int | None, n_rows: int) -> tuple[int, int, int]:
    """(vectors, lanes, rows) of the register tile. lanes x vectors should divide the
    vectorized extent (a tail puts a lane-dependent branch in the vector loop, which TVM
    then runs scalar); rows x vectors accumulators stay within 16 vector registers. Among
    the tiles that fit, the one with the most accumulator lanes wins, then wider lanes."""
    if n_vec is None:
        return TILE_VECS, VEC, TILE_ROWS
    best: tuple[int, int, int, int] | None = None
    for lanes in [16, 8, *range(15, 3, -1)]:
        for vecs in (1, 2, 3, 4, 7, 14):
            if n_vec % (vecs * lanes) or (lanes not in (16, 8) and vecs > 1):
                continue
            rows = max(1, min(n_rows, TILE_ROWS, 16 // vecs))
            score = (lanes * vecs * rows, lanes)
            if best is None or score > best[:2]:
                best = (*score, vecs, rows)
    if best is None:  # nothing divides: a predicated tail
        return 1, min(n_vec, VEC), max(1, min(n_rows, TILE_ROWS))
    _, lanes, vecs, rows = best
    return vecs, lanes, rows


# ----- rules -------------------------------------------------------------------------


class Rule:
    name = "rule"

    def apply(self, func: tirx.PrimFunc, target: Target) -> s_tir.Schedule | None:
        raise NotImplementedError


class Injective(Rule):
    """Elementwise/layout kernels: inline every block into the last one, then
    fuse -> split by VEC -> parallel outer, vectorize inner."""

    name = "injective"

    def apply(self, func, target):
        sch = s_tir.Schedule(func)
        blocks = root_blocks(sch)
        if not all(is_spatial(sch, b) for b in blocks):
            return None
        for b in inline_all(sch, blocks[:-1]) + [blocks[-1]]:
            vectorize_block(sch, b)
        return sch


class _TiledReduction(Rule):
    """Shared tiling of matmul-like and conv-like blocks (see the module docstring)."""

    pads_in_tile = False  # whether ``tile`` places the padding blocks itself

    def columns_outside_rows(self, sch: s_tir.Schedule, block) -> bool:
        """Whether the tile loop walks row tiles innermost (reusing one column panel of the
        vectorized operand) rather than column tiles (reusing a row panel)."""
        return False

    def match(self, sch: s_tir.Schedule, block) -> tuple[int, int | None] | None:
        """(index of the vectorized spatial iter, index of the register-tiled one or None),
        or None to decline."""
        raise NotImplementedError

    def apply(self, func, target):
        sch = s_tir.Schedule(func)
        blocks = root_blocks(sch)
        reductions = [b for b in blocks if not is_spatial(sch, b)]
        if len(reductions) != 1:
            return None
        main = reductions[0]
        found = self.match(sch, main)
        if found is None:
            return None
        vec_axis, row_axis = found
        if self.pad(sch, main, vec_axis, row_axis):  # new blocks: padded operands and result
            blocks = root_blocks(sch)
            main = next(b for b in blocks if not is_spatial(sch, b))
        pos = blocks.index(main)
        producers, consumers = blocks[:pos], blocks[pos + 1:]
        pads = [b for b in producers if has_if_then_else(sch, b)]
        kept = inline_all(sch, [b for b in producers if b not in pads])
        for b in ([] if self.pads_in_tile else pads) + kept:
            vectorize_block(sch, b)  # a conv's pad block stays, computed once; casts inline
        if inline_all(sch, consumers[:-1]):  # the epilogue must collapse into one block
            return None
        epilogue = consumers[-1] if consumers else None
        if epilogue is not None and not self.fits(sch, main, epilogue):
            # e.g. conv+relu6+pad: a pad computed per tile would leave its border unwritten
            self.tile(sch, main, None, vec_axis, row_axis)
            vectorize_block(sch, epilogue)
            return sch
        self.tile(sch, main, epilogue, vec_axis, row_axis)
        return sch

    def fits(self, sch: s_tir.Schedule, block, epilogue) -> bool:
        """Whether ``epilogue`` is computed tile by tile (``fits_in_tiles``)."""
        return fits_in_tiles(sch, block, epilogue)

    def row_tile(self, rows: int, n_rows: int | None) -> int:
        """The register tile's rows, given the most that fit and the axis' extent."""
        return rows

    def reduction_block(self, sch: s_tir.Schedule, block, n_rows: int | None,
                        tile_columns: int) -> int | None:
        """Reduction values per block when the tile loop should walk the reduction in
        blocks (each block's slice of the column panel stays in L1 across the row tiles),
        or None for one pass over the whole reduction per tile."""
        return None

    def pad(self, sch: s_tir.Schedule, block, vec_axis: int, row_axis: int | None) -> bool:
        """Pad the iteration space to whole register tiles (True if it did): a tile with a
        tail is predicated per lane, and TVM then runs it scalar. Rules whose operands are
        read with composite indices (conv windows) cannot, and keep the tail."""
        return False

    def tile(self, sch, block, epilogue, vec_axis: int, row_axis: int | None) -> None:
        dom = kinds(sch, block)
        loops = sch.get_loops(block)
        spatial = [i for i, k in enumerate(dom) if k == "S"]
        reduce_loops = [loops[i] for i, k in enumerate(dom) if k == "R"]
        n_rows = extent(sch, loops[row_axis]) if row_axis is not None else 1
        vecs, lanes, rows = register_tile(extent(sch, loops[vec_axis]), n_rows or TILE_ROWS)
        rows = self.row_tile(rows, n_rows)
        v_outer, v_mid, v_inner = sch.split(loops[vec_axis], [None, vecs, lanes])
        outer = [loops[i] for i in spatial if i not in (vec_axis, row_axis)]
        if row_axis is not None:
            r_outer, r_inner = sch.split(loops[row_axis], [None, rows])
            # keep the row tile's outer loop in its original position among the outer loops
            outer.insert(sum(1 for i in spatial if i < row_axis and i != vec_axis), r_outer)
            inner = [r_inner, v_mid, v_inner]
        else:
            inner = [v_mid, v_inner]
        k_block = None
        if row_axis is not None and len(reduce_loops) == 1:
            k_block = self.reduction_block(sch, block, n_rows, vecs * lanes)
        if k_block is not None:
            # per column panel and half of its row tiles (two parallel pieces where they
            # halve evenly), reduction blocks outermost: each block's slice of the panel
            # is read from L1 by every row tile, whose accumulators wait in the local
            # buffer between blocks
            outer.remove(r_outer)
            groups = 2 if n_rows % (2 * rows) == 0 else 1
            r_group, r_mid = sch.split(r_outer, [groups, None])
            k_outer, k_inner = sch.split(reduce_loops[0], [None, k_block])
            sch.reorder(*outer, v_outer, r_group, k_outer, r_mid, k_inner, *inner)
            tile_loop = sch.fuse(*outer, v_outer, r_group)
            reduce_loops = [k_outer]
        elif row_axis is not None and self.columns_outside_rows(sch, block):
            outer.remove(r_outer)  # walk all row tiles per column panel: the panel stays in L2
            outer.append(r_outer)
            sch.reorder(*outer[:-1], v_outer, r_outer, *reduce_loops, *inner)
            tile_loop = sch.fuse(*outer[:-1], v_outer, r_outer)
        else:
            sch.reorder(*outer, v_outer, *reduce_loops, *inner)
            tile_loop = sch.fuse(*outer, v_outer)
        sch.parallel(tile_loop)
        # accumulate in a tile-sized local buffer, write back (with the epilogue) per tile
        local = sch.cache_write(block, 0, "local")
        if epilogue is not None:
            sch.compute_inline(local)  # epilogue reads the local accumulator directly
            local = epilogue
        sch.reverse_compute_at(local, tile_loop, preserve_unit_loops=True)
        for loop in inner[:-1]:
            sch.unroll(loop)
        sch.vectorize(inner[-1])  # before decompose_reduction: vectorize needs a reduction block
        init = sch.decompose_reduction(block, reduce_loops[0])
        init_loops = sch.get_loops(init)
        if sch.get(init_loops[-1]).kind != tirx.ForKind.VECTORIZED:
            sch.vectorize(init_loops[-1])
        vectorize_inner(sch, local)


class Matmul(_TiledReduction):
    """Matmul, batched matmul and linear: C[.., i, j] += A[.., i, k] * B[.., k, j]
    (B may be read transposed). Vectorize j, register-tile i."""

    name = "matmul"

    def match(self, sch, block):
        dom = kinds(sch, block)
        stmt = sch.get(block)
        if dom.count("R") != 1 or not dom.endswith("R") or len(stmt.reads) != 2:
            return None
        iters = [iv.var for iv in stmt.iter_vars]
        k = iters[-1]
        (_, a_vars), (_, b_vars) = read_vars(stmt)
        if k not in a_vars or k not in b_vars:
            return None
        j = len(dom) - 2
        if iters[j] in a_vars:
            a_vars, b_vars = b_vars, a_vars
        if iters[j] in a_vars or iters[j] not in b_vars:
            return None
        rows = [i for i in range(j) if iters[i] in a_vars and iters[i] not in b_vars]
        return j, (rows[-1] if rows else None)

    def pad(self, sch, block, vec_axis, row_axis):
        # ViT's attention scores, [197, 64] x [64, 197]: a 197-wide tile ran at 4.5 GFLOP/s.
        # The CPU lowering pads matmul and linear to whole tiles itself (op_table's
        # _whole_tiles, without copying the rows); this pads what comes unpadded (a linear
        # whose weight is not in panels): operands copied into zero-padded buffers, the
        # result copied back.
        loops = sch.get_loops(block)
        n = extent(sch, loops[vec_axis])
        m = extent(sch, loops[row_axis]) if row_axis is not None else 1
        if n is None or m is None or n < 2 * VEC:
            return False
        vecs, lanes, rows = register_tile(n, m)
        if n % (vecs * lanes) == 0 and (row_axis is None or m % rows == 0):
            return False
        step = 2 * VEC if n > 2 * VEC else VEC  # two vectors a tile: 16 accumulators, not 8
        padded_n = -(-n // step) * step
        _, _, rows = register_tile(padded_n, m)
        padding = [1] * len(loops)
        padding[vec_axis] = VEC
        if row_axis is not None:
            padding[row_axis] = rows
        try:
            sch.pad_einsum(block, padding)
        except Exception:  # not an einsum (an operand read through an expression)
            return False
        return True

    def reduction_block(self, sch, block, n_rows, tile_columns):
        # A 7-vector tile (28x28 = 784 columns) loads 7 vectors of the panel per 14 FMAs:
        # from L2 that starves the FMAs, from L1 it does not. Measured at 28x28:
        # MobileNetV2's 192 -> 32 1x1 conv 47 -> 29 us (blocks of 64), 144 -> 32 42 -> 26 us
        # (blocks of 48), 512 -> 64 279 -> 138 us; from 128 rows on (256 -> 128) the
        # whole-reduction walk is as fast.
        stmt = sch.get(block)
        k = extent_of(stmt, len(stmt.iter_vars) - 1)
        panel_bytes = k * tile_columns * tvm.DataType(stmt.writes[0].source.dtype).bits // 8
        if n_rows is None or n_rows > 64 or tile_columns < 6 * VEC or panel_bytes <= L1_BYTES:
            return None
        return next((kc for kc in range(64, 31, -1) if k % kc == 0 and k > kc), None)

    def columns_outside_rows(self, sch, block):
        # the larger operand is the one to keep in cache: B (K x N) larger than A (M x K)
        stmt = sch.get(block)
        dims = [extent_of(stmt, i) for i in range(len(stmt.iter_vars))]
        m, n = dims[-3] if len(dims) > 2 else 1, dims[-2]
        return n > m


class Conv2d(_TiledReduction):
    """Direct NCHW conv2d (groups=1 or grouped): out[n, oc, oh, ow] += pad[n, ic, ..] *
    w[oc, ic, kh, kw]. Vectorize ow, register-tile oc."""

    name = "conv2d"

    def match(self, sch, block):
        dom = kinds(sch, block)
        stmt = sch.get(block)
        if dom != "SSSSRRR" or len(stmt.reads) != 2:
            return None
        iters = [iv.var for iv in stmt.iter_vars]
        (_, data_vars), (_, w_vars) = read_vars(stmt)
        if iters[3] in w_vars:
            data_vars, w_vars = w_vars, data_vars
        if iters[3] not in data_vars or iters[1] not in w_vars:
            return None
        if iters[1] in data_vars:  # grouped: input channel depends on oc, still fine
            return 3, 1 if extent_of(stmt, 4) > 1 else None
        return 3, 1


def extent_of(stmt: s_tir.SBlock, i: int) -> int:
    ext = stmt.iter_vars[i].dom.extent
    return int(ext) if isinstance(ext, tirx.IntImm) else 0


def finish_conv_tile(sch: s_tir.Schedule, block, local, epilogue, tile_loop, unrolled: list,
                     lanes, first_reduce) -> None:
    """The conv rules' common tail, once the tile loop is parallel and ``local`` (the
    block's accumulators, ``cache_write``) exists: the epilogue reads the accumulators
    and writes back per tile, the tile's register loops are unrolled and its lanes
    vectorized, the accumulators' zeroing split off (vectorized too)."""
    if epilogue is not None:
        sch.compute_inline(local)
        local = epilogue
    sch.reverse_compute_at(local, tile_loop, preserve_unit_loops=True)
    for loop in unrolled:
        sch.unroll(loop)
    sch.vectorize(lanes)
    init = sch.decompose_reduction(block, first_reduce)
    init_loops = sch.get_loops(init)
    if sch.get(init_loops[-1]).kind != tirx.ForKind.VECTORIZED:
        sch.vectorize(init_loops[-1])
    vectorize_inner(sch, local)


def packed_conv_block(sch: s_tir.Schedule, block, iterators: str) -> bool:
    """Whether ``block`` is a conv over a packed 5-D operand (a weight in blocks of output
    channels, or a blocked input): iterator kinds ``iterators``, reading two buffers."""
    stmt = sch.get(block)
    return kinds(sch, block) == iterators and len(stmt.reads) == 2 \
        and any(len(r.source.shape) == 5 for r in stmt.reads)


def packed_conv_tile(n_oc: int, n_ow: int, lanes: int = VEC) -> tuple[int, int]:
    """(vectors of ``lanes`` output channels, output columns) of a conv's register tile.
    Both divide their axis (no tails in the unrolled tile); rows x vectors accumulators
    stay within 24 of AVX-512's 32 registers (the rest hold weights and the broadcast);
    the most accumulators win, then rows in whole 8-wide vectors (the NCHW write-back
    stores each channel's row of the tile as one vector: 4-wide rows made MobileNetV2's
    16 -> 96 expansion at 112x112 spend as long writing as computing), then the fewest
    loads per FMA (vectors + rows)."""
    best = (0, False, 0, 1, 1)
    for vecs in (1, 2, 3, 4, 6):
        if n_oc % (vecs * lanes):
            continue
        for rows in range(1, min(n_ow, 24) + 1):
            if n_ow % rows or rows * vecs > 24:
                continue
            score = (rows * vecs, rows % 8 == 0, -(rows + vecs))
            if score > best[:3]:
                best = (*score, vecs, rows)
    return best[3], best[4]


class PackedConv2d(_TiledReduction):
    """conv2d over a weight packed [OC / 16, IC, KH, KW, 16] (``lower.CONV_PACKED``):
    vectorize 16 output channels, register-tile output columns, one input value
    broadcast per FMA, so strides and narrow outputs (7x7) cost nothing extra. Tile loop
    order (n, oc, oh, ow): consecutive tiles of one thread reuse one weight panel."""

    name = "conv2d_packed"

    def match(self, sch, block):
        return (1, 3) if packed_conv_block(sch, block, "SSSSRRR") else None

    def tile(self, sch, block, epilogue, vec_axis, row_axis):
        n, oc, oh, ow, *reduce_loops = sch.get_loops(block)
        stmt = sch.get(block)
        vecs, rows = packed_conv_tile(extent_of(stmt, 1), extent_of(stmt, 3))
        oc_outer, oc_mid, oc_inner = sch.split(oc, [None, vecs, VEC])
        ow_outer, ow_inner = sch.split(ow, [None, rows])
        sch.reorder(n, oc_outer, oh, ow_outer, *reduce_loops, ow_inner, oc_mid, oc_inner)
        tile_loop = sch.fuse(n, oc_outer, oh, ow_outer)
        sch.parallel(tile_loop)
        local = sch.cache_write(block, 0, "local")
        # accumulators channel-last, so each vector of 16 channels is contiguous
        sch.transform_layout(block, ("write", 0), lambda b, c, i, j: (b, i, j, c))
        finish_conv_tile(sch, block, local, epilogue, tile_loop, [ow_inner, oc_mid], oc_inner,
                         reduce_loops[0])


class BlockedConv2d(_TiledReduction):
    """conv2d into NCHWc (``op_table._conv2d_blocked``): out[n, c, i, j, k] +=
    x[n, rc / b, .., rc % b] * w[c, rc, ry, rx, k]. The packed conv's tile (the channels
    of a block vectorized, output columns register-tiled) without its transposed
    write-back: the tile's channels are contiguous in the result. The reduction walks
    input channels outermost, 16 of one block at a time, then the window, as the packed
    weight lies in memory (window taps outside the channels ran a 3x3 conv at 7x7 30%
    slower: its 2.4 MB weight panel was read at a stride)."""

    name = "conv2d_blocked"

    @staticmethod
    def pixels_outermost(stmt: s_tir.SBlock) -> bool:
        """Whether consecutive tiles walk the output channel blocks of one pixel tile
        (rather than the pixels of one channel block). A conv that reduces channels
        (ResNet-50's 256 -> 64 and 512 -> 128 1x1s) reads more than it writes: pixels
        outermost, each thread reads its half of the input once, and the weights it reads
        again per pixel tile stay in L2 (9-15% faster in the model). Where the output has
        more channels, its tiles would write (and read a residual) across every channel
        plane at once: a 64 -> 256 1x1 + add ran 20% slower so."""
        in_channels = extent_of(stmt, 5)
        out_channels = extent_of(stmt, 1) * extent_of(stmt, 4)
        taps = extent_of(stmt, 6) * extent_of(stmt, 7)
        weight_bytes = in_channels * out_channels * taps * 4
        return in_channels >= 2 * out_channels and weight_bytes <= L2_BYTES

    def match(self, sch, block):
        return (4, 3) if packed_conv_block(sch, block, "SSSSSRRR") else None

    def tile(self, sch, block, epilogue, vec_axis, row_axis):
        n, c, i, j, k, rc, ry, rx = sch.get_loops(block)
        stmt = sch.get(block)
        lanes = extent_of(stmt, 4)
        vecs, rows = packed_conv_tile(extent_of(stmt, 1) * lanes, extent_of(stmt, 3), lanes)
        c_outer, c_inner = sch.split(c, [None, vecs])
        j_outer, j_inner = sch.split(j, [None, rows])
        channels = [rc]
        column = stmt.iter_vars[3].var
        data = next(buf for buf, used in read_vars(stmt) if column in used)
        in_lanes = int(data.shape[-1]) if len(data.shape) == 5 else 0
        if in_lanes and extent_of(stmt, 5) % in_lanes == 0:  # rc / b, rc % b: no div per load
            channels = list(sch.split(rc, [None, in_lanes]))
        if self.pixels_outermost(stmt):
            sch.reorder(n, i, j_outer, c_outer, *channels, ry, rx, j_inner, c_inner, k)
            tile_loop = sch.fuse(n, i, j_outer, c_outer)
        else:
            sch.reorder(n, c_outer, i, j_outer, *channels, ry, rx, j_inner, c_inner, k)
            tile_loop = sch.fuse(n, c_outer, i, j_outer)
        sch.parallel(tile_loop)
        local = sch.cache_write(block, 0, "local")
        finish_conv_tile(sch, block, local, epilogue, tile_loop, [j_inner, c_inner], k,
                         channels[0])


class WinogradConv2d(Rule):
    """A Winograd conv (``op_table._conv2d_winograd``), its three computes one after the
    other, each parallel over all its work:

    - input transform: per (tile, block of 16 or 8 input channels), the (m + 2)^2 positions
      unrolled (each one's ``if_then_else`` choice folds away, the tile's loads are
      shared) and the channels vectorized;
    - products: the blocked 1x1 conv's register tile (``packed_conv_tile``: vectors of
      output channels x tiles), per position, reducing over the input channels;
    - output transform, with the kernel's epilogue inlined: per output channel block and
      row of tiles, each tile's m x m outputs unrolled, the channels vectorized.
    """

    name = "conv2d_winograd"
    STEPS = ("T_wino_input", "T_wino_product", "T_wino_output")

    def apply(self, func, target):
        sch = s_tir.Schedule(func)
        blocks = root_blocks(sch)
        names = [sch.get(b).name_hint for b in blocks]
        if not all(step in names for step in self.STEPS):
            return None
        first, product, output = (names.index(step) for step in self.STEPS)
        if inline_all(sch, blocks[:first]):  # views and casts of the input
            return None
        if inline_all(sch, blocks[output:-1]):  # the epilogue collapses into the last block
            return None
        self.input_transform(sch, blocks[first])
        self.products(sch, blocks[product])
        self.output_transform(sch, blocks[-1], self.output_tile(sch, blocks[product]))
        return sch

    @staticmethod
    def output_tile(sch: s_tir.Schedule, product) -> int:
        positions = extent_of(sch.get(product), 0)
        return round(positions ** 0.5) - 2

    @staticmethod
    def input_transform(sch: s_tir.Schedule, block) -> None:
        pos, tile, channel = sch.get_loops(block)
        n_channels = extent_of(sch.get(block), 2)
        vector = next((n for n in (VEC, 8) if n_channels % n == 0), 1)
        blocks, lanes = sch.split(channel, [None, vector])
        sch.reorder(tile, blocks, pos, lanes)
        sch.parallel(sch.fuse(tile, blocks))
        sch.unroll(pos)
        sch.vectorize(lanes)

    @staticmethod
    def products(sch: s_tir.Schedule, block) -> None:
        pos, c, tile, k, rc = sch.get_loops(block)
        stmt = sch.get(block)
        lanes = extent_of(stmt, 3)
        vecs, rows = packed_conv_tile(extent_of(stmt, 1) * lanes, extent_of(stmt, 2), lanes)
        c_outer, c_inner = sch.split(c, [None, vecs])
        t_outer, t_inner = sch.split(tile, [None, rows])
        sch.reorder(pos, c_outer, t_outer, rc, t_inner, c_inner, k)
        tile_loop = sch.fuse(pos, c_outer, t_outer)
        sch.parallel(tile_loop)
        local = sch.cache_write(block, 0, "local")
        finish_conv_tile(sch, block, local, None, tile_loop, [t_inner, c_inner], k, rc)

    @staticmethod
    def output_transform(sch: s_tir.Schedule, block, m: int) -> None:
        n, c, i, j, k = sch.get_loops(block)
        tile_row, row = sch.split(i, [None, m])
        tile_col, col = sch.split(j, [None, m])
        sch.reorder(n, c, tile_row, tile_col, row, col, k)
        sch.parallel(sch.fuse(n, c, tile_row))
        sch.unroll(row)
        sch.unroll(col)
        sch.vectorize(k)


class BlockedDepthwiseConv2d(_TiledReduction):
    """A depthwise conv into NCHWc (``op_table._depthwise_blocked``): out[n, c, i, j, k]
    += x[n, c, .., .., k] * w[c, 0, ry, rx, k]. The channels of a block are the
    vector; a tile is one output row's columns (up to 14, dividing the row), each
    accumulated over the window taps with one weight vector per tap."""

    name = "depthwise_blocked"
    MAX_COLUMNS = 14  # accumulators of a tile: 14 + the weight and a tap within 16 registers

    def match(self, sch, block):
        stmt = sch.get(block)
        if kinds(sch, block) != "SSSSSRR" or len(stmt.reads) != 2:
            return None
        if len(stmt.writes[0].source.shape) != 5:
            return None
        return 4, 3

    def tile(self, sch, block, epilogue, vec_axis, row_axis):
        n, c, i, j, k, ry, rx = sch.get_loops(block)
        n_cols = extent_of(sch.get(block), 3)
        columns = max(d for d in range(1, min(n_cols, self.MAX_COLUMNS) + 1) if n_cols % d == 0)
        j_outer, j_inner = sch.split(j, [None, columns])
        sch.reorder(n, c, i, j_outer, ry, rx, j_inner, k)
        sch.parallel(sch.fuse(n, c, i))
        local = sch.cache_write(block, 0, "local")
        finish_conv_tile(sch, block, local, epilogue, j_outer, [j_inner], k, ry)


class DepthwiseConv2d(_TiledReduction):
    """Depthwise NCHW conv2d: out[n, c, oh, ow] += pad[n, c, ..] * w[c, 0, kh, kw]
    (topi's SSSSRR form, or grouped conv with one input channel per group; a stride-2
    conv from the CPU lowering reads the even and the odd input columns apart)."""

    name = "depthwise_conv2d"
    pads_in_tile = True

    def match(self, sch, block):
        dom = kinds(sch, block)
        stmt = sch.get(block)
        if dom not in ("SSSSRR", "SSSSRRR") or len(stmt.reads) not in (2, 3):
            return None
        if dom == "SSSSRRR" and extent_of(stmt, 4) != 1:
            return None
        iters = [iv.var for iv in stmt.iter_vars]
        reads = [used for _, used in read_vars(stmt)]
        data = [used for used in reads if iters[3] in used]
        weights = [used for used in reads if iters[3] not in used]
        if len(weights) > 1 or any(iters[1] not in used for used in data):
            return None
        if not weights and not self.whole_rows(sch, block):  # a max pool: only the CPU
            return None  # lowering's plane windows (op_table._plane_windows)
        return 3, 2

    def row_tile(self, rows, n_rows):
        # output rows share each tap's weight; a row tail would be predicated inside the
        # tap loop, so the tile takes the most rows that divide the output's height
        return next(r for r in range(rows, 0, -1) if not n_rows or n_rows % r == 0)

    def fits(self, sch, block, epilogue):
        # the CPU lowering computes whole-vector rows (op_table._plane_windows);
        # the write-back stores the real columns, in power-of-two vectors
        if fits_in_tiles(sch, block, epilogue):
            return True
        return self.whole_rows(sch, block) and not has_if_then_else(sch, epilogue) \
            and len(sch.get(epilogue).writes[0].source.shape) == 4

    @staticmethod
    def whole_rows(sch, block) -> bool:
        n_cols = extent_of(sch.get(block), 3)
        return 0 < n_cols <= MAX_DEPTHWISE_ROW and whole_vector_row(n_cols) == n_cols

    @staticmethod
    def tile_rows(n_rows: int, vectors: int, lanes: int) -> int:
        """Output rows per tile: the most that divide the height within the accumulator
        budget. Measured on MobileNetV2's planes: 14x14 ran 35% faster in tiles of 7 rows
        than in one of 14 (24 accumulators), 56x56 9% faster in 2 rows than in 4, while
        112-wide rows (7 vectors) did best with up to 3 rows (21 accumulators). A plane of
        half-vector rows (7x7) is fastest a row at a time, 20% faster than all 7 rows
        together."""
        if lanes < VEC:
            return 1
        budget = max(DEPTHWISE_ACCUMULATORS, 3 * vectors)
        return max(r for r in range(1, n_rows + 1) if n_rows % r == 0 and r * vectors <= budget)

    def tile(self, sch, block, epilogue, vec_axis, row_axis):
        """One channel per parallel iteration: its padded input plane computed there (in
        L1, not a pass over the whole padded tensor before the conv), then tiles of whole
        output rows, each row whole vectors."""
        stmt = sch.get(block)
        n_rows, n_cols = extent_of(stmt, 2), extent_of(stmt, 3)
        pads = [p for p in sch.get_producers(block) if has_if_then_else(sch, p)]
        if not n_rows or not self.whole_rows(sch, block):
            for pad in pads:
                vectorize_block(sch, pad)
            return super().tile(sch, block, epilogue, vec_axis, row_axis)
        b, c, i, j, *reduce_loops = sch.get_loops(block)
        lanes = min(n_cols, VEC)
        vectors = n_cols // lanes
        rows = self.tile_rows(n_rows, vectors, lanes)
        i_outer, i_inner = sch.split(i, [None, rows])
        j_outer, j_inner = sch.split(j, [None, lanes])
        sch.reorder(b, c, i_outer, *reduce_loops, i_inner, j_outer, j_inner)
        channel = sch.fuse(b, c)
        sch.parallel(channel)
        local = sch.cache_write(block, 0, "local")
        if epilogue is not None:
            sch.compute_inline(local)
            local = epilogue
        sch.reverse_compute_at(local, i_outer, preserve_unit_loops=True)
        for pad in pads:
            sch.compute_at(pad, channel, preserve_unit_loops=True)
            vectorize_padding(sch, pad, parallel=False)
        sch.unroll(i_inner)
        sch.unroll(j_outer)
        sch.vectorize(j_inner)
        column = stmt.iter_vars[3].var
        if sum(column in used for _, used in read_vars(stmt)) > 1:  # even and odd planes:
            sch.unroll(reduce_loops[-1])  # which one a tap reads is known in each copy
        init = sch.decompose_reduction(block, reduce_loops[0])
        init_loop = sch.get_loops(init)[-1]
        if sch.get(init_loop).kind != tirx.ForKind.VECTORIZED:
            sch.vectorize(init_loop)
        vector_pieces(sch, sch.get_loops(local)[-1])


class Reduction(Rule):
    """Softmax, layer norm, pooling, sum/mean, attention: the leading spatial axes common
    to all blocks run in parallel, every block computed under them; spatial blocks
    vectorized inside. Injective producers of the inputs (pad, cast) are inlined.

    A reduction over the contiguous last axis (softmax's max and sum, layer norm's mean
    and variance) is split into VEC partial results (rfactor) accumulated as one vector,
    then summed: the scalar loop was a chain of dependent max/add, 4 cycles each. A lone
    reduction with a spatial innermost axis (pooling windows) vectorizes that axis."""

    name = "reduction"

    def apply(self, func, target):
        sch = s_tir.Schedule(func)
        blocks = root_blocks(sch)
        if all(is_spatial(sch, b) for b in blocks):
            return None
        first = next(i for i, b in enumerate(blocks) if not is_spatial(sch, b))
        if first == len(blocks) - 1 and self.is_window(sch, blocks[-1]):
            # pooling: a padding block stays, computed once; inlined, its bounds test on
            # every window element made TVM run ResNet-50's max pool scalar (0.6 ms)
            pads = [b for b in blocks[:first] if has_if_then_else(sch, b)]
            inline_all(sch, [b for b in blocks[:first] if b not in pads])
            for b in pads:
                vectorize_block(sch, b)
            self.vectorize_window(sch, blocks[-1])
            return sch
        blocks = inline_all(sch, blocks[:first]) + blocks[first:]
        lead = self.row_loops(sch, blocks, min(leading_spatial(kinds(sch, b)) for b in blocks))
        if lead == 0:
            return None
        partials = [rf for b in blocks if (rf := self.rfactor_last_axis(sch, b)) is not None]
        blocks = root_blocks(sch)
        last = blocks[-1]
        loops = sch.get_loops(last)
        outer = sch.fuse(*loops[:lead]) if lead > 1 else loops[0]
        sch.parallel(outer)
        for b in reversed(blocks[:-1]):
            sch.compute_at(b, outer, preserve_unit_loops=True)
        for rf in partials:
            self.vectorize_partials(sch, rf)
        for b in blocks:
            if b not in partials and is_spatial(sch, b) and len(sch.get_loops(b)) > 1:
                vectorize_inner(sch, b)
        return sch

    @staticmethod
    def row_loops(sch: s_tir.Schedule, blocks: list, lead: int) -> int:
        """How many leading loops of the last block to run in parallel: at most the rows
        the reductions produce. An epilogue of another rank (layer norm's [1, 128, 768]
        viewed as [128, 768]) has ``lead`` loops covering every element; computed under
        those, each row's statistics would be recomputed once per element (GPT-2's layer
        norms ran 70x slower). Fewer loops, whose extents divide the rows, keep a row's
        reduction computed once."""
        rows = [_leading_elements(sch, b) for b in blocks if not is_spatial(sch, b)]
        extents = [extent(sch, lp) for lp in sch.get_loops(blocks[-1])[:lead]]
        if not rows or None in rows or None in extents:
            return lead
        count, elements = 0, 1
        for n in extents:
            if min(rows) % (elements * n):
                break
            count, elements = count + 1, elements * n
        return count

    @staticmethod
    def rfactor_last_axis(sch: s_tir.Schedule, block):
        """Split the block's innermost reduce loop into VEC partials; the partial block
        (its VEC-wide buffer last), or None where the axis does not divide."""
        dom = kinds(sch, block)
        if not dom.endswith("R") or "R" in dom.rstrip("R").lstrip("S"):
            return None
        n = extent(sch, sch.get_loops(block)[-1])
        if n is None or n % VEC or n < 2 * VEC:
            return None
        _, lanes = sch.split(sch.get_loops(block)[-1], [None, VEC])
        return sch.rfactor(lanes, dom.count("S"))

    @staticmethod
    def vectorize_partials(sch: s_tir.Schedule, rf) -> None:
        """Under compute_at the partial block's loops are (lanes, spatial.., reduce):
        move the reduce loop outside the lanes and vectorize them."""
        loops = sch.get_loops(rf)
        tile = next(i for i, lp in enumerate(loops) if sch.get(lp).kind == tirx.ForKind.PARALLEL)
        inner = loops[tile + 1:]
        sch.reorder(inner[-1], inner[0])
        loops = sch.get_loops(rf)
        sch.vectorize(loops[-1])
        sch.decompose_reduction(rf, loops[tile + 1])

    @staticmethod
    def is_window(sch: s_tir.Schedule, block) -> bool:
        """Whether ``block`` is out[.., i, j] = reduce over a window (pooling), j at least
        8 wide."""
        dom = kinds(sch, block)
        spatial = leading_spatial(dom)
        loops = sch.get_loops(block)
        if dom.rstrip("R") != "S" * spatial or spatial < 2 or len(loops) != len(dom):
            return False
        n = extent(sch, loops[spatial - 1])
        return n is not None and n >= 8

    @staticmethod
    def vectorize_window(sch: s_tir.Schedule, block) -> None:
        """A window reduction (``is_window``): parallel over the outer spatial axes, the
        window loops inside, vector lanes along j."""
        spatial = leading_spatial(kinds(sch, block))
        loops = sch.get_loops(block)
        n = extent(sch, loops[spatial - 1])
        lanes = next((k for k in (VEC, 8) if n % k == 0), VEC if n > 2 * VEC else 8)
        j_outer, j_inner = sch.split(loops[spatial - 1], [None, lanes])
        sch.reorder(j_outer, *loops[spatial:], j_inner)
        sch.parallel(sch.fuse(*loops[:spatial - 1], j_outer))
        sch.vectorize(j_inner)
        sch.decompose_reduction(block, loops[spatial])


def _leading_elements(sch: s_tir.Schedule, block) -> int | None:
    """The number of elements of ``block``'s leading spatial axes (None: symbolic)."""
    count = 1
    for iv in sch.get(block).iter_vars[:leading_spatial(kinds(sch, block))]:
        if not isinstance(iv.dom.extent, tirx.IntImm):
            return None
        count *= int(iv.dom.extent)
    return count


class Fallback(Rule):
    """Every root block: fuse its leading spatial loops and run them in parallel; a block
    without reduction also gets its innermost VEC elements vectorized."""

    name = "fallback"

    def apply(self, func, target):
        sch = s_tir.Schedule(func)
        for block in root_blocks(sch):
            dom = kinds(sch, block)
            loops = sch.get_loops(block)
            lead = leading_spatial(dom)
            if lead == 0 or len(loops) != len(dom):
                continue
            if lead == len(dom):
                vectorize_block(sch, block)
            else:
                sch.parallel(sch.fuse(*loops[:lead]) if lead > 1 else loops[0])
        return sch


RULES: list[Rule] = [WinogradConv2d(), Matmul(), BlockedConv2d(), BlockedDepthwiseConv2d(),
                     PackedConv2d(), Conv2d(), DepthwiseConv2d(), Reduction(), Injective()]
FALLBACK = Fallback()
