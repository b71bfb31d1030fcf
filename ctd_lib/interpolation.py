"""The old flat location of :mod:`ctd_lib.transport.interpolation`, kept so that existing imports keep working.

New code imports from the new location; this module will go in a later release.
"""
import warnings as _warnings

from .transport.interpolation import *  # noqa: F403
from .transport.interpolation import __all__ as _all0

__all__ = [*_all0]

_warnings.warn("ctd_lib.interpolation moved to ctd_lib.transport.interpolation", DeprecationWarning, stacklevel=2)
