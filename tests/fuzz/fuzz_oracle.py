"""The differential oracle (compile a spec's model, run it against eager torch, classify
the outcome) and the shrinker that cuts a failing spec down to a minimal one.

Outcomes: ``ok``; ``mismatch`` (numbers differ beyond ``compiler.guard.compare``'s
tolerances); ``crash`` (any exception that is not a ``DSCompileError``, one that does not
name an op, or TVM failing on an op we claim to lower); ``refused`` (a ``DSCompileError``
naming the op, e.g. ``UnsupportedOpError``); ``invalid`` (the spec itself does not build).
"""

from __future__ import annotations

import hashlib
import json
import re
import signal
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from graph_gen import InvalidSpec, Spec, agrees, build_model, outputs_of, run_program

REGRESSIONS = Path(__file__).resolve().parent / "regressions"
COMPILE_TIMEOUT_S = 120  # a compile that takes longer than this is a hang, counted a crash


@dataclass
class Outcome:
    kind: str  # ok | mismatch | crash | refused | invalid
    detail: str = ""
    error: str = ""  # the exception type, for crashes and refusals
    reason: str = ""  # for refusals: the error type and the ops it names (the counts table)

    @property
    def failed(self) -> bool:
        return self.kind in ("mismatch", "crash")

    def same_failure(self, other: Outcome) -> bool:
        """What the shrinker keeps: the same kind, and for crashes the same error type."""
        return self.kind == other.kind and self.error == other.error

    def __str__(self) -> str:
        return f"{self.kind}" + (f" [{self.error}]" if self.error else "") + \
            (f": {self.detail}" if self.detail else "")


def named_ops(message: str) -> list[str]:
    """The ops an error message names (torch names, then IR op names in parentheses)."""
    from ir.registry import OPS

    torch_ops = re.findall(r"\b(?:aten|torch|F|nn)\.[\w.]+", message)
    ir_ops = [name for name in OPS if name not in ("input", "weight", "constant")
              and re.search(rf"\({re.escape(name)}\)|\b{re.escape(name)}\b", message)]
    return list(dict.fromkeys(torch_ops + ir_ops))


def names_an_op(message: str) -> bool:
    """Whether an error message names the op it refuses (an IR or a torch op name)."""
    return bool(named_ops(message))


# TVM failing on an op the table lowers is our bug, not a refusal (backends/tvm/lower.py,
# build.py word it so).
_BACKEND_FAILURE = ("TVM says:", "TVM failed to build")


def classify_error(e: BaseException, stage: str) -> Outcome:
    from compiler.errors import DSCompileError, UnsupportedOpError

    message = str(e).strip()
    first = f"{stage}: {type(e).__name__}: {message[:2000]}"
    if isinstance(e, UnsupportedOpError) and e.ops:
        ops = sorted({o.op for o in e.ops})
        return Outcome("refused", first, type(e).__name__, f"{type(e).__name__}: "
                                                             f"{', '.join(ops)}")
    backend_failure = any(marker in message for marker in _BACKEND_FAILURE)
    if isinstance(e, DSCompileError) and names_an_op(message) and not backend_failure:
        return Outcome("refused", first, type(e).__name__, f"{type(e).__name__}: "
                                                             f"{', '.join(named_ops(message))}")
    tb = "".join(traceback.format_exception(e)[-6:])
    return Outcome("crash", f"{first}\n{tb}", type(e).__name__)


@contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    def on_alarm(signum, frame):
        raise TimeoutError(f"took longer than {seconds} s")

    try:
        previous = signal.signal(signal.SIGALRM, on_alarm)
    except ValueError:  # not the main thread: no limit
        yield
        return
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


TRIALS = ("example", "random", "NaN/Inf planted")
# Passes that reassociate arithmetic: exact for finite values, not for infinite ones
# (W2 @ (W1 @ inf) can be inf - inf = NaN where (W2 @ W1) @ inf is inf). Where one
# changed the graph the NaN/Inf trial has no exact answer to compare with. So with a
# Winograd conv kernel: its transforms add and subtract the values of a whole tile, so
# an Inf makes NaN over the tile, where a direct conv makes NaN or Inf in its 3x3 reach.
REASSOCIATING = {"merge_linear_chain"}
REASSOCIATING_KERNELS = {"conv2d_winograd"}


def planted(value: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A float input with NaN, +inf and -inf at random places (others left as they are)."""
    if not value.is_floating_point() or value.numel() == 0:
        return value
    flat = value.clone().flatten()
    where = torch.randperm(flat.numel(), generator=gen)[:3]
    flat[where] = torch.tensor([float("nan"), float("inf"), float("-inf")])[:len(where)]
    return flat.view_as(value)


def trials(inputs: tuple) -> list[tuple]:
    """The example inputs, one random set like them (``compiler.guard``'s rule), and the
    example with NaN and Inf planted (they must propagate exactly as in eager)."""
    from compiler.guard import random_like

    gen = torch.Generator().manual_seed(4321)
    return [inputs, tuple(random_like(t, gen) for t in inputs),
            tuple(planted(t, gen) for t in inputs)]


def run_case(spec: Spec, opt_level: int = 2, target: str = "cpu") -> Outcome:
    """Compile ``spec``'s model at ``opt_level`` and compare it with eager torch."""
    from compiler import dscompile
    from compiler.guard import compare

    try:
        model, inputs = build_model(spec)
    except InvalidSpec as e:
        return Outcome("invalid", str(e))
    try:
        with time_limit(COMPILE_TIMEOUT_S):
            compiled = dscompile(model, inputs, target=target, opt_level=opt_level,
                                 check="off")
    except Exception as e:
        return classify_error(e, "compile")
    reference, _ = build_model(spec, double=True)
    exact_inf = not any(r.modified and r.name in REASSOCIATING for r in compiled.records) \
        and not any(k.schedule in REASSOCIATING_KERNELS for k in compiled.kernels)
    for n, args in enumerate(trials(inputs)[:None if exact_inf else 2]):
        try:
            with torch.no_grad():
                expected = list(model(*args))
                wide = list(reference(*(t.double() if t.is_floating_point() else t
                                        for t in args)))
        except InvalidSpec:  # e.g. random token ids past an embedding: eager refuses them
            continue
        if n and not all(agrees(e, w) for e, w in zip(expected, wide)):
            continue  # eager float32 itself is off on this input: nothing to judge
        try:
            actual = compiled(*args)
        except Exception as e:
            return classify_error(e, "run")
        actual = list(actual) if isinstance(actual, (tuple, list)) else [actual]
        if len(actual) != len(expected):
            return Outcome("mismatch", f"{len(actual)} outputs, expected {len(expected)}")
        bad = compare(actual, expected)
        if bad:
            outs = outputs_of(spec)
            where = "; ".join(f"{m} (spec node {outs[m.output]})" for m in bad)
            return Outcome("mismatch", f"{TRIALS[n]} inputs: {where}")
    return Outcome("ok")


# ----- shrinking ------------------------------------------------------------------------


def delete_node(spec: Spec, i: int, replacement: int | None) -> Spec:
    """``spec`` without node ``i``; its users read ``replacement`` instead."""
    out = []
    for j, node in enumerate(spec):
        if j == i:
            continue
        node = dict(node)
        if "args" in node:
            args = [replacement if a == i else a for a in node["args"]]
            if None in args:
                return []
            node["args"] = [a - (a > i) for a in args]
        if "share" in node:
            if node["share"] == i:
                del node["share"]
            else:
                node["share"] -= node["share"] > i
        out.append(node)
    return out


def _signature(value: torch.Tensor) -> tuple:
    return tuple(value.shape), value.dtype


def deletions(spec: Spec) -> Iterator[Spec]:
    """Each node deleted, its users rewired to a value of the same shape and dtype: one of
    its own arguments first, then any earlier value; unused inputs dropped."""
    try:
        values = run_program(spec).values
    except InvalidSpec:
        return
    used = {a for node in spec for a in node.get("args", ())}
    for i in reversed(range(len(spec))):
        if spec[i]["op"] == "input":
            if i not in used:
                yield delete_node(spec, i, None)
            continue
        if i not in used:
            yield delete_node(spec, i, None)
            continue
        sig = _signature(values[i])
        own = [a for a in spec[i]["args"] if _signature(values[a]) == sig]
        other = [j for j in range(i) if j not in own and _signature(values[j]) == sig]
        for r in (own + other[::-1])[:3]:
            yield delete_node(spec, i, r)


SIMPLER = {"bias": False, "functional": False, "rev": False, "stride": 1, "dil": 1,
           "pad": 0, "groups": 1, "ceil": False, "causal": False, "keepdim": False,
           "affine": False, "count_pad": True, "fn": None}
DROPPED = ("output", "share", "step", "start", "end", "low")


def simplifications(spec: Spec) -> Iterator[Spec]:
    """One attribute at a time made simpler; sizes halved or set to 1."""
    for i, node in enumerate(spec):
        for key in DROPPED:
            if key in node:
                yield _with(spec, i, {k: v for k, v in node.items() if k != key})
        for key, simple in SIMPLER.items():
            if key in node and node[key] != simple and not (key == "fn" and node["op"] in
                                                            _FN_REQUIRED):
                yield _with(spec, i, {**node, key: simple})
        if node["op"] == "input":
            for d, size in enumerate(node["shape"]):
                for smaller in sorted({1, size // 2}):
                    if 0 < smaller < size:
                        shape = list(node["shape"])
                        shape[d] = smaller
                        yield _with(spec, i, {**node, "shape": shape})
        for key in ("out", "num", "dim", "size", "k", "n", "chunks"):
            if isinstance(node.get(key), int) and node[key] > 1 and node["op"] != "reduce" \
                    and not (key == "dim" and node["op"] != "embedding"):
                yield _with(spec, i, {**node, key: max(1, node[key] // 2)})


_FN_REQUIRED = {"unary", "binary", "compare", "logical", "reduce", "softmax", "pool", "split",
                "tri"}


def _with(spec: Spec, i: int, node: dict) -> Spec:
    return spec[:i] + [node] + spec[i + 1:]


def shrink(spec: Spec, fails: Callable[[Spec], bool], budget_s: float = 300.0,
           log: Callable[[str], None] = lambda s: None) -> Spec:
    """Greedy shrinking: take the first deletion or simplification that still fails, and
    start again, until none does or the time budget is spent."""
    deadline = time.monotonic() + budget_s
    tried: set[str] = set()
    progress = True
    while progress and time.monotonic() < deadline:
        progress = False
        for candidate in (*deletions(spec), *simplifications(spec)):
            if time.monotonic() > deadline:
                break
            key = json.dumps(candidate, sort_keys=True)
            if not candidate or key in tried:
                continue
            tried.add(key)
            try:
                run_program(candidate)
            except InvalidSpec:
                continue
            if fails(candidate):
                log(f"  shrunk to {len(candidate)} nodes")
                spec, progress = candidate, True
                break
    return spec


def shrink_failure(spec: Spec, outcome: Outcome, opt_level: int, budget_s: float = 300.0,
                   log: Callable[[str], None] = lambda s: None) -> tuple[Spec, Outcome]:
    """The smallest spec showing the same failure, and its outcome."""
    last: dict[str, Outcome] = {}

    def fails(candidate: Spec) -> bool:
        result = run_case(candidate, opt_level)
        if result.same_failure(outcome):
            last["outcome"] = result
            return True
        return False

    small = shrink(spec, fails, budget_s, log)
    return small, last.get("outcome", outcome)


def save_regression(spec: Spec, outcome: Outcome, opt_level: int, seed: int | None = None,
                    directory: Path = REGRESSIONS) -> Path:
    """Write the failing spec as JSON (named by its content) and return the path."""
    directory.mkdir(parents=True, exist_ok=True)
    text = json.dumps(spec, sort_keys=True)
    name = f"{outcome.kind}_{hashlib.sha1(text.encode()).hexdigest()[:10]}.json"
    path = directory / name
    record = {"opt_level": opt_level, "seed": seed, "outcome": outcome.kind,
              "error": outcome.error, "detail": outcome.detail.splitlines()[:6], "spec": spec}
    path.write_text(json.dumps(record, indent=1) + "\n")
    return path


def format_spec(spec: Spec) -> str:
    """One node per line, numbered, for a failure message."""
    return "\n".join(f"  {i:2d}: {json.dumps(node)}" for i, node in enumerate(spec))
