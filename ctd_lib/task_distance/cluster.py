r"""Where the pairs of a distance matrix run: in this process, on a local cluster, or on a cluster
whose scheduler is already running.

Every ordered pair of a matrix is independent, so a matrix fans out over processes and machines
with no change to the numbers. We do not write a scheduler: :func:`open_executor` returns a
``concurrent.futures.Executor`` from `Dask distributed <https://distributed.dask.org>`_, which
:func:`~ctd_lib.task_distance.matrices.distance_matrix` accepts.

A scheduler is named by a string:

``""``
    no executor: the pairs run one after the other in this process (the default);
``"local:N"``
    a ``distributed.LocalCluster`` of ``N`` worker processes with one thread each, bound to
    127.0.0.1, started for the ``with`` block and shut down after it;
``"tcp://host:port"``
    the scheduler of a running cluster (``dask scheduler`` and ``dask worker`` by hand, or
    ``dask_jobqueue.SLURMCluster`` / ``PBSCluster``, or Kubernetes); it must answer within
    ``timeout`` seconds.

Dask retries a pair whose worker died (``allowed-failures``) and, with ``retries``, a pair that
raised; :func:`~ctd_lib.task_distance.matrices.distance_matrix` reports a pair that keeps failing
by name while the others finish and are cached.
"""
from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from concurrent.futures import Executor

from .._util.checks import check_count

__all__ = ["SCHEDULER_HELP", "check_scheduler", "open_executor"]

SCHEDULER_HELP = '"" (in this process), "local:N" (N >= 1 local worker processes) or "tcp://host:port"'
_LOCAL = re.compile(r"^local:(\d+)$")
_ADDRESS = re.compile(r"^(tcp|tls|inproc|ucx)://\S+$")


def check_scheduler(name: str, scheduler) -> str:
    """``scheduler`` if it has one of the three forms (no connection is tried); else a ValueError naming ``name``."""
    if not isinstance(scheduler, str):
        raise ValueError(f"{name}={scheduler!r} is not valid; use {SCHEDULER_HELP}")
    m = _LOCAL.match(scheduler)
    if m and int(m.group(1)) < 1:
        raise ValueError(f"{name}={scheduler!r} is not valid: a local cluster needs at least 1 worker; "
                         f"use {SCHEDULER_HELP}")
    if scheduler and not m and not _ADDRESS.match(scheduler):
        raise ValueError(f"{name}={scheduler!r} is not valid; use {SCHEDULER_HELP}")
    return scheduler


@contextlib.contextmanager
def open_executor(scheduler: str, *, retries: int = 1, timeout: float = 10.0,
                  name: str = "scheduler") -> Iterator[Executor | None]:
    """The executor of ``scheduler`` for the ``with`` block (None for ``""``); the cluster is closed after it.

    ``retries`` is how often Dask re-runs a pair that raised (a pair whose worker was killed is
    re-run anyway); ``timeout`` bounds the wait for a remote scheduler, after which a ValueError
    names the address.
    """
    check_scheduler(name, scheduler)
    check_count("retries", retries)
    if not scheduler:
        yield None
        return
    from distributed import Client, LocalCluster  # imported here: Dask is only needed past one process

    m = _LOCAL.match(scheduler)
    with contextlib.ExitStack() as stack:
        if m:
            # Dask's statistical profiler samples the task thread's stack every 10 ms; with torch's many
            # small GIL-releasing ops it cost about 15% of a pair here, so a local cluster runs without it
            import dask

            stack.enter_context(dask.config.set({"distributed.worker.profile.enabled": False}))
            cluster = stack.enter_context(LocalCluster(
                n_workers=int(m.group(1)), threads_per_worker=1, processes=True, host="127.0.0.1",
                dashboard_address=None, silence_logs=40))
            client = stack.enter_context(Client(cluster, set_as_default=False))
        else:
            try:
                client = stack.enter_context(Client(scheduler, timeout=timeout, set_as_default=False))
            except (OSError, TimeoutError) as exc:
                raise ValueError(f"{name}={scheduler!r}: no Dask scheduler answered there within {timeout:g} s "
                                 f"({type(exc).__name__}: {exc})") from exc
        yield client.get_executor(retries=retries, pure=False)
