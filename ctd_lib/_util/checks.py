"""Argument validation shared by every module.

Each helper raises a one-line :class:`ValueError` that names the argument and
what would have been valid, so bad input fails before any expensive work.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["check_choice", "check_count", "check_device", "check_in_range", "check_nonnegative", "check_positive"]


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``choices``, else raise ``ValueError``."""
    choices = list(choices)
    if value not in choices:
        valid = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name}={value!r} is not valid; choose one of: {valid}")
    return value


def check_positive(name: str, value: Any, *, integer: bool = False) -> Any:
    """Return ``value`` if it is a finite number > 0 (an int if ``integer``)."""
    kind = "a positive integer" if integer else "a positive finite number"
    if isinstance(value, bool):
        raise ValueError(f"{name}={value!r} is not valid; it must be {kind}")
    if integer:
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name}={value!r} is not valid; it must be {kind}")
        return value
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r} is not valid; it must be {kind}") from None
    if not (v > 0 and v != float("inf")):
        raise ValueError(f"{name}={value!r} is not valid; it must be {kind}")
    return value


def check_count(name: str, value: Any) -> int:
    """Return ``value`` if it is an integer >= 0 (not a bool): a seed, a count that may be zero."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name}={value!r} is not valid; it must be an integer >= 0")
    return value


def check_nonnegative(name: str, value: Any) -> Any:
    """Return ``value`` if it is a finite number >= 0."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r} is not valid; it must be a finite number >= 0") from None
    if not (v >= 0 and v != float("inf")):
        raise ValueError(f"{name}={value!r} is not valid; it must be a finite number >= 0")
    return value


def check_in_range(name: str, value: Any, lo: float, hi: float) -> Any:
    """Return ``value`` if ``lo <= value <= hi``."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r} is not valid; it must be a number in [{lo}, {hi}]") from None
    if not (lo <= v <= hi):
        raise ValueError(f"{name}={value!r} is not valid; it must be a number in [{lo}, {hi}]")
    return value


def check_device(name: str, device) -> str:
    """``device`` if it is ``"cpu"``, or ``"cuda"``/``"cuda:N"`` with a CUDA device visible to torch; else a
    one-line ValueError naming ``name``."""
    if not isinstance(device, str) or not (device == "cpu" or device.startswith("cuda")):
        raise ValueError(f"{name}={device!r} is not valid; use 'cpu' or 'cuda' (or 'cuda:N')")
    import torch  # imported here: the checks are imported by modules that need no torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"{name}={device!r} was asked for but torch sees no CUDA device; use 'cpu'")
    if device.startswith("cuda:"):
        index, n = device[5:], torch.cuda.device_count()
        if not index.isdigit() or int(index) >= n:
            raise ValueError(f"{name}={device!r} does not exist here; valid: 'cuda' or 'cuda:0'..'cuda:{n - 1}'")
    elif device not in ("cpu", "cuda"):
        raise ValueError(f"{name}={device!r} is not valid; use 'cpu' or 'cuda' (or 'cuda:N')")
    return device
