"""A plain-text progress bar with an estimate of the time left, on stderr.

Tuning a model takes minutes: the user should see how far it is and how long is left.
The bar redraws one line (``\\r``) and only on a terminal: logs and CI output stay clean.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

WIDTH = 24


def format_seconds(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class Progress:
    """``total`` units of work (trials and measurements); ``advance`` after each.

    The estimate is elapsed time per unit done times the units left: units differ in cost
    (a MetaSchedule trial builds a kernel, a measurement only runs one) but average out
    over a model.
    """

    def __init__(self, total: int, label: str = "tuning", *, stream: TextIO | None = None,
                 enabled: bool | None = None):
        self.total = max(total, 1)
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", lambda: False)
        self.enabled = isatty() if enabled is None else enabled
        self.done = 0
        self.start = time.monotonic()
        self._drawn = False

    def eta(self) -> float | None:
        """Seconds left, or None before anything is done."""
        if self.done == 0:
            return None
        elapsed = time.monotonic() - self.start
        return elapsed / self.done * max(self.total - self.done, 0)

    def line(self, note: str = "") -> str:
        filled = int(WIDTH * min(self.done, self.total) / self.total)
        eta = self.eta()
        left = "ETA --" if eta is None else f"ETA {format_seconds(eta)}"
        text = (f"{self.label} [{'#' * filled}{'-' * (WIDTH - filled)}] "
                f"{min(self.done, self.total)}/{self.total}  {left}")
        return f"{text}  {note}" if note else text

    def advance(self, units: int = 1, note: str = "") -> None:
        self.done += units
        self.draw(note)

    def grow(self, units: int) -> None:
        """More work than first counted (a kernel's candidates are known only when it is
        reached)."""
        self.total += units

    def draw(self, note: str = "") -> None:
        if self.enabled:
            self.stream.write("\r" + self.line(note)[:160].ljust(100))
            self.stream.flush()
            self._drawn = True

    def close(self) -> None:
        if self.enabled and self._drawn:
            spent = format_seconds(time.monotonic() - self.start)
            self.stream.write("\r" + f"{self.label}: done in {spent}".ljust(100) + "\n")
            self.stream.flush()
