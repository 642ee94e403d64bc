"""Fixtures for every test."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Small models run fastest on one thread, and the tests don't fight other work for the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
