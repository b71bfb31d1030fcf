r"""The coupled transfer distance (Definition 2 and Eq. 12 of [Gao & Chaudhari 2021]).

Given a classifier trained on a source task, the coupled transfer process moves
the data from the source to the target along an optimal-transport interpolation
while SGD updates the weights to fit the interpolated task; the coupling
:math:`\Gamma` and the weight trajectory :math:`w(\cdot)` are updated in turn:

.. math::

    \Gamma^k &= \operatorname*{argmin}_{\Gamma \in \Pi}\
        \langle \Gamma, C^k\rangle - \epsilon H(\Gamma) + \lambda_k \|\Gamma - \Gamma^{k-1}\|_F^2
        && \text{(12a)} \\
    C^{k+1}_{ij} &= \int_0^1 \sqrt{2\,\mathrm{KL}\big[p_{w^k(\tau)}(\cdot\mid x^{ij}_\tau),
        p_{w^k(\tau+d\tau)}(\cdot\mid x^{ij}_\tau)\big]}, \quad x^{ij}_\tau = (1-\tau)x^i_s + \tau x^j_t
        && \text{(12b)} \\
    w^k(\tau + d\tau) &= w^k(\tau) - \widehat{\nabla\ell_\tau}(w^k(\tau))\, d\tau, \quad w^k(0) = w_s
        && \text{(12c)}

with :math:`\hat p_\tau` of Eq. (12d)/(8) built from :math:`\Gamma^{k-1}`. The
distance is the Fisher-Rao length (Eq. 11) of the last trajectory.

Choices where the paper is silent or ambiguous, each a field of
:class:`CoupledConfig`:

* Couplings are block-diagonal (Sec. 3.4): blocks of at most ``block_size``
  samples are matched once, from features of the source-trained network
  (the paper uses an ImageNet ResNet-50, which cannot be downloaded here);
  Eq. (12a) then updates the plan inside each block.
* :math:`\epsilon` is relative to each block's median cost (``reg``) and the
  proximal weight is dimensionless (``prox_lam``): :math:`\lambda_k =
  \tilde\lambda\, g^k\, \mathrm{median}(C)\, |I|` for a block with :math:`|I|`
  source samples, which puts the proximal term on the scale of the transport
  cost (a plan of unit mass in the block has :math:`\|\Gamma\|_F^2 \approx 1/|I|`).
  The authors' code grows the weight as :math:`0.05 \cdot 5^k`: ``prox_lam=0.05,
  prox_growth=5`` are the defaults.
* Training samples use Beta-mixup (coefficient :math:`t \sim
  \mathrm{Beta}(\tau, 1-\tau)`, Sec. 3.4) by default, or plain displacement
  interpolation; the ground cost (12b) is always evaluated on the displacement
  points :math:`x^{ij}_\tau`, at ``cost_checkpoints`` instants, in eval mode.
* The reported distance uses ``convention`` ("manifold":
  :math:`\int\sqrt{\mathbb{E}_x 2\mathrm{KL}}`, or "per_sample":
  :math:`\int\mathbb{E}_x\sqrt{2\mathrm{KL}}`, as printed in Eq. 11); both are kept.
"""
from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from .._util.checks import check_choice, check_nonnegative, check_positive
from .._util.progress import progress
from .._util.torch_state import copy_buffers, device_of, load_buffers, rng_state, set_rng_state
from ..data import Task
from ..geometry.length import (
    CONVENTIONS,
    LengthMeter,
    TrajectoryLength,
    flat_parameters,
    kl_categorical,
    set_flat_parameters,
)
from ..geometry.sgd import (
    SGDConfig,
    batchnorm_modules,
    cross_entropy,
    frozen_batchnorm_stats,
    minibatch_sampler,
    train_sgd,
)
from ..transport.blocks import BlockPlan, block_plan, match_blocks
from ..transport.costs import feature_cost
from ..transport.interpolation import make_sampler
from ..transport.proximal import proximal_plan

__all__ = [
    "CoupledConfig", "INITIAL_COSTS", "INTERPOLATIONS", "SCHEDULES", "TrajectoryLog", "TransferResult",
    "authors_scale", "coupled_transfer_distance", "initial_coupling", "pair_kl_cost", "penultimate_features",
    "proximal_update", "run_trajectory", "tau_at", "train_source_model", "uncoupled_transfer_distance"
]

INTERPOLATIONS = ("beta-mixup", "displacement")
SCHEDULES = ("linear", "arcsine")
INITIAL_COSTS = ("features", "pixels")


@dataclass(frozen=True, kw_only=True)
class CoupledConfig:
    """Configuration of the coupled (and uncoupled) transfer process."""

    steps: int = 300  # SGD steps of one trajectory, tau from 0 to 1 (Eq. 12c)
    lr: float = 0.05  # learning rate, the d tau of Eq. (12c)
    momentum: float = 0.0  # SGD momentum (the authors use 0.9)
    weight_decay: float = 0.0  # SGD weight decay (the authors use 5e-4)
    batch_size: int = 32  # interpolated samples per SGD step
    outer_iters: int = 3  # K, the number of alternations of Eq. (12)
    tol: float = 0.01  # stop early when the distance changes by less than this fraction
    block_size: int = 30  # B, the largest block of the block-diagonal coupling (Sec. 3.4)
    block_match: str = "centroid"  # how source and target blocks are matched (transport.match_blocks)
    reg: float = 0.05  # entropic epsilon relative to the median cost of each block
    prox_lam: float = 0.05  # dimensionless proximal weight of Eq. (12a) at k = 1 (see module doc)
    prox_growth: float = 5.0  # lambda_k = prox_lam * prox_growth**(k-1), as the authors' 0.05 * 5^k
    interpolation: str = "beta-mixup"  # training samples: "beta-mixup" (Sec. 3.4) or "displacement" (Eq. 12d)
    schedule: str = "linear"  # tau over steps: "linear" or "arcsine" (the authors' code)
    convention: str = "manifold"  # which Fisher-Rao length is the reported distance
    cost_checkpoints: int = 10  # instants at which the ground cost (12b) is integrated
    initial_cost: str = "features"  # ground cost of Gamma^0: penultimate features or pixels
    eval_every: int = 0  # log train/held-out loss on the interpolated task every k steps (0: at cost checkpoints)
    seed: int = 0  # seeds sampling of pairs, Beta draws and mini-batches
    device: str = "cpu"  # where the model and data live

    def __post_init__(self):
        for name in ("steps", "batch_size", "outer_iters", "block_size", "cost_checkpoints"):
            check_positive(name, getattr(self, name), integer=True)
        for name in ("lr", "tol", "reg"):
            check_positive(name, getattr(self, name))
        for name in ("momentum", "weight_decay", "prox_lam"):
            check_nonnegative(name, getattr(self, name))
        check_positive("prox_growth", self.prox_growth)
        check_choice("interpolation", self.interpolation, INTERPOLATIONS)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_choice("convention", self.convention, CONVENTIONS)
        check_choice("initial_cost", self.initial_cost, INITIAL_COSTS)
        check_choice("block_match", self.block_match, ("centroid", "sorted", "random"))
        if self.steps < 2:
            raise ValueError(f"steps={self.steps!r} is not valid; it must be >= 2 "
                             "(tau = 0 at the first step and 1 at the last)")
        if self.cost_checkpoints < 2 or self.cost_checkpoints > self.steps + 1:
            raise ValueError(f"cost_checkpoints={self.cost_checkpoints!r} must be in [2, steps + 1]")
        if not isinstance(self.eval_every, int) or self.eval_every < 0:
            raise ValueError(f"eval_every={self.eval_every!r} must be an integer >= 0")

    def to_dict(self) -> dict:
        return asdict(self)


def tau_at(step: int, steps: int, schedule: str) -> float:
    r"""Interpolation time of SGD step ``step`` of ``steps``: 0 at the first, 1 at the last.

    ``"linear"``: :math:`\tau = s/(S-1)`; ``"arcsine"``:
    :math:`\tau = \sin^2(\tfrac{\pi}{2} s/(S-1))`, slow near both tasks as in the authors' code.
    """
    check_choice("schedule", schedule, SCHEDULES)
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (step, steps)) \
            or steps < 1 or not 0 <= step < steps:
        raise ValueError(f"step={step!r}, steps={steps!r} are not valid; need integers with 0 <= step < steps")
    u = step / max(1, steps - 1)
    return u if schedule == "linear" else math.sin(0.5 * math.pi * u) ** 2


def _has_dropout(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0 for m in model.modules())


# ----------------------------------------------------------------------------
# features and ground costs
# ----------------------------------------------------------------------------


@torch.no_grad()
def penultimate_features(model: nn.Module, x: torch.Tensor, batch: int = 2048) -> np.ndarray:
    """Inputs of the network's last ``nn.Linear`` layer (its features), in eval mode."""
    last = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not last:
        raise ValueError("model has no nn.Linear layer whose input could serve as features")
    dev = device_of(model)
    store = []
    hook = last[-1].register_forward_hook(lambda mod, inp, out: store.append(inp[0].detach().reshape(inp[0].shape[0], -1)))
    was = model.training
    model.eval()
    try:
        for i in range(0, x.shape[0], batch):
            model(x[i : i + batch].to(dev))
    finally:
        hook.remove()
        model.train(was)
    return torch.cat(store).double().cpu().numpy()


@torch.no_grad()
def pair_kl_cost(
    model: nn.Module, checkpoints: list, taus: list, xs: torch.Tensor, xt: torch.Tensor, plan: BlockPlan,
    *, chunk: int = 4096, buffers: list | None = None,
) -> list:
    r"""Ground cost of Eq. (12b) for every pair inside every block.

    .. math::

        C_{ij} = \sum_{m=0}^{M-2} \sqrt{2\,\mathrm{KL}\big[p_{w_m}(\cdot\mid x^{ij}_{\tau_m}),
                 p_{w_{m+1}}(\cdot\mid x^{ij}_{\tau_m})\big]}

    at the ``M`` checkpoints :math:`w_m` of the trajectory (times :math:`\tau_m`),
    evaluated in eval mode. All pairs of all blocks go through the network in
    large batches. Returns one (|I_k|, |J_k|) array per block.

    Arrays: ``checkpoints`` M flat weight vectors, ``taus`` M times, ``xs`` (Ns, ...),
    ``xt`` (Nt, ...). ``buffers`` (M lists of buffer tensors, as
    ``TrajectoryLog.checkpoint_buffers``) gives each checkpoint its own batch-norm
    running statistics; without it every checkpoint is evaluated with the
    model's current buffers. The model's weights and buffers are restored.
    """
    if len(taus) != len(checkpoints) or (buffers is not None and len(buffers) != len(checkpoints)):
        raise ValueError(f"checkpoints ({len(checkpoints)}), taus ({len(taus)}) and buffers "
                         f"({'None' if buffers is None else len(buffers)}) must have one entry per checkpoint")
    model_was = model.training
    model.eval()
    w_orig, b_orig = flat_parameters(model), copy_buffers(model)
    dev = device_of(model)
    xs, xt = xs.to(dev), xt.to(dev)
    src = plan.assignment.source_blocks
    tgt = plan.assignment.target_blocks
    I = torch.cat([torch.as_tensor(i).repeat_interleave(len(j)) for i, j in zip(src, tgt)]).to(dev)
    J = torch.cat([torch.as_tensor(j).repeat(len(i)) for i, j in zip(src, tgt)]).to(dev)
    total = torch.zeros(I.numel(), dtype=torch.float64)

    def load(m: int) -> None:
        set_flat_parameters(model, checkpoints[m])
        if buffers is not None:
            load_buffers(model, buffers[m])

    try:
        for m in range(len(checkpoints) - 1):
            tau = taus[m]
            for a in range(0, I.numel(), chunk):
                ii, jj = I[a : a + chunk], J[a : a + chunk]
                x = (1 - tau) * xs[ii] + tau * xt[jj]
                load(m)
                before = model(x)
                load(m + 1)
                after = model(x)
                kl = kl_categorical(before.double(), after.double()).clamp_min(0.0)
                total[a : a + chunk] += (2.0 * kl).sqrt().cpu()
    finally:
        set_flat_parameters(model, w_orig)
        load_buffers(model, b_orig)
        model.train(model_was)
    out, offset = [], 0
    for i, j in zip(src, tgt):
        n = len(i) * len(j)
        out.append(total[offset : offset + n].numpy().reshape(len(i), len(j)))
        offset += n
    return out


# ----------------------------------------------------------------------------
# one trajectory
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TrajectoryLog:
    """Per-step and per-checkpoint record of one transfer trajectory."""

    tau: np.ndarray  # (steps,) interpolation time of each SGD step
    loss: np.ndarray  # (steps,) training loss of each mini-batch
    length: TrajectoryLength  # Fisher-Rao length (both conventions) and |dw|
    eval_tau: np.ndarray  # times at which train/held-out losses were evaluated
    eval_train_loss: np.ndarray  # loss on fresh interpolated samples of the training data
    eval_val_loss: np.ndarray  # loss on interpolated held-out samples (nan without held-out data)
    checkpoints: list = field(repr=False)  # flat weights at the cost checkpoints
    checkpoint_tau: list = field(repr=False)
    checkpoint_buffers: list = field(default_factory=list, repr=False)  # buffers (BN statistics) at each checkpoint


def _sampler(kind: str, xs, ys, xt, yt, plan, num_classes: int, device: str):
    return make_sampler(kind, xs, ys, xt, yt, None if kind == "mixture" else plan, num_classes=num_classes,
                        device=device)


def run_trajectory(
    source_model: nn.Module, source: Task, target: Task, cfg: CoupledConfig, *, kind: str, plan: BlockPlan | None,
    val: tuple | None = None, seed: int = 0, desc: str = "trajectory", show_progress: bool | None = None,
) -> tuple[nn.Module, TrajectoryLog]:
    """Eq. (12c) (``kind`` "beta-mixup" or "displacement") or Eq. (10) (``kind`` "mixture").

    Starts from a copy of ``source_model``; SGD on samples of the interpolated
    task at :math:`\\tau` = :func:`tau_at`, with the Fisher-Rao line element of
    every step measured on its mini-batch. ``val`` = (source_val, target_val,
    val_plan) gives held-out interpolated samples for the loss curves.

    ``seed`` fixes everything random: pairs, Beta draws and mini-batches (numpy
    generators) and dropout masks (torch's generator, forked so the caller's
    state is untouched). With dropout, the measuring forward reuses the
    training forward's masks, so the line element compares :math:`p_w` and
    :math:`p_{w+dw}` as one function of the input, not two random masks.
    """
    dev = torch.device(cfg.device)
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.random.default_generator.manual_seed(seed)  # not torch.manual_seed: other devices stay as they were
        if dev.type == "cuda":
            with torch.cuda.device(dev):
                torch.cuda.manual_seed(seed)
        return _run_trajectory(source_model, source, target, cfg, kind=kind, plan=plan, val=val, seed=seed,
                               desc=desc, show_progress=show_progress)


def _run_trajectory(source_model, source, target, cfg, *, kind, plan, val, seed, desc, show_progress):
    model = copy.deepcopy(source_model).to(cfg.device)
    dev, dropout = device_of(model), _has_dropout(model)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    rng = np.random.default_rng(seed)
    eval_rng = np.random.default_rng(seed + 7919)
    draw = _sampler(kind, source.x, source.y, target.x, target.y, plan, source.num_classes, cfg.device)
    val_draw = None
    if val is not None:
        sv, tv, vplan = val
        val_draw = _sampler(kind if kind == "mixture" else "displacement", sv.x, sv.y, tv.x, tv.y, vplan,
                            source.num_classes, cfg.device)
    ck_steps = sorted(set(np.linspace(0, cfg.steps, cfg.cost_checkpoints).round().astype(int).tolist()))
    eval_steps = ck_steps if not cfg.eval_every else sorted(set(range(0, cfg.steps + 1, cfg.eval_every)) | {cfg.steps})
    meter, bns = LengthMeter(), batchnorm_modules(model)
    taus, losses = np.empty(cfg.steps), torch.empty(cfg.steps)
    checkpoints, ck_tau, ck_buf = [], [], []
    ev_tau, ev_train, ev_val = [], [], []

    def evaluate(step: int):
        tau = tau_at(min(step, cfg.steps - 1), cfg.steps, cfg.schedule)
        model.eval()
        with torch.no_grad():
            x, y = draw(tau, 512, eval_rng)
            ev_train.append(float(cross_entropy(model(x), y)))
            if val_draw is not None:
                x, y = val_draw(tau, 512, eval_rng)
                ev_val.append(float(cross_entropy(model(x), y)))
            else:
                ev_val.append(float("nan"))
        model.train()
        ev_tau.append(tau)

    model.train()
    for step in progress(range(cfg.steps + 1), desc=desc, enabled=show_progress):
        if step in ck_steps:
            checkpoints.append(flat_parameters(model))
            ck_buf.append(copy_buffers(model))
            ck_tau.append(tau_at(min(step, cfg.steps - 1), cfg.steps, cfg.schedule))
        if step in eval_steps:
            evaluate(step)
        if step == cfg.steps:
            break
        tau = tau_at(step, cfg.steps, cfg.schedule)
        taus[step] = tau
        xb, yb = draw(tau, cfg.batch_size, rng)
        state = rng_state(dev) if dropout else None
        logits = model(xb)
        loss = cross_entropy(logits, yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses[step] = loss.detach()
        if dropout:
            set_rng_state(dev, state)  # the same dropout masks as the training forward
        with torch.no_grad(), frozen_batchnorm_stats(model, bns):
            after = model(xb)
        meter.update(logits, after)
    log = TrajectoryLog(
        tau=taus, loss=losses.numpy(), length=meter.result(), eval_tau=np.asarray(ev_tau),
        eval_train_loss=np.asarray(ev_train), eval_val_loss=np.asarray(ev_val), checkpoints=checkpoints,
        checkpoint_tau=ck_tau, checkpoint_buffers=ck_buf,
    )
    return model, log


# ----------------------------------------------------------------------------
# the alternating algorithm
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TransferResult:
    """What :func:`coupled_transfer_distance` and :func:`uncoupled_transfer_distance` return.

    Attributes
    ----------
    distance : Fisher-Rao length of the final trajectory under ``convention``.
    convention : "manifold" or "per_sample".
    per_iteration : distance after each outer iteration k = 1..K (same convention).
    per_iteration_other : the same under the other convention.
    coupling : the final block-diagonal plan (None for uncoupled transfer).
    ground_cost : the last ground cost C (one array per block; None for uncoupled).
    log : :class:`TrajectoryLog` of the final trajectory.
    logs : one log per outer iteration.
    target_model : the network at the end of the final trajectory.
    wall_time : seconds.
    config : the resolved configuration.
    """

    distance: float
    convention: str
    per_iteration: list
    per_iteration_other: list
    coupling: BlockPlan | None
    ground_cost: list | None
    log: TrajectoryLog
    logs: list = field(repr=False)
    target_model: nn.Module = field(repr=False)
    wall_time: float = 0.0
    config: dict = field(default_factory=dict)

    @property
    def converged(self) -> bool:
        if len(self.per_iteration) < 2:
            return False
        a, b = self.per_iteration[-2], self.per_iteration[-1]
        return abs(b - a) <= self.config.get("tol", 0.01) * abs(a)


def _check_tasks(source: Task, target: Task) -> None:
    if source.x.shape[0] == 0:
        raise ValueError("source is an empty task")
    if target.x.shape[0] == 0:
        raise ValueError("target is an empty task")
    if tuple(source.x.shape[1:]) != tuple(target.x.shape[1:]):
        raise ValueError(
            f"source and target have no shared input shape ({tuple(source.x.shape[1:])} and "
            f"{tuple(target.x.shape[1:])}); resample one of them (e.g. upsample_digits=True for 'digits')"
        )
    if source.num_classes != target.num_classes:
        raise ValueError(
            f"source has {source.num_classes} classes and target {target.num_classes}, with no label mapping; "
            f"make both tasks with a shared head (make_task(..., label_offset=...))"
        )


def _lengths(log: TrajectoryLog, convention: str) -> tuple[float, float]:
    other = "per_sample" if convention == "manifold" else "manifold"
    return log.length.length(convention), log.length.length(other)


def initial_coupling(source_model: nn.Module, source: Task, target: Task, cfg: CoupledConfig) -> BlockPlan:
    r""":math:`\Gamma^0`: blocks matched and plans computed on a feature (or pixel) ground cost (Sec. 3.4)."""
    if cfg.initial_cost == "features":
        fs, ft = penultimate_features(source_model, source.x), penultimate_features(source_model, target.x)
    else:
        fs = source.x.reshape(source.x.shape[0], -1).double().cpu().numpy()
        ft = target.x.reshape(target.x.shape[0], -1).double().cpu().numpy()
    assignment = match_blocks(fs, ft, cfg.block_size, method=cfg.block_match, seed=cfg.seed)
    return block_plan(feature_cost(fs, ft), assignment, reg=cfg.reg, relative=True)


def proximal_update(plan: BlockPlan, costs: list, lam: float, reg: float) -> BlockPlan:
    r"""Eq. (12a) in every block, with the dimensionless ``lam`` scaled as in the module docstring.

    Each block is solved at unit mass (marginals exactly uniform over the block,
    :math:`1/|I_k|` and :math:`1/|J_k|`) and scaled back to its mass :math:`1/K`,
    so marginal errors of the previous plan do not carry over. ``costs`` holds one
    (|I_k|, |J_k|) array per block (as from :func:`pair_kl_cost`). The returned
    ``eps`` are the absolute :math:`\epsilon` used (``reg`` times each new cost's median).
    """
    K = plan.assignment.n_blocks
    if len(costs) != K:
        raise ValueError(f"costs has {len(costs)} block costs; the plan has {K} blocks")
    check_nonnegative("lam", lam)
    mass = 1.0 / K
    new_plans, cost, ok, errs, eps, n_iter = [], 0.0, True, [], [], 0
    for prev, C in zip(plan.plans, costs):
        C = np.asarray(C, dtype=np.float64)
        if C.shape != prev.shape:
            raise ValueError(f"a block cost has shape {C.shape}; its block plan has shape {prev.shape}")
        a, b = np.full(C.shape[0], 1.0 / C.shape[0]), np.full(C.shape[1], 1.0 / C.shape[1])
        lam_abs = lam * float(np.median(C)) * C.shape[0]
        res = proximal_plan(a, b, C, prev / mass, reg=reg, lam=lam_abs, relative=True)
        new_plans.append(res.plan * mass)
        cost += float((res.plan * mass * C).sum())
        ok = ok and res.converged
        errs.append(res.marginal_err * mass)
        eps.append(res.reg)
        n_iter = max(n_iter, res.n_iter)
    return BlockPlan(assignment=plan.assignment, plans=new_plans, cost=cost, converged=bool(ok),
                     marginal_err=float(max(errs)), eps=np.asarray(eps), solver="proximal", n_iter=int(n_iter))


def coupled_transfer_distance(
    source: Task, target: Task, source_model: nn.Module, config: CoupledConfig | None = None, *,
    source_val: Task | None = None, target_val: Task | None = None, show_progress: bool | None = None,
) -> TransferResult:
    r"""The coupled transfer distance between two tasks, Definition 2 and Eq. (12).

    Parameters
    ----------
    source, target : labelled tasks with one input shape and a shared label space
        (``num_classes`` equal), e.g. from :func:`ctd_lib.data.make_task`.
    source_model : a classifier trained on ``source`` (left unchanged); every
        outer iteration restarts from its weights.
    config : :class:`CoupledConfig` (defaults if None).
    source_val, target_val : held-out data of both tasks, for the held-out loss
        along the trajectory (Fig. 4a); optional.
    show_progress : tqdm bars; None shows them only on a terminal.

    Returns
    -------
    :class:`TransferResult`.
    """
    cfg = config or CoupledConfig()
    _check_tasks(source, target)
    start = time.perf_counter()
    plan = initial_coupling(source_model, source, target, cfg)
    val = None
    if source_val is not None and target_val is not None:
        val = (source_val, target_val, initial_coupling(source_model, source_val, target_val, cfg))
    per, other, logs, costs = [], [], [], None
    model = None
    for k in range(1, cfg.outer_iters + 1):
        model, log = run_trajectory(source_model, source, target, cfg, kind=cfg.interpolation, plan=plan, val=val,
                                    seed=cfg.seed + k, desc=f"coupled k={k}", show_progress=show_progress)
        d, d_other = _lengths(log, cfg.convention)
        per.append(d)
        other.append(d_other)
        logs.append(log)
        if k == cfg.outer_iters or (k > 1 and abs(per[-1] - per[-2]) <= cfg.tol * abs(per[-2])):
            break
        costs = pair_kl_cost(model, log.checkpoints, log.checkpoint_tau, source.x, target.x, plan,
                             buffers=log.checkpoint_buffers)  # Eq. (12b)
        lam = cfg.prox_lam * cfg.prox_growth ** (k - 1)
        plan = proximal_update(plan, costs, lam, cfg.reg)  # Eq. (12a)
    return TransferResult(
        distance=per[-1], convention=cfg.convention, per_iteration=per, per_iteration_other=other, coupling=plan,
        ground_cost=costs, log=logs[-1], logs=logs, target_model=_trained(model), wall_time=time.perf_counter() - start,
        config=cfg.to_dict(),
    )


def uncoupled_transfer_distance(
    source: Task, target: Task, source_model: nn.Module, config: CoupledConfig | None = None, *,
    source_val: Task | None = None, target_val: Task | None = None, show_progress: bool | None = None,
) -> TransferResult:
    r"""The uncoupled transfer distance (Sec. 3.1, Eqs. 9-10): the mixture interpolation
    :math:`\hat p_\tau = (1-\tau)\hat p_s + \tau \hat p_t`, the same SGD, the same length measure.
    """
    cfg = config or CoupledConfig()
    _check_tasks(source, target)
    start = time.perf_counter()
    val = (source_val, target_val, None) if source_val is not None and target_val is not None else None
    model, log = run_trajectory(source_model, source, target, cfg, kind="mixture", plan=None, val=val,
                                seed=cfg.seed + 1, desc="uncoupled", show_progress=show_progress)
    d, d_other = _lengths(log, cfg.convention)
    return TransferResult(
        distance=d, convention=cfg.convention, per_iteration=[d], per_iteration_other=[d_other], coupling=None,
        ground_cost=None, log=log, logs=[log], target_model=model, wall_time=time.perf_counter() - start,
        config=cfg.to_dict(),
    )


def authors_scale(length: float, checkpoints: int = 100) -> float:
    r"""Convert a Fisher-Rao length to the scale of the authors' published numbers.

    Their code adds :math:`\sqrt{\mathrm{KL}}/\text{partitions}` at each of 100
    checkpoints instead of :math:`\sqrt{2\mathrm{KL}}` (see the seeds' README):
    their numbers are about ``length / (checkpoints * sqrt(2))``. This is a
    scale conversion only; their checkpoints also average over 200 SGD steps.
    """
    check_positive("checkpoints", checkpoints, integer=True)
    return length / (checkpoints * math.sqrt(2.0))


def _trained(model: nn.Module | None) -> nn.Module:
    """The model of the last outer iteration (there is always at least one)."""
    assert model is not None
    return model


def train_source_model(
    task: Task, model_fn: Callable[[], nn.Module], *, steps: int, lr: float, batch_size: int, seed: int = 0,
    device: str = "cpu",
) -> nn.Module:
    """Train a fresh ``model_fn()`` on ``task`` with plain SGD (the source model of Eq. 12c)."""

    model = model_fn().to(device)
    train_sgd(model, minibatch_sampler(task.x.to(device), task.y.to(device), batch_size),
              SGDConfig(steps=steps, lr=lr, seed=seed), track_length=False, desc="source model")
    return model
