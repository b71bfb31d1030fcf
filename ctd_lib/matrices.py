"""The old flat location of :mod:`ctd_lib.task_distance.matrices`, kept so that existing imports keep working.

New code imports from the new location; this module will go in a later release.
"""
import warnings as _warnings

from .task_distance.matrices import *  # noqa: F403
from .task_distance.matrices import __all__ as _all0

__all__ = [*_all0]

_warnings.warn("ctd_lib.matrices moved to ctd_lib.task_distance.matrices", DeprecationWarning, stacklevel=2)
