r"""The authors' controller for a transfer at constant classification loss (seed 004's code, README).

The README of the seeds describes the authors' free-energy code as: "transfer 0-4 to 5-9 in 25
mixing steps with a heuristic that raises gamma when the loss rises". The paper itself prints
no such rule (its Sec. 4.3 solves Eq. 30 instead), so this module states one precisely. At each
step :math:`t_k \to t_{k+1}` of the data, with :math:`\lambda` held at :math:`\lambda_0`:

.. math::

    \theta \leftarrow \mathrm{equilibrate}(\theta;\ p(x, t_{k+1}), \lambda_0, \gamma), \qquad
    \text{while } C^{\text{val}}_{t_{k+1}}(\theta) > C_0 (1 + \tau) \text{ and } r < r_{\max}:\
    \gamma \leftarrow \min(f\gamma, \gamma_{\max}),\ \theta \leftarrow \mathrm{equilibrate}(\theta;\ \dots, \gamma),\
    r \leftarrow r + 1

where :math:`C^{\text{val}}_t` is the classification loss on the held-out data at :math:`t`,
:math:`C_0` its value at :math:`t = 0`, :math:`\tau` = ``tolerance``, :math:`f` = ``gamma_factor``
(> 1), :math:`r_{\max}` = ``max_repeats`` and :math:`\gamma_{\max}` = ``gamma_max``. Raising
:math:`\gamma` weighs :math:`C` more in :math:`R + \lambda D + \gamma C` (Eq. 8), so the repeated
equilibration lowers :math:`C`; :math:`\gamma` is never lowered. The loop stops with
:math:`C \le C_0(1 + \tau)` or after :math:`r_{\max}` repeats (``held`` says which), and every
mini-batch update is counted. A non-finite :math:`C` (the model diverged, e.g. at a very large
:math:`\gamma`) ends the loop at once: ``finite`` is then False and ``held`` False.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

from .equilibrate import EquilibrationConfig, equilibrate

__all__ = ["ControllerStep", "repeat_until_held"]


@dataclass(frozen=True)
class ControllerStep:
    """One step of :func:`repeat_until_held`.

    Attributes
    ----------
    gamma_start, gamma_end : :math:`\\gamma` before the first and after the last equilibration.
    repeats : equilibrations repeated after the first (at most ``max_repeats``).
    updates : mini-batch updates taken, ``(1 + repeats) * equilibration.steps``.
    c_history : the held-out :math:`C` after each equilibration (``1 + repeats`` entries).
    held : whether the last entry is at most :math:`C_0 (1 + \\tau)`.
    c_target : :math:`C_0 (1 + \\tau)`.
    finite : whether every measured :math:`C` was finite (False: the model diverged).
    """

    gamma_start: float
    gamma_end: float
    repeats: int
    updates: int
    c_history: tuple
    held: bool
    c_target: float
    finite: bool = True


def repeat_until_held(model, sampler, lam: float, gamma: float, c0: float, measure_c: Callable[[], float],
                      equilibration: EquilibrationConfig, *, gamma_factor: float, max_repeats: int,
                      tolerance: float, gamma_max: float, seed: int) -> ControllerStep:
    r"""Equilibrate ``model`` in place, then repeat with :math:`\gamma \leftarrow f\gamma` while held-out C exceeds :math:`C_0(1+\tau)`.

    ``sampler`` draws mini-batches of :math:`p(x, t_{k+1})`; ``measure_c()`` returns the held-out
    :math:`C` of ``model`` now. Equilibration ``r`` uses seed ``seed + r``. See the module docstring.
    """
    target = float(c0) * (1.0 + float(tolerance))
    g0, g = float(gamma), float(gamma)
    history, repeats = [], 0
    equilibrate(model, sampler, lam, g, replace(equilibration, seed=seed), show_progress=False)
    history.append(float(measure_c()))
    while math.isfinite(history[-1]) and history[-1] > target and repeats < max_repeats:
        g = min(g * float(gamma_factor), float(gamma_max))
        repeats += 1
        equilibrate(model, sampler, lam, g, replace(equilibration, seed=seed + repeats), show_progress=False)
        history.append(float(measure_c()))
    return ControllerStep(gamma_start=g0, gamma_end=g, repeats=repeats, updates=(1 + repeats) * equilibration.steps,
                          c_history=tuple(history), held=bool(history[-1] <= target), c_target=target,
                          finite=all(math.isfinite(c) for c in history))
