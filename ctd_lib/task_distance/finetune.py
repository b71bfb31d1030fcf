r"""The fine-tuning distance, the gold standard the paper compares against (Sec. 5.2).

Sec. 5.2 of [Gao & Chaudhari 2021]:

    "The difficulty of fine-tuning is the gold standard of distance between
    tasks. [...] We compute the length of the weight trajectory, i.e.,
    :math:`\int_0^1 |dw|` and call this the fine-tuning distance. The
    trajectory is truncated when validation accuracy on the target task is 95%
    of its final validation accuracy. No transport of the task is performed and
    the model directly takes SGD updates on the target task after being
    pre-trained on the source task."

:func:`fine_tuning_distance` runs the library's own SGD (:func:`~ctd_lib.geometry.sgd.train_sgd`)
from a copy of the source model and reads the length off its bookkeeping. The other baseline of
Sec. 5.2, Task2Vec, is in :mod:`ctd_lib.task_distance.task2vec`.
"""
from __future__ import annotations

import copy
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from .._util.checks import check_in_range, check_nonnegative, check_positive
from ..data import Task
from ..geometry.sgd import SGDConfig, accuracy, minibatch_sampler, train_sgd

__all__ = ["FineTuneConfig", "FineTuneResult", "fine_tuning_distance"]


def _check_seed(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"seed={value!r} is not valid; it must be an integer")
    return value


def _model_dtype(model: nn.Module) -> torch.dtype:
    for p in model.parameters():
        return p.dtype
    raise ValueError("model has no parameters")


def _check_labels_fit(name: str, model: nn.Module, task: Task) -> None:
    """The task's labels must index into the model's output (a forward of one input, eval mode)."""
    if task.x.shape[0] == 0:
        raise ValueError(f"{name} is empty: the task has no samples")
    was_training = model.training
    model.eval()
    with torch.no_grad():
        width = model(task.x[:1].to(_model_dtype(model))).shape[1]
    model.train(was_training)
    top = int(task.y.max())
    if top >= width or int(task.y.min()) < 0:
        raise ValueError(f"{name} has labels up to {top}, but the model has {width} outputs")


# ============================================================================
# Fine-tuning distance
# ============================================================================


@dataclass(frozen=True, kw_only=True)
class FineTuneConfig:
    """Plain SGD on the target task from the source weights (Sec. 5.2)."""

    lr: float = 0.1  # learning rate of torch.optim.SGD (the prototype's 0.1)
    momentum: float = 0.0  # heavy-ball momentum (0: plain SGD, Eq. 1)
    weight_decay: float = 0.0  # L2 penalty added by torch.optim.SGD
    batch_size: int = 64  # mini-batch size on the target's training set
    max_steps: int = 300  # SGD steps; the "final" accuracy is the one after the last
    eval_every: int = 1  # validation accuracy every k steps (threshold is met within 10-70 steps)
    threshold_frac: float = 0.95  # truncate at this fraction of the final validation accuracy
    seed: int = 0  # seeds the mini-batch generator and torch's global RNG (dropout)

    def __post_init__(self):
        check_positive("lr", self.lr)
        check_nonnegative("momentum", self.momentum)
        check_nonnegative("weight_decay", self.weight_decay)
        check_positive("batch_size", self.batch_size, integer=True)
        check_positive("max_steps", self.max_steps, integer=True)
        check_positive("eval_every", self.eval_every, integer=True)
        check_in_range("threshold_frac", self.threshold_frac, 0.0, 1.0)
        check_positive("threshold_frac", self.threshold_frac)
        _check_seed(self.seed)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class FineTuneResult:
    """What :func:`fine_tuning_distance` returns.

    Attributes
    ----------
    distance : :math:`\\sum_{k < k^*} |w_{k+1} - w_k|_2`, the Euclidean length up to the threshold.
    steps_to_threshold : :math:`k^*`, the first evaluated step meeting the threshold (0: the source already does).
    fisher_rao_length : the Fisher-Rao length (``"manifold"`` convention, Eq. 5) up to the same step.
    threshold : the accuracy to reach, ``threshold_frac * final_val_acc``.
    initial_val_acc, final_val_acc : validation accuracy at steps 0 and ``max_steps``.
    eval_steps : (E,) int array, the steps at which validation accuracy was measured
        (0, k, 2k, ... and ``max_steps``).
    val_acc : (E,) validation accuracy at ``eval_steps``.
    cumulative_euclidean : (max_steps + 1,) length from step 0 to step s, for s = 0..max_steps.
    cumulative_fisher_rao : (max_steps + 1,) the same for the Fisher-Rao length.
    n_clamped : negative KL values clamped to zero in the Fisher-Rao bookkeeping.
    config : the :class:`FineTuneConfig` used.
    final_model : the network after all ``max_steps`` steps (a copy; the source model is untouched).
    """

    distance: float
    steps_to_threshold: int
    fisher_rao_length: float
    threshold: float
    initial_val_acc: float
    final_val_acc: float
    eval_steps: np.ndarray
    val_acc: np.ndarray
    cumulative_euclidean: np.ndarray
    cumulative_fisher_rao: np.ndarray
    n_clamped: int
    config: FineTuneConfig
    final_model: nn.Module | None = field(default=None, repr=False, compare=False)


def fine_tuning_distance(
    source_model: nn.Module,
    target_train: Task,
    target_val: Task,
    config: FineTuneConfig | None = None,
) -> FineTuneResult:
    r"""Length of the SGD trajectory from the source weights until the target is learnt (Sec. 5.2).

    .. math::

        d_{\mathrm{FT}}(s \to t) = \int_0^{\tau^*} |dw|
        = \sum_{k=0}^{k^*-1} \lVert w_{k+1} - w_k \rVert_2,
        \qquad
        k^* = \min\{k \in K :\ a_t(w_k) \ge \theta\, a_t(w_T)\},

    where

    - :math:`w_0` are the weights of ``source_model`` (pre-trained on the source),
      :math:`w_{k+1}` is one SGD step (Eq. 1) on a mini-batch of ``target_train``;
    - :math:`T` is ``max_steps`` and :math:`K = \{0, e, 2e, \dots\} \cup \{T\}` the
      evaluated steps, :math:`e` = ``eval_every``;
    - :math:`a_t(w)` is the top-1 accuracy on ``target_val`` (model in eval mode);
    - :math:`\theta` is ``threshold_frac`` (0.95 in the paper: "The trajectory is
      truncated when validation accuracy on the target task is 95% of its final
      validation accuracy").

    :math:`k^*` always exists since :math:`a_t(w_T) \ge \theta\, a_t(w_T)`. The
    Fisher-Rao length of the same truncated trajectory (Eq. 5, the ``"manifold"``
    convention of :mod:`ctd_lib.geometry`, each step's line element on its own
    mini-batch) is returned beside it.

    **Zero distance.** When the source model already meets the threshold,
    :math:`a_t(w_0) \ge \theta\, a_t(w_T)`, then :math:`k^* = 0` and the distance
    is exactly 0, however far SGD later moves: e.g. a source trained on the
    target task itself, or a target whose final accuracy is no better than the
    source's. This is the definition, not a bug; read such zeros against
    ``initial_val_acc`` and ``final_val_acc``. A final accuracy of 0 makes the
    threshold 0 and warns.

    The whole trajectory is a single :func:`~ctd_lib.geometry.sgd.train_sgd` run
    (so momentum buffers carry across steps). The validation accuracy of
    :math:`w_k` is read when the mini-batch of step :math:`k` is drawn, before
    that step's forward pass, and of :math:`w_T` after the run; this costs one
    forward pass over ``target_val`` per evaluation and draws no random numbers.

    Parameters
    ----------
    source_model : the pre-trained network; deep-copied, the caller's model is left untouched.
    target_train : the target task's training examples, ``x`` (N, ...), ``y`` (N,) labels
        that index the model's outputs.
    target_val : the target task's validation examples, (M, ...) and (M,).
    config : :class:`FineTuneConfig` (defaults if None).

    Returns
    -------
    FineTuneResult
    """
    config = FineTuneConfig() if config is None else config
    if not isinstance(config, FineTuneConfig):
        raise ValueError(f"config={config!r} is not valid; it must be a FineTuneConfig")
    model = copy.deepcopy(source_model)
    _check_labels_fit("target_train", model, target_train)
    _check_labels_fit("target_val", model, target_val)
    dtype = _model_dtype(model)
    x_val, y_val = target_val.x.to(dtype), target_val.y
    inner = minibatch_sampler(target_train.x.to(dtype), target_train.y, config.batch_size)
    T, every = config.max_steps, config.eval_every
    eval_steps: list[int] = []
    accs: list[float] = []
    step = 0

    def sampler(gen: torch.Generator):
        nonlocal step
        if step % every == 0:  # the model holds w_step: no update of this step yet
            eval_steps.append(step)
            accs.append(accuracy(model, x_val, y_val))
        step += 1
        return inner(gen)

    sgd = SGDConfig(steps=T, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                    seed=config.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        run = train_sgd(model, sampler, sgd, track_length=True, track_euclidean=True, show_progress=False)
    eval_steps.append(T)
    accs.append(accuracy(model, x_val, y_val))

    steps_arr, acc_arr = np.asarray(eval_steps, dtype=np.int64), np.asarray(accs, dtype=np.float64)
    final = float(acc_arr[-1])
    threshold = config.threshold_frac * final
    if final <= 0.0:
        warnings.warn("fine_tuning_distance: the final validation accuracy is 0, so the threshold is 0 and is met "
                      "at step 0; increase max_steps or lr", RuntimeWarning, stacklevel=2)
    k_star = int(steps_arr[np.flatnonzero(acc_arr >= threshold)[0]])
    assert run.length is not None  # train_sgd was asked to track the length
    euclid = np.concatenate([[0.0], run.length.cumulative["euclidean"]])
    fisher_rao = np.concatenate([[0.0], run.length.cumulative["manifold"]])
    return FineTuneResult(
        distance=float(euclid[k_star]),
        steps_to_threshold=k_star,
        fisher_rao_length=float(fisher_rao[k_star]),
        threshold=threshold,
        initial_val_acc=float(acc_arr[0]),
        final_val_acc=final,
        eval_steps=steps_arr,
        val_acc=acc_arr,
        cumulative_euclidean=euclid,
        cumulative_fisher_rao=fisher_rao,
        n_clamped=run.length.n_clamped,
        config=config,
        final_model=model,
    )


# ============================================================================
# Task2Vec
# ============================================================================
