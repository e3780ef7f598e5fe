"""Automatic operator scheduling: for each fused kernel, measure its candidates (our rule,
a MetaSchedule-tuned schedule, on CPU a oneDNN library call) on the target and keep the
fastest, remembering the decision in a tuning database on disk. See docs/tuning.md.

``tune.py`` is the driver, read it first; ``candidates``, ``measure``, ``chooser``,
``database``, ``metaschedule``, ``library`` (+ ``library_calls``), ``rpc`` and
``progress`` are its steps. Importing this package is cheap: MetaSchedule is imported
only when a kernel is searched.
"""

from backends.tvm.tuning.tune import DEFAULT_TRIALS, TuningOptions, options_from, tune_module

__all__ = ["DEFAULT_TRIALS", "TuningOptions", "options_from", "tune_module"]
