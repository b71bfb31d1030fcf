r"""Finite-difference partials of the measured functionals in :math:`(\lambda, \gamma)`:
each probe is a short equilibration from the same model with the same seed, and the
partials are central differences. Used by the iso-classification process (Eq. 31) and by
iso-classification transfer (Eq. 30) of [Gao & Chaudhari 2020].

Choice made where the paper is silent: **common random numbers.** The partials are central
differences over probes (``fd_rel`` times the current value on each side). Each probe deep-copies
the current model, equilibrates it at the probed multipliers with the *same* seed (same
mini-batches, same latent noise) and is measured on the same fixed data with the same noise, so
the difference reflects the change of multiplier and not sampling noise."""
from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict, dataclass

from .._util.checks import check_nonnegative, check_positive
from .equilibrate import EquilibrationConfig, Sampler, equilibrate
from .functionals import FreeEnergyTerms, _check_xy, measure
from .model import FreeEnergyModel

__all__ = ["Partials", "central_differences", "finite_difference_partials"]


@dataclass(frozen=True)
class Partials:
    r"""Finite-difference partial derivatives of the equilibrium functionals :math:`R, D, C`.

    ``dX_dlambda``, ``dX_dgamma`` (:math:`X \in \{R, D, C\}`) are central differences in
    :math:`(\lambda, \gamma)`: the partials of Eq. (31) of [Gao & Chaudhari 2020]
    (iso-classification, :func:`finite_difference_partials`) and the left-hand side of
    Eqs. (30) and (38) (iso-classification transfer). The transfer also fills the
    optional fields: ``dX_dt``, forward differences in the data's time :math:`t` over
    ``dt`` (the :math:`\partial_t` terms of Eqs. 30 and 38), and the half-widths
    ``h_lambda``, ``h_gamma`` it used; for the iso-classification process they stay None.
    """

    dR_dlambda: float
    dR_dgamma: float
    dD_dlambda: float
    dD_dgamma: float
    dC_dlambda: float
    dC_dgamma: float
    n_probes: int  # equilibrated probe models (4 for central differences, + 2 for an equilibrated t-difference)
    dR_dt: float | None = None  # forward differences in t (iso-classification transfer only)
    dD_dt: float | None = None
    dC_dt: float | None = None
    h_lambda: float | None = None  # central half-widths in lambda and gamma (transfer only)
    h_gamma: float | None = None
    dt: float | None = None  # the step in t of the forward differences (transfer only)

    @property
    def has_t(self) -> bool:
        """Whether the partials in :math:`t` are filled in (the transfer's), not None."""
        return self.dR_dt is not None and self.dD_dt is not None and self.dC_dt is not None

    def to_dict(self) -> dict:
        """The fields as a plain dict; the optional (transfer) fields only where they are set."""
        return {k: v for k, v in asdict(self).items() if not (k in _OPTIONAL and v is None)}


_OPTIONAL = ("dR_dt", "dD_dt", "dC_dt", "h_lambda", "h_gamma", "dt")


def finite_difference_partials(
    model: FreeEnergyModel, sampler: Sampler, x_eval, y_eval, lam: float, gamma: float, *,
    h_lambda: float, h_gamma: float, equilibration: EquilibrationConfig, n_z_measure: int = 8, seed: int = 0,
) -> Partials:
    r"""Central finite differences of R, D, C at equilibrium: the partials of Eq. (31) of [Gao & Chaudhari 2020].

    .. math::

        \frac{\partial X}{\partial \lambda} \approx
        \frac{X(\theta_{\lambda + h_\lambda, \gamma}) - X(\theta_{\lambda - h_\lambda, \gamma})}{2 h_\lambda},
        \qquad
        \frac{\partial X}{\partial \gamma} \approx
        \frac{X(\theta_{\lambda, \gamma + h_\gamma}) - X(\theta_{\lambda, \gamma - h_\gamma})}{2 h_\gamma}

    for :math:`X \in \{R, D, C\}`, where :math:`\theta_{\lambda', \gamma'}` is a
    deep copy of ``model`` equilibrated at :math:`(\lambda', \gamma')` with
    :func:`equilibrate` and ``equilibration`` (``equilibration.steps`` updates,
    the same seed for every probe), and :math:`X` is measured on
    (``x_eval`` (n, C, H, W), ``y_eval`` (n,) or (n, K)) with noise ``seed``.
    ``model`` itself is not changed. Needs ``0 < h_lambda <= lam`` and
    ``0 < h_gamma <= gamma``.
    """
    check_nonnegative("lam", lam)
    check_nonnegative("gamma", gamma)
    check_positive("h_lambda", h_lambda)
    check_positive("h_gamma", h_gamma)
    if h_lambda > lam:
        raise ValueError(f"h_lambda={h_lambda!r} is not valid; it must be <= lam={lam!r} (lam - h_lambda >= 0)")
    if h_gamma > gamma:
        raise ValueError(f"h_gamma={h_gamma!r} is not valid; it must be <= gamma={gamma!r} (gamma - h_gamma >= 0)")
    if not isinstance(equilibration, EquilibrationConfig):
        raise ValueError(f"equilibration={equilibration!r} is not valid; it must be an EquilibrationConfig")
    check_positive("n_z_measure", n_z_measure, integer=True)
    x_eval, y_eval = _check_xy(x_eval, y_eval)

    def probe(lam_p: float, gamma_p: float) -> FreeEnergyTerms:
        m = copy.deepcopy(model)
        equilibrate(m, sampler, lam_p, gamma_p, equilibration, show_progress=False)
        return measure(m, x_eval, y_eval, n_z=n_z_measure, seed=seed)

    return Partials(**central_differences(probe, lam, gamma, h_lambda, h_gamma), n_probes=4)


def central_differences(probe: Callable[[float, float], FreeEnergyTerms], lam: float, gamma: float,
                        h_lambda: float, h_gamma: float) -> dict:
    r"""Central differences of :math:`R, D, C` in :math:`\lambda` and :math:`\gamma`.

    .. math::

        \frac{\partial X}{\partial\lambda} \approx \frac{X(\lambda + h_\lambda, \gamma) - X(\lambda - h_\lambda, \gamma)}{2h_\lambda},
        \qquad X \in \{R, D, C\},

    and likewise in :math:`\gamma`. ``probe(lam', gamma')`` returns the
    :class:`~ctd_lib.free_energy.FreeEnergyTerms` of a model equilibrated at
    (``lam'``, ``gamma'``); it is called four times, in the order
    :math:`+h_\lambda, -h_\lambda, +h_\gamma, -h_\gamma`. Returns the six
    derivatives keyed ``dR_dlambda``, ``dR_dgamma``, ..., ``dC_dgamma``.
    """
    lp, lm = probe(lam + h_lambda, gamma), probe(lam - h_lambda, gamma)
    gp, gm = probe(lam, gamma + h_gamma), probe(lam, gamma - h_gamma)
    out = {}
    for short, name in (("R", "rate"), ("D", "distortion"), ("C", "classification")):
        out[f"d{short}_dlambda"] = float((getattr(lp, name) - getattr(lm, name)) / (2.0 * h_lambda))
        out[f"d{short}_dgamma"] = float((getattr(gp, name) - getattr(gm, name)) / (2.0 * h_gamma))
    return out
