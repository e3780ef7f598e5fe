"""Liveness of buffers over the steps of an execution order.

A buffer is live on the closed interval ``[start, end]`` of step indices: from the step
that writes it to the last step that reads it (through views too). During step ``i``
every buffer with ``start <= i <= end`` must be resident, so the largest total at any
step is a lower bound for any allocation that honours these lifetimes.
"""

from __future__ import annotations

from collections.abc import Mapping

from compiler.planning.steps import PlanInvariantError, Step

Span = tuple[int, int]  # (start, end), both inclusive step indices


def live_intervals(steps: list[Step], keep_to_end: set[str] = frozenset()) -> dict[str, Span]:
    """``[def_step, last_use_step]`` for each step's output; ``keep_to_end`` buffers (the
    graph outputs) stay live through the last step."""
    index = {s.name: i for i, s in enumerate(steps)}
    spans = {s.name: [i, i] for i, s in enumerate(steps)}
    for i, step in enumerate(steps):
        for read in step.reads:
            spans[read][1] = max(spans[read][1], i)
    for name in keep_to_end & spans.keys():
        spans[name][1] = len(steps) - 1
    result = {name: (start, end) for name, (start, end) in spans.items()}
    check_intervals(result, index)
    return result


def live_bytes(spans: Mapping[str, Span], sizes: Mapping[str, int], n_steps: int) -> list[int]:
    """Total bytes of the buffers live at each step (a difference array over the spans)."""
    delta = [0] * (n_steps + 1)
    for name, (start, end) in spans.items():
        delta[start] += sizes[name]
        delta[end + 1] -= sizes[name]
    totals, running = [], 0
    for d in delta[:n_steps]:
        running += d
        totals.append(running)
    return totals


def lower_bound(spans: Mapping[str, Span], sizes: Mapping[str, int], n_steps: int) -> int:
    """The largest total live at any step: no allocation of these lifetimes needs less."""
    return max(live_bytes(spans, sizes, n_steps), default=0)


def overlaps(a: Span, b: Span) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


def check_intervals(spans: Mapping[str, Span], index: Mapping[str, int]) -> None:
    """Each buffer starts where its step is and never ends before it starts."""
    for name, (start, end) in spans.items():
        if start != index[name] or end < start:
            raise PlanInvariantError(f"buffer %{name} has lifetime [{start}, {end}]")
