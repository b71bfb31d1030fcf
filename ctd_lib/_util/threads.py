"""Torch and BLAS thread counts: one thread gives the same numbers on every CPU, and on a loaded
machine it avoids spin-waiting threads (measured on the 2-core machines: one SVD of a 400 x 256
matrix in 1.8 s with OpenBLAS's two threads under load, 0.03 s with one)."""
from __future__ import annotations

import contextlib

import torch

from .checks import check_count, check_positive

__all__ = ["limited_threads", "pin_threads"]


def _blas_limits(n: int):
    try:
        from threadpoolctl import threadpool_limits  # installed with scikit-learn
    except ImportError:  # pragma: no cover
        return None
    return threadpool_limits(limits=n, user_api="blas")


@contextlib.contextmanager
def limited_threads(n: int):
    """Run with ``n`` torch intra-op threads and ``n`` BLAS threads (``n = 0``: unchanged), restored afterwards."""
    check_count("n", n)
    if n == 0:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    limits = _blas_limits(n)
    try:
        yield
    finally:
        if limits is not None:
            limits.restore_original_limits()
        torch.set_num_threads(before)


def pin_threads(n: int = 1) -> None:
    """Set ``n`` torch and ``n`` BLAS threads for the rest of the process (a chapter's kernel)."""
    check_positive("n", n, integer=True)
    torch.set_num_threads(n)
    _blas_limits(n)
