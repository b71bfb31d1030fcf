"""The old flat location of :mod:`ctd_lib.free_energy.surface`, :mod:`ctd_lib.free_energy.finite_differences`, :mod:`ctd_lib.free_energy.iso_classification`, kept so that existing imports keep working.

New code imports from the new location; this module will go in a later release.
"""
import warnings as _warnings

from .free_energy.finite_differences import *  # noqa: F403
from .free_energy.finite_differences import __all__ as _all1
from .free_energy.iso_classification import *  # noqa: F403
from .free_energy.iso_classification import __all__ as _all2
from .free_energy.surface import *  # noqa: F403
from .free_energy.surface import __all__ as _all0

__all__ = [*_all0, *_all1, *_all2]

_warnings.warn("ctd_lib.iso_classification moved to ctd_lib.free_energy.surface, ctd_lib.free_energy.finite_differences, ctd_lib.free_energy.iso_classification", DeprecationWarning, stacklevel=2)
