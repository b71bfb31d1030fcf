r"""Generalisation along a transfer trajectory: Theorem 5 and Rademacher complexity (Sec. 4 of
[Gao & Chaudhari 2021]).

Two views of how well the weights :math:`w(\tau)` of a transfer trajectory
generalise on the interpolated task :math:`p_\tau`.

**Rademacher complexity** (Eq. 13 of [Gao & Chaudhari 2021]) of a loss class
over a hypothesis set :math:`A(r)`:

.. math::

    R_N(r) = \mathbb{E}_{\hat p \sim p}\ \mathbb{E}_\sigma
        \Big[\sup_{w \in A(r)} \frac1N \sum_{i=1}^N \sigma^i\, \ell(w; x^i, y^i)\Big],

with :math:`\sigma^i` iid uniform on :math:`\{-1, 1\}`. For linear scores
:math:`f_w(x) = \langle w, \phi(x)\rangle` on fixed features and the ball
:math:`A(r) = \{\|w\|_2 \le r\}` the supremum is exact (Cauchy-Schwarz):

.. math::

    \sup_{\|w\|_2 \le r} \frac1N \sum_i \sigma^i \langle w, \phi_i\rangle
        = \frac rN \Big\|\sum_i \sigma^i \phi_i\Big\|_2 ,

so :func:`rademacher_linear` is a Monte-Carlo average over :math:`\sigma` of an
exact supremum. For the loss class of the clipped logistic loss
:math:`\ell = \min(M, \log(1 + e^{-y f_w(x)}))`, which is 1-Lipschitz in the
margin, the Ledoux-Talagrand contraction gives
:math:`R_N(\ell\circ F) \le R_N(F)` (:func:`contraction_upper`), and projected
gradient ascent on each :math:`\sigma`-weighted sum gives a lower estimate
(:func:`rademacher_loss_class_lower`). The classical bound printed in Sec. 4,
holding for every :math:`w \in A(r)` with probability at least :math:`1-\delta`,

.. math::

    \mathbb{E}_p\,\ell(w) - \frac1N\sum_i \ell(w; x^i, y^i)
        \le 2 R_N + M \sqrt{\frac{2\log(1/\delta)}{N}},

is :func:`classical_bound`; it is a valid, twice looser (in its second term)
version of the standard :math:`2R_N + M\sqrt{\log(1/\delta)/(2N)}` (e.g. Mohri
et al., *Foundations of Machine Learning*, Thm. 3.3, scaled to losses in :math:`[0, M]`).

**Theorem 5** (Eq. 14 of [Gao & Chaudhari 2021]). The extracted text of the
paper damages Eq. (14) and omits its proof ("Sec. C"); here is the derivation
this module implements, with every assumption named. Let :math:`\ell \in [0, M]`
be a bounded loss (we use the cross-entropy clipped at :math:`M`,
:func:`clipped_cross_entropy`), :math:`0 = \tau_0 \le \tau_1 < \dots < \tau_K \le 1`
instants (:func:`check_instants`), :math:`N` samples
:math:`(x^k_i, y^k_i) \sim p_{\tau_k}` at each instant, :math:`w_k = w(\tau_k)` and

.. math::

    G_k(w) = \mathbb{E}_{p_{\tau_k}} \ell(w) - \frac1N \sum_{i=1}^N \ell(w; x^k_i, y^k_i).

* **A1** (independence): the samples at instant :math:`k` are independent of
  :math:`w_{k-1}`. Hoeffding's inequality then gives
  :math:`P(|G_k(w_{k-1})| > t) \le 2\exp(-2Nt^2/M^2)`.
* **A2** (the loss moves alike on the samples and in expectation):
  :math:`|\frac1N\sum_i \ell(w_k; z^k_i) - \ell(w_{k-1}; z^k_i)| \le \delta_k` with
  :math:`\delta_k = \mathbb{E}_{x\sim p_{\tau_k}} |\ell(w_k) - \ell(w_{k-1})|`, so
  :math:`|G_k(w_k) - G_k(w_{k-1})| \le 2\delta_k`.
* If the average :math:`\frac1K\sum_k G_k(w_k)` exceeds :math:`\epsilon`, some
  :math:`G_k(w_k) > \epsilon`, hence :math:`G_k(w_{k-1}) > \epsilon - 2\delta_k \ge
  \epsilon - 2\sum_j \delta_j`. A union bound over the :math:`K` instants:

  .. math::

      P\Big(\frac1K \sum_{k=1}^K G_k(w_k) > \epsilon\Big)
          \le 2K \exp\Big(-\frac{2N}{M^2}\Big(\epsilon - 2\sum_{k=1}^K \delta_k\Big)^2\Big),
      \qquad \epsilon > 2\sum_{k=1}^K \delta_k ,

  the condition printed before Eq. (14),
  :math:`\epsilon > 2\sum_k (\tau_k - \tau_{k-1})\,\mathbb{E}|\Delta\ell|`.
* **A3** (speed): for :math:`\ell = -\log p_w(y\mid x)` with :math:`y \sim p_w(\cdot\mid x)`,
  :math:`\mathbb{E}_y[(d\ell/d\tau)^2] = \dot w^\top g_x \dot w`, so
  :math:`\mathbb{E}_y|d\ell/d\tau| \le \sqrt{\langle \dot w, g_x \dot w\rangle}` and
  :math:`\delta_k \lesssim \Delta\tau_k\, \mathbb{E}_x\sqrt{\langle\dot w, g\,\dot w\rangle}
  \approx \mathbb{E}_x \sqrt{2\,\mathrm{KL}(p_{w_{k-1}}(\cdot\mid x), p_{w_k}(\cdot\mid x))}`
  (Eq. 2). This gives the printed form of Eq. (14),

  .. math::

      2K\exp\Big(-\frac{2N}{M^2}\Big(\epsilon - 2\sum_{k=1}^K \Delta\tau_k\,
          \mathbb{E}_{x\sim p_{\tau_k}}\sqrt{\langle \dot w(\tau_k), g(w(\tau_k))\,\dot w(\tau_k)\rangle}\Big)^2\Big),

  with the factor :math:`N` restored in the exponent: the printed exponent has
  none, Hoeffding's has it (``n_in_exponent=False`` reproduces the printed form).
  The speed term :math:`S = \sum_k \mathbb{E}_x\sqrt{2\mathrm{KL}}` tends to the
  per-sample Fisher-Rao length of the trajectory as :math:`\Delta\tau \to 0`.

A3 bounds the loss change for labels drawn from the model; :func:`trajectory_gap`
reports both the speed term :math:`S` and the true-label loss change
:math:`\sum_k \delta_k` that A2 needs, and the per-instant training-sample loss
change so that A2 can be checked instant by instant. A1 fails for a trajectory
trained on the very samples it is evaluated on; measuring the gap is the point.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._util.checks import check_in_range, check_nonnegative, check_positive
from .._util.torch_state import load_buffers
from ..geometry.length import kl_categorical, set_flat_parameters

__all__ = [
    "RademacherEstimate", "Theorem5Bound", "TrajectoryGap", "check_instants", "classical_bound",
    "clipped_cross_entropy", "clipped_logistic_loss", "contraction_upper", "fit_linear_ball", "n_for_nonvacuous",
    "rademacher_linear", "rademacher_loss_class_lower", "theorem5_bound", "theorem5_threshold", "trajectory_gap"
]

# ----------------------------------------------------------------------------
# bounded losses
# ----------------------------------------------------------------------------


def clipped_cross_entropy(logits: torch.Tensor, y: torch.Tensor, loss_bound: float) -> torch.Tensor:
    r"""Per-example cross-entropy clipped at :math:`M`, the bounded loss of Sec. 4 of [Gao & Chaudhari 2021].

    .. math::

        \ell(w; x, y) = \min\Big(-\sum_c y_c \log p_w(c\mid x),\ M\Big) \in [0, M]

    where :math:`y` is one-hot (integer labels) or a label distribution (soft labels
    of the interpolated task) and :math:`M` is ``loss_bound``.

    Parameters
    ----------
    logits : (n, C) unnormalised log-probabilities.
    y : (n,) integer labels in [0, C) or (n, C) label distributions.
    loss_bound : :math:`M > 0`.

    Returns
    -------
    (n,) tensor in the dtype of ``logits``.

    >>> logits = torch.tensor([[0.0, 0.0], [0.0, 10.0]])
    >>> clipped_cross_entropy(logits, torch.tensor([0, 0]), 2.0).tolist()  # log 2, then 10 clipped at 2
    [0.6931471824645996, 2.0]
    """
    check_positive("loss_bound", loss_bound)
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        raise ValueError(f"logits must be an (n, C) tensor; got {getattr(logits, 'shape', type(logits).__name__)}")
    y = torch.as_tensor(y, device=logits.device)
    n, c = logits.shape
    logp = torch.log_softmax(logits, dim=1)
    if y.dim() == 1:
        if y.shape[0] != n or y.dtype.is_floating_point:
            raise ValueError(f"y must be (n,) integer labels or (n, C) label distributions for logits of shape "
                             f"{(n, c)}; got shape {tuple(y.shape)}, dtype {y.dtype}")
        if n and (int(y.min()) < 0 or int(y.max()) >= c):
            raise ValueError(f"y has labels outside [0, {c})")
        ce = -logp.gather(1, y.long().unsqueeze(1)).squeeze(1)
    elif y.dim() == 2 and tuple(y.shape) == (n, c):
        ce = -(y.to(logp.dtype) * logp).sum(dim=1)
    else:
        raise ValueError(f"y must be (n,) integer labels or (n, C) label distributions for logits of shape "
                         f"{(n, c)}; got shape {tuple(y.shape)}")
    return ce.clamp(max=float(loss_bound))


def clipped_logistic_loss(w: torch.Tensor, features, labels_pm1, loss_bound: float) -> torch.Tensor:
    r"""Per-example :math:`\min(M, \log(1 + e^{-y\langle w, \phi(x)\rangle}))`, the binary clipped cross-entropy.

    ``w`` (d,) or (D, d) (then the result is (D, n)), ``features`` (n, d), ``labels_pm1`` (n,) in {-1, +1}.
    """
    check_positive("loss_bound", loss_bound)
    phi = _as_features(features)
    y = _as_labels_pm1(labels_pm1, phi.shape[0])
    margin = (torch.as_tensor(w, dtype=torch.float64) @ phi.T) * y
    return F.softplus(-margin).clamp(max=float(loss_bound))


# ----------------------------------------------------------------------------
# Theorem 5
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Theorem5Bound:
    """The right-hand side of Theorem 5 (Eq. 14 of [Gao & Chaudhari 2021]) at one ``eps``.

    Attributes
    ----------
    probability : :math:`\\min(1, 2K\\exp(-2N(\\epsilon - 2T)^2/M^2))`; 1.0 when not applicable.
    applicable : ``eps > threshold``.
    threshold : :math:`2T`, twice the trajectory term.
    eps, n, K, loss_bound, trajectory_term, n_in_exponent : the inputs
        (:math:`\\epsilon, N, K, M, T`, and whether :math:`N` multiplies the exponent).
    """

    probability: float
    applicable: bool
    threshold: float
    eps: float
    n: int
    K: int
    loss_bound: float
    trajectory_term: float
    n_in_exponent: bool


def theorem5_threshold(trajectory_term: float) -> float:
    r""":math:`2T`: Theorem 5 applies to :math:`\epsilon > 2T`, with :math:`T = \sum_k \delta_k` (or the speed
    term :math:`S`)."""
    check_nonnegative("trajectory_term", trajectory_term)
    return 2.0 * float(trajectory_term)


def theorem5_bound(eps: float, *, n: int, K: int, loss_bound: float, trajectory_term: float,
                   n_in_exponent: bool = True, strict: bool = True) -> Theorem5Bound:
    r"""Upper bound of Theorem 5 on :math:`P(\frac1K\sum_k G_k(w_k) > \epsilon)`, Eq. (14) of [Gao & Chaudhari 2021].

    .. math::

        P \le \min\Big(1,\ 2K \exp\Big(-\frac{2N}{M^2}\big(\epsilon - 2T\big)^2\Big)\Big),
        \qquad \epsilon > 2T,

    where :math:`N` is ``n`` (dropped from the exponent when ``n_in_exponent`` is
    False, the form printed in the paper), :math:`K` the number of instants,
    :math:`M` ``loss_bound`` and :math:`T` ``trajectory_term``
    (:math:`\sum_k\delta_k` of A2, or the speed term :math:`S` of A3; see the module docstring).

    ``strict`` raises a ``ValueError`` naming ``eps`` when :math:`\epsilon \le 2T`;
    otherwise the result has ``applicable=False`` and ``probability=1.0``.

    >>> b = theorem5_bound(0.5, n=100, K=1, loss_bound=1.0, trajectory_term=0.0)
    >>> round(b.probability, 6), b.applicable  # 2 exp(-2 * 100 * 0.25)
    (0.0, True)
    >>> round(theorem5_bound(0.1, n=100, K=1, loss_bound=1.0, trajectory_term=0.0).probability, 6)
    0.270671
    """
    check_positive("n", n, integer=True)
    check_positive("K", K, integer=True)
    check_positive("loss_bound", loss_bound)
    threshold = theorem5_threshold(trajectory_term)
    try:
        e = float(eps)
    except (TypeError, ValueError):
        raise ValueError(f"eps={eps!r} is not valid; it must be a finite number") from None
    if not math.isfinite(e):
        raise ValueError(f"eps={eps!r} is not valid; it must be a finite number")
    applicable = e > threshold
    if not applicable:
        if strict:
            raise ValueError(f"eps={e!r} is at or below 2*sum(trajectory terms)={threshold!r}; Theorem 5 applies "
                             f"only where eps > {threshold!r} (pass strict=False for probability 1)")
        prob = 1.0
    else:
        scale = float(n) if n_in_exponent else 1.0
        prob = min(1.0, 2.0 * K * math.exp(-2.0 * scale * (e - threshold) ** 2 / float(loss_bound) ** 2))
    return Theorem5Bound(probability=prob, applicable=applicable, threshold=threshold, eps=e, n=int(n), K=int(K),
                         loss_bound=float(loss_bound), trajectory_term=float(trajectory_term),
                         n_in_exponent=bool(n_in_exponent))


def n_for_nonvacuous(eps: float, K: int, loss_bound: float, trajectory_term: float,
                     target_prob: float = 0.05) -> int | float:
    r"""Smallest :math:`N` with :math:`2K\exp(-2N(\epsilon - 2T)^2/M^2) \le` ``target_prob`` (Theorem 5).

    .. math::

        N = \Big\lceil \frac{M^2 \log(2K/p)}{2(\epsilon - 2T)^2} \Big\rceil ;

    ``math.inf`` when :math:`\epsilon \le 2T` (no :math:`N` helps: the speed term does not shrink with :math:`N`).

    >>> n_for_nonvacuous(0.5, 1, 1.0, 0.0, target_prob=2 * math.exp(-2))
    4
    """
    check_positive("K", K, integer=True)
    check_positive("loss_bound", loss_bound)
    check_in_range("target_prob", target_prob, 0.0, 1.0)
    if not target_prob > 0:
        raise ValueError(f"target_prob={target_prob!r} is not valid; it must be a number in (0, 1]")
    threshold = theorem5_threshold(trajectory_term)
    if not eps > threshold:
        return math.inf
    need = loss_bound ** 2 * math.log(2.0 * K / target_prob) / (2.0 * (eps - threshold) ** 2)
    return max(1, int(math.ceil(need - 1e-9)))


def check_instants(taus) -> np.ndarray:
    r"""Validate the instants of Theorem 5: :math:`0 \le \tau_0 \le \tau_1 < \tau_2 < \dots < \tau_K \le 1`.

    Strictly increasing after the first; :math:`\tau_0 = \tau_1` is allowed as in
    the paper (which fixes :math:`\tau_0 = 0`). Returns a float64 copy; raises a
    ``ValueError`` naming ``taus`` otherwise.

    >>> check_instants([0.0, 0.0, 0.5, 1.0]).tolist()
    [0.0, 0.0, 0.5, 1.0]
    """
    try:
        t = np.array(taus, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"taus={taus!r} is not valid; it must be a 1-D sequence of numbers in [0, 1]") from None
    if t.ndim != 1 or t.size < 2:
        raise ValueError(f"taus must be a 1-D sequence of at least 2 instants (K >= 1); got shape {t.shape}")
    if not np.all(np.isfinite(t)) or t.min() < 0 or t.max() > 1:
        raise ValueError(f"taus={t.tolist()} is not valid; every instant must be in [0, 1]")
    if t[1] < t[0] or np.any(np.diff(t[1:]) <= 0):
        raise ValueError(f"taus={t.tolist()} is not valid; need tau_0 <= tau_1 < tau_2 < ... < tau_K "
                         "(non-increasing instants are rejected)")
    return t


# ----------------------------------------------------------------------------
# the gap along a trajectory
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TrajectoryGap:
    """Training and held-out losses along a trajectory, and the two trajectory terms of Theorem 5.

    Attributes
    ----------
    taus : (K+1,) instants.
    train_loss : (K+1,) clipped loss on the N training samples at each instant.
    population_loss : (K+1,) clipped loss on held-out samples of :math:`p_\\tau` (a large sample).
    gap : population_loss - train_loss.
    avg_gap : mean of ``gap`` over k = 1..K (the quantity of Theorem 5).
    speed_term : :math:`S = \\sum_{k\\ge1}\\mathbb{E}_x
        \\sqrt{2\\mathrm{KL}(p_{w_{k-1}}(\\cdot|x)\\|p_{w_k}(\\cdot|x))}`, held-out :math:`x \\sim p_{\\tau_k}` (A3).
    loss_change_term : :math:`\\sum_{k\\ge1}\\delta_k`, :math:`\\delta_k = \\mathbb{E}|\\ell(w_k) - \\ell(w_{k-1})|`
        on held-out samples with their true (possibly soft) labels (A2).
    speed : (K,) the terms of ``speed_term``.
    loss_change : (K,) the :math:`\\delta_k`.
    train_loss_change : (K,) :math:`|\\frac1N\\sum_i \\ell(w_k; z_i) - \\ell(w_{k-1}; z_i)|` on the training
        samples at :math:`\\tau_k`; A2 holds at instant k when it is at most ``loss_change[k-1]``.
    loss_bound : :math:`M`.
    """

    taus: np.ndarray
    train_loss: np.ndarray
    population_loss: np.ndarray
    gap: np.ndarray
    avg_gap: float
    speed_term: float
    loss_change_term: float
    speed: np.ndarray
    loss_change: np.ndarray
    train_loss_change: np.ndarray
    loss_bound: float

    @property
    def a2_holds(self) -> np.ndarray:
        """(K,) bool: whether A2 holds at each instant k = 1..K."""
        return self.train_loss_change <= self.loss_change + 1e-12


@torch.no_grad()
def trajectory_gap(model: nn.Module, checkpoints, taus, train_batches, population_batches, *,
                   loss_bound: float, buffers=None) -> TrajectoryGap:
    r"""Measured generalisation gap along a trajectory and the terms of Theorem 5 (Eq. 14 of [Gao & Chaudhari 2021]).

    .. math::

        \mathrm{gap}_k &= \mathbb{E}_{p_{\tau_k}}\ell(w_k) - \frac1N\sum_i \ell(w_k; x^k_i, y^k_i), \\
        S &= \sum_{k=1}^K \mathbb{E}_{x\sim p_{\tau_k}}
            \sqrt{2\,\mathrm{KL}\big(p_{w_{k-1}}(\cdot\mid x)\,\|\,p_{w_k}(\cdot\mid x)\big)}, \qquad
        \sum_{k=1}^K \delta_k = \sum_{k=1}^K \mathbb{E}_{p_{\tau_k}} |\ell(w_k) - \ell(w_{k-1})|,

    where :math:`\ell` is the cross-entropy clipped at :math:`M` and the
    expectations over :math:`p_{\tau_k}` are averages over ``population_batches[k]``.

    Parameters
    ----------
    model : a network with the flat parameter layout of ``checkpoints`` (left unchanged: a copy is used).
    checkpoints : K+1 flat weight vectors :math:`w_k` (as ``TrajectoryLog.checkpoints``).
    taus : K+1 instants, validated by :func:`check_instants`.
    train_batches : K+1 pairs ``(x, y)``, the N training samples at each instant; ``y`` (N,) integer or (N, C) soft.
    population_batches : K+1 pairs ``(x, y)`` of held-out samples at each instant.
    loss_bound : :math:`M`.
    buffers : optional K+1 lists of buffer tensors (``TrajectoryLog.checkpoint_buffers``, batch-norm statistics).

    Everything is evaluated in eval mode, the KL in float64.
    """
    check_positive("loss_bound", loss_bound)
    t = check_instants(taus)
    n = len(t)
    for name, seq in (("checkpoints", checkpoints), ("train_batches", train_batches),
                      ("population_batches", population_batches)):
        if len(seq) != n:
            raise ValueError(f"{name} has {len(seq)} entries; taus has {n} (one per instant)")
    if buffers is not None and len(buffers) != n:
        raise ValueError(f"buffers has {len(buffers)} entries; taus has {n} (one per instant)")
    m = copy.deepcopy(model).eval()
    dev = next(m.parameters()).device

    def load(k: int) -> None:
        set_flat_parameters(m, checkpoints[k].to(dev))
        if buffers is not None:
            load_buffers(m, buffers[k])

    def batch(b):
        x, y = b
        return torch.as_tensor(x, device=dev), torch.as_tensor(y, device=dev)

    train_loss, pop_loss = np.empty(n), np.empty(n)
    speed, change, train_change = np.empty(n - 1), np.empty(n - 1), np.empty(n - 1)
    for k in range(n):
        xtr, ytr = batch(train_batches[k])
        xpo, ypo = batch(population_batches[k])
        load(k)
        ltr, lpo = m(xtr).double(), m(xpo).double()
        ell_tr = clipped_cross_entropy(ltr, ytr, loss_bound)
        ell_po = clipped_cross_entropy(lpo, ypo, loss_bound)
        train_loss[k], pop_loss[k] = float(ell_tr.mean()), float(ell_po.mean())
        if k == 0:
            continue
        load(k - 1)
        ptr, ppo = m(xtr).double(), m(xpo).double()
        kl = kl_categorical(ppo, lpo).clamp_min(0.0)
        speed[k - 1] = float((2.0 * kl).sqrt().mean())
        change[k - 1] = float((ell_po - clipped_cross_entropy(ppo, ypo, loss_bound)).abs().mean())
        train_change[k - 1] = abs(float((ell_tr - clipped_cross_entropy(ptr, ytr, loss_bound)).mean()))
    gap = pop_loss - train_loss
    return TrajectoryGap(taus=t, train_loss=train_loss, population_loss=pop_loss, gap=gap,
                         avg_gap=float(gap[1:].mean()), speed_term=float(speed.sum()),
                         loss_change_term=float(change.sum()), speed=speed, loss_change=change,
                         train_loss_change=train_change, loss_bound=float(loss_bound))


# ----------------------------------------------------------------------------
# Rademacher complexity of a linear head on fixed features
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RademacherEstimate:
    """A Monte-Carlo estimate of a Rademacher complexity (Eq. 13 of [Gao & Chaudhari 2021]).

    ``value`` is the mean over ``n_draws`` draws of :math:`\\sigma`, ``stderr`` its
    standard error, ``n`` the sample size :math:`N`, ``radius`` the :math:`r` of :math:`A(r)`.
    """

    value: float
    stderr: float
    n_draws: int
    n: int
    radius: float


def _as_features(features) -> torch.Tensor:
    try:
        phi = torch.as_tensor(np.asarray(features.detach().cpu() if isinstance(features, torch.Tensor) else features,
                                         dtype=np.float64))
    except (TypeError, ValueError):
        raise ValueError("features must be an (N, d) array of numbers") from None
    if phi.dim() != 2 or phi.shape[0] == 0 or phi.shape[1] == 0:
        raise ValueError(f"features must be a non-empty (N, d) array; got shape {tuple(phi.shape)}")
    if not torch.isfinite(phi).all():
        raise ValueError("features has non-finite entries")
    return phi


def _as_labels_pm1(labels, n: int) -> torch.Tensor:
    y = np.asarray(labels.detach().cpu() if isinstance(labels, torch.Tensor) else labels, dtype=np.float64)
    if y.shape != (n,):
        raise ValueError(f"labels_pm1 must have shape ({n},), one label per row of features; got {y.shape}")
    if not np.all(np.isin(y, (-1.0, 1.0))):
        raise ValueError("labels_pm1 must hold labels in {-1, +1}")
    return torch.as_tensor(y)


def _sigmas(rng: np.random.Generator, d: int, n: int) -> torch.Tensor:
    return torch.as_tensor(rng.integers(0, 2, size=(d, n)) * 2.0 - 1.0)


def _estimate(values: np.ndarray, n: int, radius: float) -> RademacherEstimate:
    d = values.size
    stderr = float(values.std(ddof=1) / math.sqrt(d)) if d > 1 else float("nan")
    return RademacherEstimate(value=float(values.mean()), stderr=stderr, n_draws=int(d), n=int(n), radius=float(radius))


def rademacher_linear(features, radius: float, *, n_draws: int = 1000, seed: int = 0) -> RademacherEstimate:
    r"""Empirical Rademacher complexity of linear scores on a ball, an exact supremum averaged over :math:`\sigma`.

    .. math::

        \hat R_N(F_r) = \mathbb{E}_\sigma \sup_{\|w\|_2\le r} \frac1N\sum_{i=1}^N \sigma^i \langle w, \phi_i\rangle
            = \frac rN\, \mathbb{E}_\sigma \Big\|\sum_{i=1}^N \sigma^i \phi_i\Big\|_2

    (Eq. 13 of [Gao & Chaudhari 2021] on one sample), where ``features`` (N, d)
    holds the :math:`\phi_i` and ``radius`` is :math:`r`. For orthonormal
    :math:`\phi_i` the value is :math:`r\sqrt N / N` exactly.

    >>> rademacher_linear(np.eye(4), 1.0, n_draws=10).value  # ||sigma||_2 = 2 for every draw
    0.5
    """
    phi = _as_features(features)
    check_positive("radius", radius)
    check_positive("n_draws", n_draws, integer=True)
    rng = np.random.default_rng(seed)
    n = phi.shape[0]
    out = []
    for a in range(0, n_draws, 1024):
        sig = _sigmas(rng, min(1024, n_draws - a), n)
        out.append((sig @ phi).norm(dim=1).numpy() * float(radius) / n)
    return _estimate(np.concatenate(out), n, radius)


def rademacher_loss_class_lower(features, labels_pm1, radius: float, *, loss_bound: float, n_draws: int = 50,
                                steps: int = 200, seed: int = 0) -> RademacherEstimate:
    r"""A lower estimate of the Rademacher complexity of the clipped logistic loss class.

    .. math::

        \hat R_N(\ell\circ F_r) = \mathbb{E}_\sigma \sup_{\|w\|_2\le r}
            \frac1N\sum_{i=1}^N \sigma^i \min\big(M, \log(1 + e^{-y_i\langle w, \phi_i\rangle})\big)

    with ``features`` (N, d) the :math:`\phi_i`, ``labels_pm1`` (N,) the :math:`y_i`,
    ``radius`` :math:`r` and ``loss_bound`` :math:`M`. The objective is not concave,
    so for each :math:`\sigma` projected (normalised) gradient ascent over the ball,
    started at the maximiser of its linearisation at :math:`w = 0`,
    :math:`-r\,u/\|u\|` with :math:`u = \sum_i \sigma^i y_i\phi_i`, keeps the best
    value reached: a feasible point, so each term is at most the supremum and the
    mean is a lower estimate. Each loss is centred at :math:`\ell_i(0)`, which
    leaves the expectation unchanged (:math:`\mathbb{E}\sigma^i = 0`) and removes
    the variance of :math:`\frac1N\sum_i\sigma^i\ell_i(0)`. Compare with
    :func:`contraction_upper` of :func:`rademacher_linear`.
    """
    phi = _as_features(features)
    y = _as_labels_pm1(labels_pm1, phi.shape[0])
    check_positive("radius", radius)
    check_positive("loss_bound", loss_bound)
    check_positive("n_draws", n_draws, integer=True)
    check_positive("steps", steps, integer=True)
    rng = np.random.default_rng(seed)
    n, r = phi.shape[0], float(radius)
    sig = _sigmas(rng, n_draws, n)  # (D, N)
    u = (sig * y) @ phi  # (D, d)
    norm = u.norm(dim=1, keepdim=True)
    w = torch.where(norm > 0, -r * u / norm.clamp_min(1e-300), torch.zeros_like(u)).requires_grad_(True)

    base = clipped_logistic_loss(torch.zeros(phi.shape[1], dtype=torch.float64), phi, y, loss_bound)  # (N,)

    def objective(w):  # centred at w = 0: E_sigma sum_i sigma_i l_i(0) = 0, so the mean is unchanged
        return (sig * (clipped_logistic_loss(w, phi, y, loss_bound) - base)).mean(dim=1)  # (D,)

    best = objective(w).detach().clone()
    for t in range(steps):
        val = objective(w)
        (g,) = torch.autograd.grad(val.sum(), w)
        with torch.no_grad():
            gn = g.norm(dim=1, keepdim=True).clamp_min(1e-300)
            w += (0.5 * r / math.sqrt(t + 1)) * g / gn
            wn = w.norm(dim=1, keepdim=True)
            w *= torch.clamp(r / wn.clamp_min(1e-300), max=1.0)
            best = torch.maximum(best, objective(w))
    return _estimate(best.numpy(), n, radius)


def contraction_upper(estimate: RademacherEstimate, lipschitz: float = 1.0) -> float:
    r"""Ledoux-Talagrand contraction: :math:`R_N(\ell\circ F) \le L\, R_N(F)` for :math:`\ell` :math:`L`-Lipschitz.

    The clipped logistic loss :math:`\min(M, \log(1+e^{-m}))` is 1-Lipschitz in the
    margin :math:`m = y f_w(x)`, and :math:`\sigma^i y_i` has the law of
    :math:`\sigma^i`, so :math:`R_N(\ell\circ F_r) \le R_N(F_r)`, the value of
    :func:`rademacher_linear`.
    """
    if not isinstance(estimate, RademacherEstimate):
        raise ValueError(f"estimate must be a RademacherEstimate; got {type(estimate).__name__}")
    check_positive("lipschitz", lipschitz)
    return float(lipschitz) * estimate.value


def classical_bound(rademacher: float, n: int, delta: float, loss_bound: float = 1.0) -> float:
    r"""The uniform generalisation bound printed in Sec. 4 of [Gao & Chaudhari 2021].

    .. math::

        \sup_{w\in A(r)}\ \mathbb{E}_p\ell(w) - \hat{\mathbb{E}}_N \ell(w)
            \le 2R_N + M\sqrt{\frac{2\log(1/\delta)}{N}}

    with probability at least :math:`1-\delta`, where ``rademacher`` is
    :math:`R_N(\ell\circ F)` of Eq. (13) and ``loss_bound`` is :math:`M`. A
    valid and slightly looser version of the standard
    :math:`2R_N + M\sqrt{\log(1/\delta)/(2N)}` (its second term is twice as large).

    >>> round(classical_bound(0.0, 2, math.exp(-1), 1.0), 6)
    1.0
    """
    check_nonnegative("rademacher", rademacher)
    check_positive("n", n, integer=True)
    check_in_range("delta", delta, 0.0, 1.0)
    if not 0 < delta < 1:
        raise ValueError(f"delta={delta!r} is not valid; it must be a number in (0, 1)")
    check_positive("loss_bound", loss_bound)
    return 2.0 * float(rademacher) + float(loss_bound) * math.sqrt(2.0 * math.log(1.0 / delta) / n)


def fit_linear_ball(features, labels_pm1, radius: float, *, steps: int = 500, lr: float | None = None,
                    seed: int = 0) -> torch.Tensor:
    r"""Logistic regression in the ball: projected gradient descent on
    :math:`\frac1N\sum_i\log(1 + e^{-y_i\langle w, \phi_i\rangle})` over :math:`\|w\|_2 \le r`.

    ``features`` (N, d), ``labels_pm1`` (N,) in {-1, +1}. ``lr`` None uses
    :math:`1/L` with :math:`L = \lambda_{\max}(\Phi^\top\Phi)/(4N)` the smoothness
    constant of the objective (monotone descent). ``seed`` draws the starting point,
    a random direction of norm :math:`10^{-3} r`. Returns the (d,) float64 weights.
    """
    phi = _as_features(features)
    y = _as_labels_pm1(labels_pm1, phi.shape[0])
    check_positive("radius", radius)
    check_positive("steps", steps, integer=True)
    n, d = phi.shape
    if lr is None:
        smooth = float(torch.linalg.eigvalsh(phi.T @ phi).max()) / (4.0 * n)
        lr = 1.0 / max(smooth, 1e-12)
    check_positive("lr", lr)
    r = float(radius)
    g = torch.Generator().manual_seed(int(seed))
    w = torch.randn(d, generator=g, dtype=torch.float64)
    w = w * (1e-3 * r / w.norm().clamp_min(1e-300))
    for _ in range(steps):
        margin = y * (phi @ w)
        grad = -(phi * (y * torch.sigmoid(-margin)).unsqueeze(1)).mean(dim=0)
        w = w - lr * grad
        wn = float(w.norm())
        if wn > r:
            w = w * (r / wn)
    return w
