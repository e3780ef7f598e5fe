"""Choose, among a kernel's candidates, the fastest by measurement.

The measuring function is a parameter: the compiler passes one that times each candidate
on the target (``measure.py``), tests pass candidates of known cost. The first candidate
is the baseline (our rule): another replaces it only when it is faster by more than
``tolerance`` (2%), since within the noise of a shared machine the rule, which needs no
tuning record and no library, is the better program to keep.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

TOLERANCE = 0.02


@dataclass
class Decision:
    """What was chosen and why: the median time of every candidate that ran, and the
    error of every one that could not."""

    chosen: str
    times_ms: dict[str, float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def fastest(times_ms: dict[str, float], baseline: str | None,
            tolerance: float = TOLERANCE) -> str:
    """The name with the smallest time; ``baseline`` unless beaten by ``tolerance``."""
    best = min(times_ms, key=lambda name: times_ms[name])
    if baseline in times_ms and best != baseline \
            and times_ms[best] > times_ms[baseline] * (1 - tolerance):
        return baseline
    return best


def choose(candidates: Sequence[Any], measure: Callable[[Any], float],
           tolerance: float = TOLERANCE) -> tuple[Any, Decision]:
    """Measure each candidate (each has a ``name``) and return the chosen one with the
    decision. A candidate whose measurement raises is left out (its error recorded); the
    baseline is ``candidates[0]``.

    Raises
    ------
    ValueError
        When no candidate could be measured.
    """
    if not candidates:
        raise ValueError("no candidates to choose from")
    times: dict[str, float] = {}
    errors: dict[str, str] = {}
    for candidate in candidates:
        try:
            times[candidate.name] = float(measure(candidate))
        except Exception as e:  # a candidate that fails to build or run is not chosen
            log.debug("candidate %s failed: %s", candidate.name, e)
            errors[candidate.name] = str(e).splitlines()[0] if str(e) else type(e).__name__
    if not times:
        raise ValueError(f"no candidate could be measured: {errors}")
    chosen = fastest(times, candidates[0].name, tolerance)
    by_name = {c.name: c for c in candidates}
    return by_name[chosen], Decision(chosen, times, errors)
