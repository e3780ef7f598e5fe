"""Shared test fixtures. Every test gets deterministic torch and numpy seeds."""

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _seed():
    import torch

    torch.manual_seed(0)
    np.random.seed(0)
