"""The old flat location of :mod:`ctd_lib.task_distance.finetune`, :mod:`ctd_lib.task_distance.task2vec`, kept so that existing imports keep working.

New code imports from the new location; this module will go in a later release.
"""
import warnings as _warnings

from .task_distance.finetune import *  # noqa: F403
from .task_distance.finetune import __all__ as _all0
from .task_distance.task2vec import *  # noqa: F403
from .task_distance.task2vec import __all__ as _all1

__all__ = [*_all0, *_all1]

_warnings.warn("ctd_lib.baselines moved to ctd_lib.task_distance.finetune, ctd_lib.task_distance.task2vec", DeprecationWarning, stacklevel=2)
