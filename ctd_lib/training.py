"""The old flat location of :mod:`ctd_lib.geometry.sgd`, kept so that existing imports keep working.

New code imports from the new location; this module will go in a later release.
"""
import warnings as _warnings

from .geometry.sgd import *  # noqa: F403
from .geometry.sgd import __all__ as _all0

__all__ = [*_all0]

_warnings.warn("ctd_lib.training moved to ctd_lib.geometry.sgd", DeprecationWarning, stacklevel=2)
