"""The tuning database on disk: one decision per (kernel workload, target), so a second
compile of a model (in any process) reuses the choices and measures nothing.

Key: the unscheduled PrimFunc's structural hash (its computation and shapes, not its
name nor the weights' values: ResNet's repeated blocks share one entry) and a hash of
the target's JSON (an AVX-512 timing says nothing about another CPU).

A record keeps what was chosen, every candidate's median time, the trial budget it was
tuned with, a hash of our rule's schedule and of our TIR passes (under an edited rule or
pass the rule is re-measured, not trusted) and the MetaSchedule winner's trace, so that
schedule is replayed without searching.

File: ``decisions.jsonl`` under ``DSCOMPILE_TUNING_DIR`` or ``~/.cache/dscompile/tuning``;
one JSON object per line, appended under an exclusive lock, the last line of a key wins.
A line that does not parse is skipped with a warning (a torn write loses one decision,
never the database).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import tvm
import tvm_ffi
from tvm import tirx

log = logging.getLogger(__name__)

FILE = "decisions.jsonl"


def tuning_dir() -> Path:
    return Path(os.environ.get("DSCOMPILE_TUNING_DIR") or
                Path.home() / ".cache" / "dscompile" / "tuning")


def workload_hash(func: tirx.PrimFunc) -> str:
    """The PrimFunc's structural hash, its symbol name left out."""
    return f"{tvm_ffi.structural_hash(func.without_attr('global_symbol')):016x}"


def rule_hash(func: tirx.PrimFunc) -> str:
    """What a record's rule time was measured on: the rule's scheduled kernel and our TIR
    passes (``codegen_fingerprint``); a change to either re-times the rule."""
    from backends.tvm.pipeline import codegen_fingerprint

    return f"{workload_hash(func)}-{codegen_fingerprint()}"


def target_hash(target: tvm.target.Target) -> str:
    text = json.dumps(target.export(), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def record_key(func: tirx.PrimFunc, target: tvm.target.Target) -> str:
    return f"{workload_hash(func)}-{target_hash(target)}"


def program_key(graph_text: str, target: tvm.target.Target, trials: int, library: bool) -> str:
    """The key of a whole program's end-to-end verdict (``backends.tvm.build``): its IR
    text, the tuning budget, whether library kernels could be chosen, and our TIR passes
    (they change the rules' program the verdict was against)."""
    from backends.tvm.pipeline import codegen_fingerprint

    text = f"{graph_text}|{trials}|{library}|{codegen_fingerprint()}"
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return f"program-{digest}-{target_hash(target)}"


@dataclass
class Record:
    key: str
    kernel: str  # the PrimFunc's name when tuned, for people reading the file
    chosen: str
    times_ms: dict[str, float]
    trials: int  # MetaSchedule's trial budget (0: not searched)
    rule_hash: str = ""  # ``rule_hash`` of our rule's kernel when it was measured
    trace: list | None = None  # MetaSchedule's best schedule, replayable
    target: str = ""
    created: float = field(default_factory=time.time)
    tvm: str = field(default_factory=lambda: tvm.__version__)

    def ranked(self) -> list[str]:
        """Candidate names from the fastest to the slowest."""
        return sorted(self.times_ms, key=lambda name: self.times_ms[name])


class TuningDatabase:
    """Records under ``root``; ``hits`` and ``commits`` count the kernel decisions this
    instance served and the records it stored."""

    def __init__(self, root: Path | str | None = None):
        self.root = Path(root) if root is not None else tuning_dir()
        self.path = self.root / FILE
        self._records: dict[str, Record] | None = None
        self.hits = 0
        self.commits = 0

    def records(self) -> dict[str, Record]:
        if self._records is None:
            self._records = self._read()
        return self._records

    def _read(self) -> dict[str, Record]:
        records: dict[str, Record] = {}
        if not self.path.exists():
            return records
        known = set(Record.__dataclass_fields__)
        with open(self.path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    data = json.loads(line)
                    record = Record(**{k: v for k, v in data.items() if k in known})
                except (ValueError, TypeError) as e:
                    log.warning("tuning database %s line %d skipped: %s", self.path, number, e)
                    continue
                records[record.key] = record
        return records

    def lookup(self, key: str) -> Record | None:
        """A kernel's decision; counted in ``hits``."""
        record = self.records().get(key)
        if record is not None:
            self.hits += 1
        return record

    def verdict(self, key: str) -> Record | None:
        """A whole program's end-to-end verdict (``program_key``); ``hits`` counts kernel
        decisions only."""
        return self.records().get(key)

    def commit(self, record: Record) -> None:
        """Append ``record`` (it replaces an older one of its key)."""
        self.root.mkdir(parents=True, exist_ok=True)
        line = json.dumps(asdict(record), sort_keys=True) + "\n"
        with open(self.path, "a", encoding="utf-8") as f:
            fcntl.flock(f, fcntl.LOCK_EX)  # concurrent compiles append whole lines
            try:
                f.write(line)
                f.flush()
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
        self.records()[record.key] = record
        self.commits += 1

    def __len__(self) -> int:
        return len(self.records())

    def __repr__(self) -> str:
        return f"TuningDatabase({str(self.path)!r}, {len(self)} records)"


_default: dict[str, TuningDatabase] = {}


def default_database() -> TuningDatabase:
    """One database per directory (the environment may change between compiles)."""
    root = str(tuning_dir())
    if root not in _default:
        _default[root] = TuningDatabase(root)
    return _default[root]

