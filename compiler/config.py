"""All of dscompile's configuration in one place: the options of one compilation,
with debug switches read from environment variables.

- ``DSCOMPILE_VERIFY=1``: run the IR verifier after every pass (tests always do).
- ``DSCOMPILE_DUMP_DIR=DIR``: dump the IR after each pass that changed it into DIR.
- ``DSCOMPILE_CHECK=raise|warn|off``: the default of the numerics guard.
- ``DSCOMPILE_TUNING_DIR=DIR``: the tuning database (default ``~/.cache/dscompile/tuning``,
  see docs/tuning.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

CHECK_MODES = ("raise", "warn", "off")


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes", "on")


@dataclass
class CompileOptions:
    """What ``dscompile`` was asked to do; one object travels through the pipeline."""

    target: Any = "cpu"
    opt_level: int = 2
    passes: tuple = ()  # user passes, run after the built-in rewrites, before fusion
    check: str = field(default_factory=lambda: os.environ.get("DSCOMPILE_CHECK", "raise"))
    dtype: str | None = None  # "float16" / "bfloat16": mixed precision
    verify: bool = field(default_factory=lambda: _env_flag("DSCOMPILE_VERIFY"))
    dump_dir: str | None = field(default_factory=lambda: os.environ.get("DSCOMPILE_DUMP_DIR"))
    schedule: bool = True  # apply our schedule rules (off only for debugging)
    tune: bool | None = None  # choose schedules by measurement; None: on at opt_level 3
    trials: int | None = None  # MetaSchedule samples per kernel (None: the default, 32)
    rpc: Any = None  # measure on other machines: "key@tracker-host:port"

    def __post_init__(self) -> None:
        if self.opt_level not in (0, 1, 2, 3):
            raise ValueError(f"opt_level must be 0, 1, 2 or 3, got {self.opt_level!r}")
        if self.check not in CHECK_MODES:
            raise ValueError(f"check must be one of {CHECK_MODES}, got {self.check!r}")
        if self.dtype not in (None, "float32", "float16", "bfloat16"):
            raise ValueError(f"dtype must be float32, float16 or bfloat16, got {self.dtype!r}")
        self.passes = tuple(self.passes)
        if self.tune is None:
            self.tune = self.opt_level == 3  # O3 is O2 plus tuning
        if self.trials is not None and (not isinstance(self.trials, int) or self.trials < 0):
            raise ValueError(f"trials must be a non-negative int, got {self.trials!r}")
