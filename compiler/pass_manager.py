"""The pass framework: a ``Pass`` is a named ``Graph -> PassResult`` step; a ``PassManager``
runs a list of them under a ``PassContext`` whose instruments time, dump and verify.

Shaped after torch.fx's ``PassBase``/``PassResult`` (``requires`` / ``run`` / ``ensures``)
and TVM's ``PassContext(instruments=[...])``: passes do the rewriting and nothing else;
timing, IR dumps and verification hang on the context as instruments.

    pm = PassManager([SimplifyPass(), DeadCodeElimination()],
                     instruments=[DumpIRInstrument("dumps"), TimingInstrument()])
    graph, records = pm.run(graph)

``DSCOMPILE_VERIFY=1`` turns on the verifier after every pass (``verify=None`` reads it).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ir import Graph, IRVerifyError, verify

# ----- passes -------------------------------------------------------------------------


@dataclass
class PassResult:
    """What a pass returns: the graph (usually the same object, edited in place) and
    whether it changed anything."""

    graph: Graph
    modified: bool


class Pass:
    """A named graph transformation.

    Subclasses implement ``run(graph) -> PassResult``; ``requires`` and ``ensures`` are
    optional hooks run before and after (raise to report a broken precondition or
    postcondition). A pass edits the graph only through ``Graph`` methods and never
    mutates weight arrays in place (see docs/writing-passes.md).
    """

    name: str = ""

    def __init__(self, name: str | None = None) -> None:
        if name is not None:
            self.name = name
        elif not self.name:
            self.name = type(self).__name__

    def run(self, graph: Graph) -> PassResult:
        raise NotImplementedError

    def requires(self, graph: Graph) -> None:
        """Check preconditions on the input graph; raise if unmet."""

    def ensures(self, graph: Graph) -> None:
        """Check postconditions on the output graph; raise if broken."""

    def __call__(self, graph: Graph) -> PassResult:
        self.requires(graph)
        result = self.run(graph)
        if not isinstance(result, PassResult):
            raise TypeError(f"pass {self.name} returned {type(result).__name__}, "
                            f"not a PassResult")
        self.ensures(result.graph)
        return result

    def __repr__(self) -> str:
        return f"<Pass {self.name}>"


class FunctionPass(Pass):
    """A pass made from ``def f(graph) -> bool`` (True when the graph changed)."""

    def __init__(self, fn: Callable[[Graph], bool], name: str | None = None) -> None:
        self.fn = fn
        super().__init__(name or fn.__name__)
        self.__doc__ = fn.__doc__

    def run(self, graph: Graph) -> PassResult:
        return PassResult(graph, bool(self.fn(graph)))


def function_pass(fn: Callable[[Graph], bool] | None = None, *, name: str | None = None):
    """Decorator: turn ``def f(graph) -> bool`` into a ``Pass`` named ``f`` (or ``name``).

    >>> @function_pass
    ... def drop_nothing(graph):
    ...     return False
    """
    if fn is None:
        return lambda f: FunctionPass(f, name)
    return FunctionPass(fn, name)


# ----- records and instruments --------------------------------------------------------


@dataclass
class PassRecord:
    """One pass's run: its name, graph size before/after, wall time, whether it changed."""

    name: str
    nodes_before: int
    nodes_after: int
    seconds: float
    modified: bool


class Instrument:
    """Hooks around each pass. Override what you need; all default to doing nothing."""

    def enter_pipeline(self, graph: Graph, passes: Sequence[Pass]) -> None:
        pass

    def before_pass(self, index: int, pass_: Pass, graph: Graph) -> None:
        pass

    def after_pass(self, index: int, pass_: Pass, graph: Graph, record: PassRecord) -> None:
        pass

    def exit_pipeline(self, graph: Graph, records: list[PassRecord]) -> None:
        pass


class TimingInstrument(Instrument):
    """Collects seconds per pass; ``summary()`` is a small table."""

    def __init__(self) -> None:
        self.times: list[tuple[str, float]] = []

    def after_pass(self, index, pass_, graph, record) -> None:
        self.times.append((pass_.name, record.seconds))

    def total(self) -> float:
        return sum(t for _, t in self.times)

    def summary(self) -> str:
        rows = [f"{name:<28} {sec * 1e3:9.3f} ms" for name, sec in self.times]
        rows.append(f"{'total':<28} {self.total() * 1e3:9.3f} ms")
        return "\n".join(rows)


class DumpIRInstrument(Instrument):
    """Writes the text IR to ``dir``: ``00_input.dsir`` then ``{i:02d}_{PassName}.dsir``
    after pass number ``i`` (1-based) - only when it changed the graph, unless
    ``only_changed=False``. Every file parses back with ``ir.parse``."""

    def __init__(self, dir: str | os.PathLike, only_changed: bool = True) -> None:
        self.dir = Path(dir)
        self.only_changed = only_changed
        self.written: list[Path] = []

    def enter_pipeline(self, graph, passes) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._write("00_input", graph)

    def after_pass(self, index, pass_, graph, record) -> None:
        if record.modified or not self.only_changed:
            self._write(f"{index + 1:02d}_{_file_safe(pass_.name)}", graph)

    def _write(self, stem: str, graph: Graph) -> None:
        path = self.dir / f"{stem}.dsir"
        path.write_text(str(graph))
        self.written.append(path)


def _file_safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "pass"


class PassVerifyError(IRVerifyError):
    """The verifier failed after a pass; names the pass and the ones that ran before."""

    def __init__(self, pass_name: str, before: list[str], cause: IRVerifyError | Exception):
        self.pass_name, self.before = pass_name, before
        problems = getattr(cause, "problems", [str(cause)])
        ran = ", ".join(before) if before else "(none)"
        Exception.__init__(self, f"IR verification failed after pass {pass_name!r} "
                                 f"(passes run before it: {ran}):\n  " + "\n  ".join(problems))
        self.problems = problems


class VerifyInstrument(Instrument):
    """Runs ``ir.verify`` on the input and after every pass; a failure is re-raised as
    ``PassVerifyError`` naming the pass that broke the graph and the passes before it."""

    def __init__(self) -> None:
        self.ran: list[str] = []

    def enter_pipeline(self, graph, passes) -> None:
        self.ran = []
        try:
            verify(graph)
        except IRVerifyError as e:
            raise PassVerifyError("<input>", [], e) from e

    def after_pass(self, index, pass_, graph, record) -> None:
        try:
            verify(graph)
        except IRVerifyError as e:
            raise PassVerifyError(pass_.name, list(self.ran), e) from e
        self.ran.append(pass_.name)


class PassContext:
    """The instruments that watch a pipeline run. Usable as a context manager so that
    code deep inside (``dscompile``) picks up instruments set by the caller:

        with PassContext(instruments=[DumpIRInstrument("out")]):
            dscompile(model, inputs)
    """

    _stack: list[PassContext] = []

    def __init__(self, instruments: Iterable[Instrument] = ()) -> None:
        self.instruments = list(instruments)

    def __enter__(self) -> PassContext:
        PassContext._stack.append(self)
        return self

    def __exit__(self, *exc) -> None:
        PassContext._stack.remove(self)

    @staticmethod
    def current() -> PassContext:
        return PassContext._stack[-1] if PassContext._stack else PassContext()


def verify_from_env() -> bool:
    return os.environ.get("DSCOMPILE_VERIFY", "").lower() in ("1", "true", "yes", "on")


class PassManager:
    """Runs ``passes`` in order on a copy of the graph and returns ``(graph, records)``.

    Parameters
    ----------
    passes : sequence of Pass
    instruments : sequence of Instrument
        Added to those of the current ``PassContext``.
    verify : bool or None
        Verify the IR after each pass; ``None`` reads ``DSCOMPILE_VERIFY``.
    name : str
        The pipeline's name, for messages.
    """

    def __init__(self, passes: Sequence[Pass], instruments: Iterable[Instrument] = (),
                 verify: bool | None = None, name: str = "pipeline") -> None:
        for p in passes:
            if not isinstance(p, Pass):
                raise TypeError(f"{p!r} is not a Pass (use @function_pass for a function)")
        self.passes = list(passes)
        self.instruments = list(instruments)
        self.verify = verify_from_env() if verify is None else verify
        self.name = name

    def with_user_passes(self, *passes: Pass, before: str = "fuse") -> PassManager:
        """A new manager with ``passes`` inserted before the first pass named ``before``
        (group formation) or appended when there is none."""
        names = [p.name for p in self.passes]
        at = names.index(before) if before in names else len(names)
        return PassManager(self.passes[:at] + list(passes) + self.passes[at:],
                           self.instruments, self.verify, self.name)

    def run(self, graph: Graph, copy: bool = True) -> tuple[Graph, list[PassRecord]]:
        """Run the pipeline; the caller's graph is left untouched unless ``copy=False``."""
        if copy:
            graph = graph.copy()
        instruments = PassContext.current().instruments + self.instruments
        if self.verify:
            instruments.append(VerifyInstrument())
        for inst in instruments:
            inst.enter_pipeline(graph, self.passes)
        records: list[PassRecord] = []
        for index, pass_ in enumerate(self.passes):
            for inst in instruments:
                inst.before_pass(index, pass_, graph)
            before = len(graph)
            start = time.perf_counter()
            result = pass_(graph)
            seconds = time.perf_counter() - start
            graph = result.graph
            record = PassRecord(pass_.name, before, len(graph), seconds, result.modified)
            records.append(record)
            for inst in instruments:
                inst.after_pass(index, pass_, graph, record)
        for inst in instruments:
            inst.exit_pipeline(graph, records)
        return graph, records


def provenance_after(node, pass_name: str) -> list[str]:
    """``node``'s ``meta['provenance']`` with ``pass_name`` appended, as a new list:
    graph copies share meta values, so a list is never appended to in place."""
    history = list(node.meta.get("provenance", ()))
    if not history or history[-1] != pass_name:
        history.append(pass_name)
    return history


def derived_meta(node, pass_name: str) -> dict:
    """Meta for a node that replaces ``node``: its source, provenance extended."""
    meta = {"provenance": provenance_after(node, pass_name)}
    if "source" in node.meta:
        meta["source"] = node.meta["source"]
    return meta
