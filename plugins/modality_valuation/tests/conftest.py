"""One torch thread for these tests: their models are tiny, and on a shared 2-core machine a second
intra-op thread spins instead of helping (a step takes 5 ms with one thread, 300 ms with two)."""
import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
