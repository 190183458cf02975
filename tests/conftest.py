"""Shared fixtures."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture
def one_thread():
    """Run a test with one torch thread: many tiny batched factorisations, where OpenMP
    wake-ups on a loaded 2-core machine cost milliseconds per op and dominate."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
