"""Choosing every kernel's schedule by measurement: the steps, per distinct kernel:

1. its candidates: our rule, MetaSchedule's best of ``trials`` samples, the library;
2. or, when the tuning database has a decision for this workload and target, the
   candidates it names (the MetaSchedule one replayed from its trace): nothing measured;
3. measure and choose (``chooser.choose``), record the decision;
4. put the chosen schedule in the module; library call sites get their own PrimFunc
   (``library_calls``). ``KernelInfo.schedule`` names the choice and ``timings`` holds
   every candidate's median time, for the report.

Kernels that share a PrimFunc (identical computations) are decided once. Kernels with
symbolic shapes keep the rule: they cannot be timed at one size.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import tvm
from tvm import tirx

from backends.tvm.schedules.cpu import WinogradConv2d
from backends.tvm.tuning import candidates as cands
from backends.tvm.tuning import library as lib
from backends.tvm.tuning.chooser import Decision, choose, fastest
from backends.tvm.tuning.database import (
    Record,
    TuningDatabase,
    default_database,
    record_key,
    rule_hash,
)
from backends.tvm.tuning.library_calls import route_to_library
from backends.tvm.tuning.measure import Settings
from backends.tvm.tuning.progress import Progress
from ir import Graph

log = logging.getLogger(__name__)

DEFAULT_TRIALS = 32


@dataclass
class TuningOptions:
    """``trials``: MetaSchedule samples per kernel (0: rule and library only). ``rpc``:
    measure on the tracker's machines (``rpc.parse`` forms). ``measure``: replaces the
    timing of candidates (``candidate -> ms``), for tests."""

    trials: int = DEFAULT_TRIALS
    rpc: Any = None
    library: bool = True
    database: TuningDatabase | None = None
    settings: Settings = field(default_factory=Settings)
    progress: bool | None = None  # None: on a terminal only
    measure: Callable[[cands.Candidate], float] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.trials, int) or self.trials < 0:
            raise ValueError(f"trials must be a non-negative int, got {self.trials!r}")
        if self.rpc is not None:
            from backends.tvm.tuning.rpc import parse

            self.rpc = parse(self.rpc)


def options_from(compile_options: Any) -> TuningOptions | None:
    """The tuning a ``CompileOptions`` asks for (``tune``, ``trials``, ``rpc``), or None."""
    if not getattr(compile_options, "tune", False):
        return None
    trials = getattr(compile_options, "trials", None)
    return TuningOptions(trials=DEFAULT_TRIALS if trials is None else trials,
                         rpc=getattr(compile_options, "rpc", None))


def tune_module(mod: tvm.IRModule, kernels: list[Any], target: tvm.target.Target, kind: str,
                graph: Graph, options: TuningOptions) -> tvm.IRModule:
    """Schedule every kernel of ``mod`` with its fastest candidate (see the module
    docstring); returns the module, ``kernels`` updated in place."""
    if options.rpc is None and options.measure is None and not _device_present(kind):
        log.warning("dscompile: no %s device here to measure on: kernels keep their rules "
                    "(tune on a machine with one, or measure through rpc='key@host:port')",
                    kind)
        from backends.tvm.schedules import schedule_module

        return schedule_module(mod, kernels, target, kind)
    session = _Session(target, kind, graph, options)
    by_name: dict[str, list[Any]] = {}
    for k in kernels:
        by_name.setdefault(k.name, []).append(k)
    progress = Progress(len(by_name) * session.units_per_kernel, "dscompile: tuning",
                        enabled=options.progress)
    try:
        for name, sites in by_name.items():
            gv = mod.get_global_var(name)
            choice = session.decide(mod[gv], sites, progress)
            mod[gv] = choice.func
            for k in sites:
                spec = choice.specs.get(id(k))
                k.library = None if spec is None else spec.to_dict()
                # a call site the library cannot take (none so far) keeps the rule
                library_refused = choice.decision.chosen == lib.NAME and spec is None
                k.schedule = choice.rule if library_refused else choice.decision.chosen
                k.timings = {n: float(f"{t:.4g}") for n, t in choice.decision.times_ms.items()}
    finally:
        progress.close()
    return route_to_library(mod, kernels, len(graph.inputs))


@dataclass
class _Choice:
    func: tirx.PrimFunc  # what the kernel's PrimFunc becomes (the rule's for library sites)
    decision: Decision
    rule: str  # the rule's name
    specs: dict[int, lib.LibrarySpec] = field(default_factory=dict)  # id(kernel) -> spec


class _Session:
    def __init__(self, target: tvm.target.Target, kind: str, graph: Graph,
                 options: TuningOptions):
        self.target, self.kind, self.graph, self.options = target, kind, graph, options
        self.database = options.database if options.database is not None \
            else default_database()
        self.timer = None
        self.runner = None
        if options.rpc is not None:
            from backends.tvm.tuning import rpc

            self.timer = rpc.RemoteTimer(options.rpc)
            self.runner = rpc.ms_runner(options.rpc, options.settings)
        # the library runs in this process: it can only be measured and used here
        self.library = options.library and kind == "cpu" and options.rpc is None
        self.units_per_kernel = options.trials + 3

    def members(self, kernel: Any) -> list:
        return [self.graph.node(n) for n in kernel.node_names]

    def library_candidate(self, kernel: Any) -> cands.Candidate | None:
        """The library's kernel, where it can run this one: it takes and returns NCHW, so
        not where the kernel reads or writes blocked values (``backends.tvm.blocked_layout``)."""
        if not self.library or kernel.layout is not None or kernel.reads_blocked:
            return None
        return cands.library(self.members(kernel))

    def measure(self, candidate: cands.Candidate) -> float:
        if self.options.measure is not None:
            return self.options.measure(candidate)
        return candidate.time(self.target, self.options.settings, self.graph.weights,
                              self.timer).median_ms

    def decide(self, func: tirx.PrimFunc, sites: list[Any], progress: Progress) -> _Choice:
        rule = cands.rule(func, self.target, self.kind)
        if not _static(func):
            progress.advance(self.units_per_kernel, sites[0].name)
            return _Choice(rule.func, Decision(rule.name), rule.name)
        key = record_key(func, self.target)
        record = self.database.lookup(key)
        if record is not None and record.trials >= self.options.trials:
            chosen, decision = self.from_record(func, sites, rule, record)
            progress.advance(self.units_per_kernel, f"{sites[0].name}: from the database")
        else:
            chosen, decision, trace = self.search(func, sites, rule, progress)
            self.database.commit(Record(
                key=key, kernel=sites[0].name, chosen=decision.chosen,
                times_ms=decision.times_ms, trials=self.options.trials,
                rule_hash=rule_hash(rule.func), trace=trace, target=str(self.target)))
        if chosen.kind == cands.LIBRARY:
            specs = {id(k): lib.match(self.members(k)) for k in sites}
            return _Choice(rule.func, decision, rule.name,
                           {i: s for i, s in specs.items() if s is not None})
        return _Choice(chosen.func, decision, rule.name)

    def search(self, func: tirx.PrimFunc, sites: list[Any], rule: cands.Candidate,
               progress: Progress) -> tuple[cands.Candidate, Decision, list | None]:
        found = [rule]
        note = sites[0].name
        if self.options.trials > 0 and rule.name not in NOT_SEARCHED:
            progress.draw(f"{note}: MetaSchedule")
            tuned = cands.metaschedule(func, self.target, self.options.trials,
                                       runner=self.runner, settings=self.options.settings,
                                       on_trials=lambda n: progress.advance(n, note))
            if tuned is not None:
                found.append(tuned)
        if (library := self.library_candidate(sites[0])) is not None:
            found.append(library)

        def measure(candidate):
            try:
                return self.measure(candidate)
            finally:
                progress.advance(1, f"{note}: timing {candidate.name}")

        if len(found) == 1:  # nothing to choose between: no time spent measuring
            progress.advance(1, note)
            return rule, Decision(rule.name), None
        try:
            chosen, decision = choose(found, measure)
        except ValueError as e:  # nothing could be timed: keep the rule, say why
            log.warning("dscompile: kernel %s keeps its rule: %s", note, e)
            return rule, Decision(rule.name), None
        trace = next((c.trace for c in found if c.trace is not None), None)
        return chosen, decision, trace

    def from_record(self, func: tirx.PrimFunc, sites: list[Any], rule: cands.Candidate,
                    record: Record) -> tuple[cands.Candidate, Decision]:
        """The recorded decision's candidate, without measuring; a candidate that cannot
        be rebuilt here (no library, a rule renamed) gives way to the next fastest. An
        edited rule (its schedule differs from the one measured) is timed again."""
        times = dict(record.times_ms)
        others = {n: t for n, t in times.items() if n in (cands.METASCHEDULE, lib.NAME)}
        if others and record.rule_hash and record.rule_hash != rule_hash(rule.func):
            times = {**others, rule.name: self.measure(rule)}
            record.times_ms, record.rule_hash = times, rule_hash(rule.func)
            record.chosen = fastest(times, rule.name)
            self.database.commit(record)
        available: dict[str, cands.Candidate] = {rule.name: rule}
        if record.trace is not None and cands.METASCHEDULE in times:
            try:
                available[cands.METASCHEDULE] = cands.replayed(func, record.trace)
            except Exception as e:  # a trace from another TVM version: keep the others
                log.warning("tuning record %s: trace does not replay (%s)", record.key, e)
        if lib.NAME in times:
            library = self.library_candidate(sites[0])
            if library is not None:
                available[lib.NAME] = library
        usable = {n: t for n, t in times.items() if n in available}
        if not usable:
            return rule, Decision(rule.name, times)
        chosen = fastest(usable, rule.name if rule.name in usable else None)
        return available[chosen], Decision(chosen, times)


# rules whose kernels MetaSchedule does not search: a Winograd conv's three steps choose
# each tile position's transform with a 36-way if_then_else chain, which folds only where
# our rule unrolls the positions; MetaSchedule's samples did not, and it spent 14 minutes
# on ResNet-50's first one without finishing
NOT_SEARCHED = (WinogradConv2d.name,)


def _static(func: tirx.PrimFunc) -> bool:
    """Every parameter a buffer of constant shape (TVM 0.27 types buffer params)."""
    shapes = [getattr(p, "shape", None) for p in func.params]
    return all(s is not None and all(isinstance(d, tirx.IntImm) for d in s) for s in shapes)


def _device_present(kind: str) -> bool:
    if kind == "cpu":
        return True
    try:
        return bool(tvm.device(kind, 0).exist)
    except Exception:  # TVM without this GPU's runtime cannot even ask
        return False
