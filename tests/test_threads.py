"""One compiled module called from several threads at once: every call gets its own
inputs' results (a Relax VM is not reentrant, so each thread runs its own VM)."""

from __future__ import annotations

import threading

import torch

from compiler import dscompile
from examples.models import MLP, TransformerBlock

THREADS = 4
CALLS = 50


def hammer(compiled, model, make_input) -> list[str]:
    """Run ``THREADS`` threads of ``CALLS`` calls each, released together; return errors."""
    errors: list[str] = []
    start = threading.Barrier(THREADS)

    def worker(seed: int) -> None:
        gen = torch.Generator().manual_seed(seed)
        start.wait()
        for i in range(CALLS):
            x = make_input(gen)
            got = compiled(x)
            with torch.no_grad():
                want = model(x)
            if got.shape != want.shape or not torch.allclose(got, want, rtol=1e-4, atol=1e-5):
                error = (got - want).abs().max().item() if got.shape == want.shape else "shape"
                errors.append(f"thread {seed} call {i}: max error {error}")

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_static_module_from_four_threads():
    torch.manual_seed(0)
    model = MLP().eval()
    compiled = dscompile(model, (torch.randn(8, 64),), check="off", cache=False)
    assert hammer(compiled, model, lambda g: torch.randn(8, 64, generator=g)) == []


def test_dynamic_module_from_four_threads_on_different_lengths():
    """Threads on different sequence lengths at once: shapes differ call to call too."""
    torch.manual_seed(0)
    model = TransformerBlock().eval()
    compiled = dscompile(model, (torch.randn(2, 16, 64),), check="off", cache=False,
                         dynamic={"x": {0: "batch", 1: "seq"}})

    def make(g: torch.Generator) -> torch.Tensor:
        b, t = (int(v) for v in torch.randint(1, 20, (2,), generator=g))
        return torch.randn(b, t, 64, generator=g)

    assert hammer(compiled, model, make) == []
