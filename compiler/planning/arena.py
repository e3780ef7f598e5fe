"""A static arena: every planned buffer gets a byte offset in one allocation.

Three small steps, then the check: (1) in-place reuse: an elementwise kernel writes its
output over an input that dies at that kernel; (2) each chain of in-place buffers becomes
one *block* living from its first write to its last read; (3) blocks are placed one by
one, best-fit (the smallest gap between time-overlapping blocks that fits), at
``ALIGNMENT``-byte offsets, biggest first (greedy-by-size); two other fixed orders and a
few seeded random ones are tried, and the smallest arena kept. ``check_no_overlap`` then
asserts that buffers live at the same step share no byte, except an in-place pair at the
step that hands over.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from typing import Protocol

from compiler.planning.liveness import Span, lower_bound, overlaps
from compiler.planning.steps import PlanInvariantError, Step

ALIGNMENT = 64  # bytes; a cache line, and enough for any vector load


def align(nbytes: int) -> int:
    return -(-nbytes // ALIGNMENT) * ALIGNMENT


def choose_inplace(steps: list[Step], spans: Mapping[str, Span],
                   planned: set[str]) -> dict[str, str]:
    """``{output: input}`` for kernels that overwrite an input dying at them. Both must
    be arena buffers; each input is given away at most once."""
    inplace: dict[str, str] = {}
    for i, step in enumerate(steps):
        if step.name not in planned:
            continue
        for read in step.overwritable:
            if read in planned and spans[read][1] == i and read not in inplace.values():
                inplace[step.name] = read
                break
    return inplace


def merge_inplace_chains(spans: Mapping[str, Span], sizes: Mapping[str, int],
                         inplace: Mapping[str, str]) -> tuple[dict[str, str], dict[str, Span]]:
    """Each buffer's block (the head of its in-place chain) and each block's lifetime."""
    block_of: dict[str, str] = {}
    for name in sorted(spans, key=lambda n: spans[n][0]):  # an input is written first
        block_of[name] = block_of[inplace[name]] if name in inplace else name
    block_spans: dict[str, Span] = {}
    for name, block in block_of.items():
        start, end = block_spans.get(block, spans[name])
        block_spans[block] = (min(start, spans[name][0]), max(end, spans[name][1]))
        if sizes[name] != sizes[block]:
            raise PlanInvariantError(f"in-place %{name} differs in size from %{block}")
    return block_of, block_spans


# Orders to place blocks in; each is tried and the smallest arena kept. Size first is
# TFLite's greedy-by-size; the others settle long-lived blocks before they fragment.
PLACEMENT_ORDERS = {
    "size": lambda span, size: (-size, span[0]),
    "area": lambda span, size: (-size * (span[1] - span[0] + 1), span[0]),
    "lifetime": lambda span, size: (-(span[1] - span[0]), -size, span[0]),
}
SHUFFLE_BUDGET = 2_000_000  # block pairs examined by random placement orders, at most
MAX_SHUFFLES = 256


def allocate(spans: Mapping[str, Span], sizes: Mapping[str, int]) -> tuple[dict[str, int], int]:
    """Best-fit offsets for ``spans``' buffers; returns the offsets and the arena size.

    The fixed placement orders go first; then seeded random orders, within a budget,
    until one meets the lower bound (no allocation can beat it, so the search stops)."""
    bound = lower_bound(spans, {n: align(sizes[n]) for n in spans},
                        1 + max((end for _, end in spans.values()), default=-1))
    names = sorted(spans)
    orders = [sorted(names, key=lambda n, key=key: (*key(spans[n], sizes[n]), n))
              for key in PLACEMENT_ORDERS.values()]
    best = min((_place(order, spans, sizes) for order in orders), key=lambda r: r[1])
    rng = random.Random(0)
    for _ in range(min(MAX_SHUFFLES, SHUFFLE_BUDGET // max(1, len(names) ** 2))):
        if best[1] <= bound:
            break
        rng.shuffle(names)
        best = min(best, _place(names, spans, sizes), key=lambda r: r[1])
    return best


def _place(order: list[str], spans: Mapping[str, Span],
           sizes: Mapping[str, int]) -> tuple[dict[str, int], int]:
    placed: list[tuple[int, int, Span]] = []  # (offset, aligned size, span)
    offsets: dict[str, int] = {}
    for name in order:
        need = align(sizes[name])
        busy = sorted((off, off + size) for off, size, span in placed
                      if overlaps(span, spans[name]))
        offsets[name] = _best_fit(busy, need)
        placed.append((offsets[name], need, spans[name]))
    arena = max((off + size for off, size, _ in placed), default=0)
    return offsets, arena


def _best_fit(busy: list[tuple[int, int]], need: int) -> int:
    """The start of the smallest free gap of at least ``need`` bytes below the busy ranges'
    top, or the top itself."""
    best: tuple[int, int] | None = None  # (gap size, offset)
    top = 0
    for lo, hi in busy:
        if lo - top >= need and (best is None or lo - top < best[0]):
            best = (lo - top, top)
        top = max(top, hi)
    return best[1] if best else top


class _Placed(Protocol):
    name: str
    size: int
    offset: int | None
    start: int
    end: int
    inplace_of: str | None


def check_no_overlap(buffers: Iterable[_Placed]) -> None:
    """Buffers live at a common step occupy disjoint ``[offset, offset + size)`` ranges;
    the one exception is an in-place pair at the step where the input dies."""
    placed = sorted((b for b in buffers if b.offset is not None and b.size > 0),
                    key=lambda b: b.offset)
    for i, a in enumerate(placed):
        for b in placed[i + 1:]:
            if b.offset >= a.offset + a.size:
                break  # sorted by offset: no later buffer reaches back into a
            if overlaps((a.start, a.end), (b.start, b.end)) and not _handover(a, b):
                raise PlanInvariantError(
                    f"%{a.name} [{a.offset}, +{a.size}) steps {a.start}..{a.end} overlaps "
                    f"%{b.name} [{b.offset}, +{b.size}) steps {b.start}..{b.end}")


def _handover(a: _Placed, b: _Placed) -> bool:
    first, second = (a, b) if b.inplace_of == a.name else (b, a)
    return (second.inplace_of == first.name and first.end == second.start
            and first.offset == second.offset)
