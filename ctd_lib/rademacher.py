"""The old flat location of :mod:`ctd_lib.task_distance.rademacher`, kept so that existing imports keep working.

New code imports from the new location; this module will go in a later release.
"""
import warnings as _warnings

from .task_distance.rademacher import *  # noqa: F403
from .task_distance.rademacher import __all__ as _all0

__all__ = [*_all0]

_warnings.warn("ctd_lib.rademacher moved to ctd_lib.task_distance.rademacher", DeprecationWarning, stacklevel=2)
