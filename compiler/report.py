"""The per-kernel report behind ``compiled.report()`` and ``dscompile inspect``.

One row per kernel (fused group or lone op): its ops, operand and result types, FLOPs,
bytes moved, arithmetic intensity, group, kernel name, chosen schedule and the result's
offset in the planned arena; totals at the bottom. A tuned program adds each kernel's
candidates with their measured times (``dscompile(..., tune=True)``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from compiler.cost import node_bytes, node_flops
from compiler.kernels import kernel_groups, kernel_inputs
from ir import Graph

VIEW = "(view)"


@dataclass
class KernelRow:
    index: int
    ops: str  # "conv2d+batch_norm+relu"
    root: str  # the IR node the kernel writes
    inputs: list[str]
    output: str
    flops: int
    bytes: int
    group: int | None
    kernel: str = ""
    schedule: str = ""
    layout: str = ""  # "NCHWc" where the kernel stores its value blocked (CPU)
    offset: int | None = None
    source: str = ""
    timings: dict[str, float] = field(default_factory=dict)  # ms per measured candidate
    ms: float | None = None  # time inside the program, from CompiledModule.profile

    @property
    def gflops(self) -> float | None:
        return self.flops / (self.ms * 1e6) if self.ms else None

    @property
    def intensity(self) -> float:
        return self.flops / self.bytes if self.bytes else 0.0


@dataclass
class Report:
    rows: list[KernelRow]
    arena_bytes: int | None = None
    naive_bytes: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_kernels(self) -> int:
        """Rows that run code: views (reshapes TVM turns into no-copy views) do not."""
        return sum(r.kernel != VIEW for r in self.rows)

    @property
    def total_flops(self) -> int:
        return sum(r.flops for r in self.rows)

    @property
    def total_bytes(self) -> int:
        return sum(r.bytes for r in self.rows)

    def to_dict(self) -> dict:
        rows = [dict(asdict(r), intensity=round(r.intensity, 3)) for r in self.rows]
        return {"kernels": rows, "num_kernels": self.num_kernels, "total_flops": self.total_flops,
                "total_bytes": self.total_bytes, "arena_bytes": self.arena_bytes,
                "naive_bytes": self.naive_bytes, **self.extra}

    def __str__(self) -> str:
        head = ("#", "ops", "inputs", "output", "MFLOP", "KB", "FLOP/B", "group", "kernel",
                "schedule", "layout", "offset")
        body = [(str(r.index), r.ops, " ".join(r.inputs), r.output, f"{r.flops / 1e6:.2f}",
                 f"{r.bytes / 1024:.1f}", f"{r.intensity:.2f}",
                 "" if r.group is None else str(r.group), r.kernel, r.schedule, r.layout,
                 "" if r.offset is None else str(r.offset)) for r in self.rows]
        total = ("", f"total: {self.num_kernels} kernels", "", "",
                 f"{self.total_flops / 1e6:.2f}", f"{self.total_bytes / 1024:.1f}",
                 f"{self.total_flops / max(self.total_bytes, 1):.2f}", "", "", "", "",
                 "" if self.arena_bytes is None else f"arena {self.arena_bytes}")
        if any(r.ms is not None for r in self.rows):  # profiled: time in the program
            head += ("ms", "GFLOP/s")
            body = [(*row, "" if r.ms is None else f"{r.ms:.3f}",
                     "" if not r.gflops else f"{r.gflops:.1f}")
                    for row, r in zip(body, self.rows)]
            profiled = sum(r.ms or 0.0 for r in self.rows)
            total += (f"{profiled:.3f}",
                      f"{self.total_flops / (profiled * 1e6):.1f}" if profiled else "")
        if any(r.timings for r in self.rows):  # tuned: every candidate's time, chosen first
            head += ("candidates (ms)",)
            body = [(*row, candidates_text(r.schedule, r.timings))
                    for row, r in zip(body, self.rows)]
            total += ("",)
        widths = [max(len(row[i]) for row in (head, *body, total)) for i in range(len(head))]

        def fmt(row):
            return "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()

        rule = "  ".join("-" * w for w in widths)
        memory = self.extra.get("memory")
        allocated = [] if not memory else [
            f"memory: {memory['route']}; the program allocates "
            f"{_bytes(memory['allocated_bytes'])} of intermediates (planned arena "
            f"{_bytes(memory['planned_bytes'])}), {_bytes(memory['output_bytes'])} of "
            f"outputs and {_bytes(memory.get('scratch_bytes', 0))} of kernel scratch (TVM's "
            f"workspace pool)"] if memory["route"] != "size-class arena" else [
            "memory: size-class arena; arena and offsets planned per size class at run time"]
        validation = self.extra.get("validation")
        tuned = [] if not validation else [
            f"tuning: kept the {validation['chosen']} program; whole programs, ms per call: "
            + ", ".join(f"{n} {t}" for n, t in validation.items() if n != "chosen")]
        return "\n".join([fmt(head), rule, *map(fmt, body), rule, fmt(total), *allocated,
                          *tuned])


def attach_profile(report: Report, calls: dict[str, list[float]]) -> None:
    """Give each row its kernel call's time: ``calls`` lists, per kernel name, the times
    of its calls in program order, which is the rows' order (rows of identical kernels
    share a name and take its calls one by one)."""
    queues = {name: list(times) for name, times in calls.items()}
    for row in report.rows:
        queue = queues.get(row.kernel)
        row.ms = queue.pop(0) if queue else None


def build_report(graph: Graph, kernels: list | None = None, plan: Any = None,
                 memory: Any = None, validation: dict | None = None) -> Report:
    """Rows for every kernel of ``graph``; ``kernels`` (backend KernelInfo) and ``plan``
    (a MemoryPlan) fill the kernel name, schedule and offset columns where given;
    ``memory`` (the program's MemoryStats) adds what the program allocates,
    ``validation`` (``BuiltModule.validation``) the tuned program's end-to-end check."""
    info = _kernel_info_by_root(kernels or [])
    offsets = _offsets(plan)
    rows = []
    for index, members in enumerate(kernel_groups(graph)):
        root = members[-1]
        ins = kernel_inputs(members)
        flops = sum(node_flops(n) for n in members)
        moved = root.type.nbytes() + sum(i.type.nbytes() for i in ins) \
            if root.type.is_static else sum(node_bytes(n) for n in members)
        k = info.get(root.name)
        if k is None and info and all(n.op == "reshape" for n in members):
            k = KernelName(VIEW)
        rows.append(KernelRow(
            index=index, ops="+".join(n.op for n in members), root=root.name,
            inputs=[str(i.type) for i in ins if i.op != "constant"], output=str(root.type),
            flops=flops, bytes=moved, group=root.meta.get("group"),
            kernel=getattr(k, "name", "") or "", schedule=getattr(k, "schedule", "") or "",
            layout=getattr(k, "layout", None) or "", offset=offsets.get(root.name),
            source=root.source or "",
            timings=dict(getattr(k, "timings", None) or {})))
    extra = {"memory": memory.to_dict()} if memory is not None else {}
    if validation:
        extra["validation"] = validation
    return Report(rows, arena_bytes=getattr(plan, "arena_bytes", None),
                  naive_bytes=getattr(plan, "naive_bytes", None), extra=extra)


def candidates_text(chosen: str, timings: dict[str, float]) -> str:
    """``"onednn* 0.21 conv2d_packed 0.38 metaschedule 0.52"``: the chosen candidate
    (starred) first, then the others fastest first."""
    order = sorted(timings, key=lambda n: (n != chosen, timings[n]))
    return " ".join(f"{n}{'*' if n == chosen else ''} {timings[n]:.3g}" for n in order)


def _bytes(n: int | None) -> str:
    return "symbolic sizes" if n is None else f"{n} B"


@dataclass
class KernelName:
    name: str
    schedule: str = ""


def _kernel_info_by_root(kernels: list) -> dict[str, Any]:
    by_root = {}
    for k in kernels:
        names = list(getattr(k, "node_names", []) or [])
        if names:
            by_root[names[-1]] = k
    return by_root


def _offsets(plan: Any) -> dict[str, int]:
    if plan is None:
        return {}
    return {b.name: b.offset for b in getattr(plan, "buffers", [])
            if getattr(b, "offset", None) is not None}
