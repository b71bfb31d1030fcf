r"""The baselines of iso-classification transfer (Fig. 5 of [Gao & Chaudhari 2020]):
fine-tuning the source model on the target, and training from scratch on the target, each
with the transfer's own budget of mini-batch updates."""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import nn

from .._util.checks import check_positive
from .._util.torch_state import device_of
from ..data import Task
from .equilibrate import EquilibrationConfig, array_sampler, equilibrate
from .functionals import measure
from .iso_transfer import _check_task, _subset
from .model import FreeEnergyModel, make_free_energy_model

__all__ = ["BASELINE_CONFIG", "BaselineCurve", "finetune_baseline", "scratch_baseline"]

# ----------------------------------------------------------------------------
# baselines
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BaselineCurve:
    """What :func:`finetune_baseline` and :func:`scratch_baseline` return.

    Attributes
    ----------
    steps : (m,) mini-batch updates taken at each evaluation (0: before any update).
    target_accuracy : (m,) accuracy on the target's held-out set.
    target_loss : (m,) classification loss :math:`C` on the target's held-out set.
    final_accuracy, initial_accuracy : the last and first entries of ``target_accuracy``.
    model : the trained model.
    wall_time : seconds.
    """

    steps: np.ndarray
    target_accuracy: np.ndarray
    target_loss: np.ndarray
    final_accuracy: float
    initial_accuracy: float
    model: FreeEnergyModel = field(repr=False)
    wall_time: float = 0.0


def _check_baseline_args(target, target_val, lam, gamma, steps, config, eval_every, eval_size, n_z):
    _check_task("target", target)
    _check_task("target_val", target_val)
    if tuple(target.x.shape[1:]) != tuple(target_val.x.shape[1:]):
        raise ValueError(f"target and target_val have different input shapes: {tuple(target.x.shape[1:])} "
                         f"and {tuple(target_val.x.shape[1:])}")
    check_positive("lam", lam)
    check_positive("gamma", gamma)
    check_positive("steps", steps, integer=True)
    check_positive("eval_every", eval_every, integer=True)
    check_positive("eval_size", eval_size, integer=True)
    check_positive("n_z", n_z, integer=True)
    if config is not None and not isinstance(config, EquilibrationConfig):
        raise ValueError(f"config must be an EquilibrationConfig; got {type(config).__name__}")


def _train_curve(model: FreeEnergyModel, target: Task, target_val: Task, lam: float, gamma: float, *, steps: int,
                 config: EquilibrationConfig, eval_every: int, eval_size: int, n_z: int) -> BaselineCurve:
    r"""Adam on :math:`R + \lambda D + \gamma C` over ``target`` for ``steps`` updates, evaluated every ``eval_every``.

    The updates are :func:`~ctd_lib.free_energy.equilibrate.equilibrate`'s, with ``config``
    (its ``steps`` replaced by ``steps``, so the schedule spans all the updates). The
    evaluations (held-out accuracy and :math:`C` on at most ``eval_size`` examples) are
    taken before the first update, after every ``eval_every``-th and after the last: the
    sampler handed to ``equilibrate`` measures the model before it draws mini-batch
    :math:`s` whenever :math:`0 < s` updates are done and :math:`s` is a multiple of
    ``eval_every`` (measuring touches neither the mini-batch generator nor the global
    torch generator, and restores the train mode). The evaluation subset and the
    mini-batches come from one generator seeded with ``config.seed``, in that order.
    """
    cfg = replace(config, steps=steps)  # the schedule spans all the updates
    dev = device_of(model)
    rng = np.random.default_rng(cfg.seed)
    k = _subset(target_val.x.shape[0], eval_size, rng)
    xv, yv = target_val.x[torch.as_tensor(k)].to(dev), target_val.y[torch.as_tensor(k)].to(dev)
    draw = array_sampler(target.x, target.y)
    at, acc, loss = [], [], []
    done = [0]  # updates taken so far (one per mini-batch drawn)

    def evaluate(s: int) -> None:
        m = measure(model, xv, yv, n_z=n_z, seed=cfg.seed)
        at.append(s)
        acc.append(m.accuracy)
        loss.append(m.classification)

    def sampler(batch_size: int, _rng: np.random.Generator):
        s = done[0]
        if s > 0 and s % eval_every == 0:
            evaluate(s)
        done[0] = s + 1
        return draw(batch_size, rng)  # the generator that drew the evaluation subset, as equilibrate's own

    start = time.perf_counter()
    evaluate(0)
    equilibrate(model, sampler, lam, gamma, cfg, show_progress=False)
    evaluate(steps)  # after the last update (no mini-batch is drawn after it)
    model.eval()
    acc_a = np.array(acc, dtype=np.float64)
    return BaselineCurve(steps=np.array(at), target_accuracy=acc_a, target_loss=np.array(loss, dtype=np.float64),
                         final_accuracy=float(acc_a[-1]), initial_accuracy=float(acc_a[0]), model=model,
                         wall_time=time.perf_counter() - start)


#: The baselines' default optimiser: Adam with cosine annealing from 1e-3 (Appendix A's training recipe).
BASELINE_CONFIG = EquilibrationConfig(peak_lr=1e-3, schedule="cosine")


def finetune_baseline(model: FreeEnergyModel, target: Task, target_val: Task, lam: float, gamma: float, *, steps: int,
                      config: EquilibrationConfig | None = None, eval_every: int = 100, eval_size: int = 2000,
                      n_z: int = 8) -> BaselineCurve:
    r"""Fine-tune (a copy of) the source model directly on the target: the blue curves of Figs. 5b and 6.

    .. math::

        \theta^{s+1} = \mathrm{Adam}\big(\theta^s, \nabla_\theta [R + \lambda D + \gamma C]_{\text{target batch}}, \eta_s\big)

    the objective of Eq. (8) at fixed :math:`(\lambda, \gamma)` on the target data
    alone, for ``steps`` mini-batch updates (give it :func:`transfer_budget` to
    match the transfer). ``config`` sets the learning rate, batch size, latent
    samples, seed and schedule, whose length is ``steps`` (its own ``steps`` is
    ignored); the default :data:`BASELINE_CONFIG` is cosine annealing from 1e-3.
    The target held-out accuracy and classification loss (at most ``eval_size``
    examples, ``n_z`` latent samples) are measured before any update and every
    ``eval_every`` updates (and after the last).
    """
    _check_baseline_args(target, target_val, lam, gamma, steps, config, eval_every, eval_size, n_z)
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    return _train_curve(copy.deepcopy(model), target, target_val, lam, gamma, steps=steps,
                        config=BASELINE_CONFIG if config is None else config, eval_every=eval_every,
                        eval_size=eval_size, n_z=n_z)


def scratch_baseline(model_config, target: Task, target_val: Task, lam: float, gamma: float, *, steps: int,
                     config: EquilibrationConfig | None = None, eval_every: int = 100, eval_size: int = 2000,
                     n_z: int = 8) -> BaselineCurve:
    r"""Train a fresh model on the target alone: the green point of Figs. 5b and 6.

    ``model_config`` is a :class:`~ctd_lib.free_energy.FreeEnergyModelConfig` or a
    preset name (:func:`~ctd_lib.free_energy.make_free_energy_model`); the rest as
    in :func:`finetune_baseline`.
    """
    _check_baseline_args(target, target_val, lam, gamma, steps, config, eval_every, eval_size, n_z)
    model = make_free_energy_model(model_config)
    return _train_curve(model, target, target_val, lam, gamma, steps=steps,
                        config=BASELINE_CONFIG if config is None else config, eval_every=eval_every,
                        eval_size=eval_size, n_z=n_z)
