"""Progress bars for long loops: tqdm on a terminal, silent elsewhere (papermill, CI logs)."""
from __future__ import annotations

from collections.abc import Iterable

from tqdm import tqdm

__all__ = ["progress"]


def progress(iterable: Iterable, *, desc: str = "", total: int | None = None, enabled: bool | None = None):
    """Wrap ``iterable`` in a tqdm bar.

    ``enabled=None`` lets tqdm decide: shown when stderr is a terminal, hidden
    when it is not (so executed notebooks and CI logs stay clean).
    """
    disable = None if enabled is None else (not enabled)
    return tqdm(iterable, desc=desc, total=total, disable=disable, leave=False)
