"""The MetaSchedule candidate: search schedules for one kernel with a bounded number of
trials, and replay the best one later from its trace (no search).

Three things differ from ``ms.tune_tir``'s defaults, each because of this TVM build
(apache-tvm 0.27.0.post1 with tvm-ffi 0.1.15): its JSON serializer segfaults on any object
holding a dtype (``tvm.ir.save_json(tvm.ir.PrimType("int32"))``), and three MetaSchedule
paths go through it:

- the LocalBuilder pickles each IRModule to its worker processes: we build in-process;
- the JSON database stores workloads as JSON: we keep records in memory and store the
  winner's trace (plain lists and strings) in our own database;
- the evolutionary and replay-trace strategies, and the MutateComputeLocation and
  MutateParallel mutators, crash while initializing: we search with ``replay-func``
  (random samples of the design space, each post-processed), which is also the useful
  strategy without xgboost for a cost model, at a few dozen trials.

Local trials are timed in-process (``time_evaluator`` on the built kernel); an RPC runner
(``rpc.py``) sends them to the tracker's machines instead.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

import tvm
from tvm import s_tir, tirx
from tvm.ir.utils import derived_object
from tvm.s_tir import meta_schedule as ms
from tvm.s_tir.meta_schedule.builder import BuilderResult, PyBuilder
from tvm.s_tir.meta_schedule.measure_callback import PyMeasureCallback
from tvm.s_tir.meta_schedule.runner import PyRunner, PyRunnerFuture, RunnerResult
from tvm.s_tir.meta_schedule.tune import tune_tasks

from backends.tvm.tuning.measure import STATS, Settings, median_timing, random_args

log = logging.getLogger(__name__)

_SAFE_MUTATORS = ("MutateTileSize", "MutateUnroll")  # the others crash at init (see above)
_TRIALS_PER_ITER = 8


@derived_object
class InProcessBuilder(PyBuilder):
    """Compile each candidate in this process and export it as a shared library."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="dscompile-ms-")

    def build(self, build_inputs: list) -> list:
        results = []
        for build_input in build_inputs:
            try:
                lib = tvm.compile(build_input.mod, target=build_input.target)
                # a folder per trial: MetaSchedule's RemoveBuildArtifact deletes the folder
                path = os.path.join(tempfile.mkdtemp(dir=self.dir), "kernel.so")
                lib.export_library(path)
                results.append(BuilderResult(path, None))
            except Exception as e:  # a sampled schedule that does not build: not a candidate
                results.append(BuilderResult(None, f"build failed: {str(e)[:300]}"))
        return results


@derived_object
class _Finished(PyRunnerFuture):
    def __init__(self, run_secs: list[float] | None, error: str | None = None) -> None:
        super().__init__()
        self.run_secs = run_secs
        self.error = error

    def done(self) -> bool:
        return True

    def result(self) -> RunnerResult:
        return RunnerResult(self.run_secs, self.error)


@derived_object
class InProcessRunner(PyRunner):
    """Time each built candidate here, on random inputs, with ``time_evaluator``."""

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.settings = settings

    def run(self, runner_inputs: list) -> list:
        futures = []
        for runner_input in runner_inputs:
            try:
                module = tvm.runtime.load_module(runner_input.artifact_path)
                device = tvm.device(str(runner_input.device_type), 0)
                specs = [(tuple(a.as_json()[2]), str(a.as_json()[1]))
                         for a in runner_input.args_info]
                args = random_args(specs, device)
                evaluator = module.time_evaluator(
                    module.entry_name, device, number=1, repeat=self.settings.repeat,
                    min_repeat_ms=int(self.settings.min_repeat_ms))
                futures.append(_Finished([t * 1.0 for t in evaluator(*args).results]))
            except Exception as e:
                futures.append(_Finished(None, f"run failed: {str(e)[:300]}"))
        return futures


@derived_object
class _CountTrials(PyMeasureCallback):
    """Count each measured trial (``measure.STATS``) and report it to ``on_trials``."""

    def __init__(self, on_trials: Callable[[int], None] | None) -> None:
        super().__init__()
        self.on_trials = on_trials

    def apply(self, task_scheduler, task_id, measure_candidates, builder_results,
              runner_results) -> None:
        n = sum(1 for r in runner_results if r.run_secs is not None)
        STATS.count(n)
        if self.on_trials is not None:
            self.on_trials(len(runner_results))


def with_num_cores(target: tvm.target.Target) -> tvm.target.Target:
    """MetaSchedule needs ``num-cores`` on a CPU target."""
    config = dict(target.export())
    if config.get("kind") == "llvm" and "num-cores" not in config:
        config["num-cores"] = len(os.sched_getaffinity(0))
        return tvm.target.Target(config)
    return target


def _num_cores(target: tvm.target.Target) -> int:
    """Threads for the search itself: the target's cores on CPU, this machine's else."""
    return int(dict(target.export()).get("num-cores") or len(os.sched_getaffinity(0)))


def _space(target: tvm.target.Target) -> ms.space_generator.PostOrderApply:
    """MetaSchedule's default rules for the target kind, without the crashing mutators."""
    kind = "llvm" if target.kind.name == "llvm" else "cuda"  # ROCm uses the CUDA rules too
    mutators = {m: p for m, p in ms.mutator.Mutator.create(kind).items()
                if type(m).__name__ in _SAFE_MUTATORS}
    return ms.space_generator.PostOrderApply(sch_rules=kind, postprocs=kind,
                                             mutator_probs=mutators)


def tune(func: tirx.PrimFunc, target: tvm.target.Target, trials: int, *,
         runner: Any = None, settings: Settings | None = None,
         on_trials: Callable[[int], None] | None = None,
         seed: int = 0) -> tuple[tirx.PrimFunc, list, float] | None:
    """Search ``trials`` schedules of ``func``; the best as ``(scheduled PrimFunc, its trace
    as JSON, the time MetaSchedule measured in ms)``, or None when no trial ran.

    ``runner``: None times trials here; an ``ms.runner.RPCRunner`` (``rpc.py``) on the
    tracker's machines.
    """
    target = with_num_cores(target)
    settings = settings or Settings()
    mod = tvm.IRModule({"main": func.with_attr("global_symbol", "main")})
    context = ms.TuneContext(mod=mod, target=target, space_generator=_space(target),
                             search_strategy="replay-func", task_name="kernel",
                             rand_state=seed, num_threads=_num_cores(target),
                             logger=logging.getLogger("dscompile.metaschedule"))
    builder = InProcessBuilder()
    database = ms.database.MemoryDatabase()
    callbacks = [*ms.measure_callback.MeasureCallback.create("default"), _CountTrials(on_trials)]
    try:
        tune_tasks(
            tasks=[context], task_weights=[1.0], work_dir=builder.dir,
            max_trials_global=trials, num_trials_per_iter=min(trials, _TRIALS_PER_ITER),
            builder=builder, runner=runner or InProcessRunner(settings), database=database,
            cost_model=ms.cost_model.RandomModel(), measure_callbacks=callbacks,
            task_scheduler="round-robin")
        records = [r for r in database.get_all_tuning_records() if r.run_secs]
        if not records:
            return None
        best = min(records, key=_median_ms)
        sch = s_tir.Schedule(mod)
        best.trace.apply_to_schedule(sch, remove_postproc=False)
        trace = to_json(best.trace.as_json(remove_postproc=False))
        return _without_symbol(sch.mod["main"]), trace, _median_ms(best)
    finally:
        shutil.rmtree(builder.dir, ignore_errors=True)


def _median_ms(record: Any) -> float:
    return median_timing([float(getattr(s, "value", s)) for s in record.run_secs]).median_ms


def replay(func: tirx.PrimFunc, trace: list) -> tirx.PrimFunc:
    """``func`` scheduled by a stored trace: what the search found, without searching."""
    sch = s_tir.Schedule(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}))
    s_tir.Trace.apply_json_to_schedule(trace, sch)
    return _without_symbol(sch.mod["main"])


def _without_symbol(func: tirx.PrimFunc) -> tirx.PrimFunc:
    return func.without_attr("global_symbol")


def to_json(value: Any) -> Any:
    """A trace's JSON (TVM arrays, maps, strings, numbers) as plain Python."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (tirx.IntImm, tirx.FloatImm)):
        return value.value
    if hasattr(value, "items"):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) or hasattr(value, "__len__"):
        return [to_json(v) for v in value]
    return str(value)
