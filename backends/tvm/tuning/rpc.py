"""Measuring on other machines through TVM's RPC tracker.

A tracker runs on one host; each machine that measures runs an RPC server registered
with it under a key (``python -m tvm.exec.rpc_server --tracker HOST:PORT --key gpu``).
Here the kernels are built, the libraries are sent to a free server of that key, timed
there and the times come back: MetaSchedule's trials through its ``RPCRunner``, our
candidates through ``RemoteTimer``. ``dscompile(..., tune=True, rpc="gpu@HOST:PORT")``.

``loopback()`` starts a tracker and servers on 127.0.0.1, for tests and to try it out.
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tvm
from tvm import tirx

from backends.tvm.tuning.measure import (
    STATS,
    Settings,
    Timing,
    buffer_specs,
    median_timing,
    random_args,
)


@dataclass(frozen=True)
class RPCTracker:
    """Where the tracker is and which machines (by key) to measure on."""

    host: str
    port: int
    key: str
    session_timeout_s: int = 60
    priority: int = 1

    def __str__(self) -> str:
        return f"{self.key}@{self.host}:{self.port}"


def parse(spec: Any) -> RPCTracker:
    """``"key@host:port"``, a dict with ``host``, ``port``, ``key`` or an ``RPCTracker``.

    Raises
    ------
    ValueError
        For anything else, showing the expected form.
    """
    if isinstance(spec, RPCTracker):
        return spec
    if isinstance(spec, dict):
        try:
            return RPCTracker(str(spec["host"]), int(spec["port"]), str(spec["key"]),
                              **{k: spec[k] for k in ("session_timeout_s", "priority")
                                 if k in spec})
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"rpc dict needs host, port and key: {spec!r} ({e})") from None
    if isinstance(spec, str) and "@" in spec and ":" in spec.rsplit("@", 1)[1]:
        key, address = spec.rsplit("@", 1)
        host, port = address.rsplit(":", 1)
        if key and host and port.isdigit():
            return RPCTracker(host, int(port), key)
    raise ValueError(f"rpc must look like 'key@host:port' (e.g. 'gpu@10.0.0.5:9190'), a dict "
                     f"{{'host', 'port', 'key'}} or an RPCTracker; got {spec!r}")


def connect(tracker: RPCTracker) -> Any:
    """A session on a free server of the tracker's key (waits for one)."""
    from tvm import rpc

    client = rpc.connect_tracker(tracker.host, tracker.port)
    return client.request(tracker.key, priority=tracker.priority,
                          session_timeout=tracker.session_timeout_s)


def ms_runner(tracker: RPCTracker, settings: Settings) -> Any:
    """MetaSchedule's ``RPCRunner`` for the tracker: trials timed on its machines."""
    from tvm.s_tir.meta_schedule.runner import EvaluatorConfig, RPCConfig, RPCRunner

    config = RPCConfig(tracker_host=tracker.host, tracker_port=tracker.port,
                       tracker_key=tracker.key, session_priority=tracker.priority,
                       session_timeout_sec=tracker.session_timeout_s)
    evaluator = EvaluatorConfig(number=1, repeat=settings.repeat,
                                min_repeat_ms=int(settings.min_repeat_ms),
                                enable_cpu_cache_flush=False)
    return RPCRunner(config, evaluator, max_workers=1)


class RemoteTimer:
    """Times a PrimFunc built here on a machine of the tracker (``measure.time_primfunc``'s
    remote twin)."""

    def __init__(self, tracker: RPCTracker):
        self.tracker = tracker

    def time_primfunc(self, func: tirx.PrimFunc, target: tvm.target.Target,
                      settings: Settings | None = None) -> Timing:
        settings = settings or Settings()
        mod = tvm.IRModule({"main": func.with_attr("global_symbol", "main")})
        lib = tvm.compile(mod, target=target)
        with tempfile.TemporaryDirectory(prefix="dscompile-rpc-") as tmp:
            path = os.path.join(tmp, "kernel.so")
            lib.export_library(path)
            session = connect(self.tracker)
            session.upload(path)
            remote = session.load_module("kernel.so")
        device = session.device({"llvm": "cpu"}.get(target.kind.name, target.kind.name), 0)
        args = random_args(buffer_specs(func), device)
        evaluator = remote.time_evaluator("main", device, number=1, repeat=settings.repeat,
                                          min_repeat_ms=int(settings.min_repeat_ms))
        STATS.count()
        return median_timing(evaluator(*args).results)


@contextmanager
def loopback(key: str = "dscompile-loopback", servers: int = 2,
             timeout_s: float = 60.0) -> Iterator[RPCTracker]:
    """A tracker and ``servers`` RPC servers on 127.0.0.1, stopped on exit."""
    from tvm import rpc
    from tvm.rpc.tracker import Tracker

    tracker = Tracker("127.0.0.1", port=9190, port_end=9290, silent=True)
    started: list[Any] = []
    try:
        for _ in range(servers):
            started.append(rpc.Server("127.0.0.1", port=9300, port_end=9400, key=key,
                                      tracker_addr=("127.0.0.1", tracker.port), silent=True))
        wait_for_servers(tracker.host, tracker.port, key, servers, timeout_s)
        yield RPCTracker("127.0.0.1", tracker.port, key)
    finally:
        for worker in [*started, tracker]:
            stop(worker)


def stop(worker: Any) -> None:
    """Stop a tracker or server and every process under it. TVM's own ``terminate``
    needs psutil to find the children (and raises ImportError without it), so the
    process tree is read from /proc here."""
    popen = getattr(getattr(worker, "proc", None), "_proc", None)  # PopenWorker's process
    if popen is None:
        return
    _kill_tree(popen.pid)
    popen.wait()
    worker.proc = None


def _kill_tree(pid: int) -> None:
    for child in _children(pid):
        _kill_tree(child)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:  # the process ended meanwhile
            pass
    return found


def wait_for_servers(host: str, port: int, key: str, count: int, timeout_s: float) -> None:
    """Block until ``count`` servers of ``key`` are free at the tracker."""
    from tvm import rpc

    deadline = time.monotonic() + timeout_s
    free = 0
    while time.monotonic() < deadline:
        summary = rpc.connect_tracker(host, port).summary()
        free = summary.get("queue_info", {}).get(key, {}).get("free", 0)
        if free >= count:
            return
        time.sleep(0.2)
    raise TimeoutError(f"{free} of {count} RPC servers of key {key!r} registered at "
                       f"{host}:{port} within {timeout_s:.0f} s")
