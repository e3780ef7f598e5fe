"""Shared test fixtures. Every test gets deterministic torch and numpy seeds, and each
test process its own empty compile cache (a user's ~/.cache, or an earlier run, must not
decide what a test builds)."""

import os
import tempfile

import numpy as np
import pytest

os.environ.setdefault("DSCOMPILE_CACHE_DIR", tempfile.mkdtemp(prefix="dscompile-test-cache-"))
# ... and its own tuning database: no test reads or writes a user's tuning decisions
os.environ.setdefault("DSCOMPILE_TUNING_DIR", tempfile.mkdtemp(prefix="dscompile-test-tuning-"))


@pytest.fixture(autouse=True)
def _seed():
    import torch

    torch.manual_seed(0)
    np.random.seed(0)
