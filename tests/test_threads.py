"""Thread pinning of the chapters: torch's and BLAS's counts are set, and restored where promised."""
import pytest
import torch
from threadpoolctl import threadpool_info

from ctd_lib import pin_threads
from ctd_lib._util.threads import limited_threads


def _blas_threads():
    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


def test_limited_threads_sets_and_restores_both_counts():
    torch_before, blas_before = torch.get_num_threads(), _blas_threads()
    with limited_threads(1):
        assert torch.get_num_threads() == 1
        assert all(n == 1 for n in _blas_threads())
    assert torch.get_num_threads() == torch_before and _blas_threads() == blas_before


def test_pin_threads_sets_both_and_rejects_zero():
    torch_before = torch.get_num_threads()
    try:
        pin_threads(1)
        assert torch.get_num_threads() == 1 and all(n == 1 for n in _blas_threads())
    finally:
        torch.set_num_threads(torch_before)
    with pytest.raises(ValueError, match="n="):
        pin_threads(0)
    with pytest.raises(ValueError, match="n="):
        limited_threads(-1).__enter__()
