"""The old flat location of :mod:`ctd_lib.free_energy.iso_transfer`, :mod:`ctd_lib.free_energy.transfer_baselines`, kept so that existing imports keep working.

New code imports from the new location; this module will go in a later release.
"""
import warnings as _warnings

from .free_energy.iso_transfer import *  # noqa: F403
from .free_energy.iso_transfer import __all__ as _all0
from .free_energy.transfer_baselines import *  # noqa: F403
from .free_energy.transfer_baselines import __all__ as _all1

__all__ = [*_all0, *_all1]

_warnings.warn("ctd_lib.iso_transfer moved to ctd_lib.free_energy.iso_transfer, ctd_lib.free_energy.transfer_baselines", DeprecationWarning, stacklevel=2)
