r"""Many transfer trajectories as one program: P models of one architecture stepped together.

A distance matrix is dozens of independent trajectories of the same small network (n(n-1) ordered
pairs, times K outer iterations of Eq. (12), times seeds). Here P of them share one forward and one
backward: their weights are stacked (``torch.func.stack_module_state``) and the network is evaluated
with ``torch.func.functional_call`` under ``torch.func.vmap``, each model on its own inputs:

.. math::

    \ell(W) = \sum_{p=1}^{P} \ell_{\tau_p}\big(w_p;\ x^{(p)}_{1..B}, y^{(p)}_{1..B}\big),
    \qquad \nabla_{w_p}\ell(W) = \nabla\ell_{\tau_p}(w_p),

so one ``backward`` of the sum gives every model its own gradient (no model's loss depends on another's
weights), and SGD with momentum and weight decay, being elementwise, updates the stacked weights exactly as
it would update each model alone. Each trajectory keeps its own data stream (the numpy generators of
:class:`~ctd_lib.task_distance.coupled.run_trajectory`, shared code), tau, coupling, optimiser state and
length meter: a batch gives each trajectory the numbers it would have alone (tested to 1e-9 relative in
float64; in float32 the batched matrix products round differently: 1.4e-7 relative after 25 steps, measured).

* **Batch norm** keeps per-model running statistics: the buffers are stacked like the weights and passed
  through ``functional_call``, so the in-place running-mean update of each model writes its own slice
  (tested against the one-model path).
* **Dropout** masks are drawn per model inside ``vmap`` (``randomness="different"``) from torch's
  generator, seeded from the batch's seeds: each model gets independent masks and a batch is reproducible,
  but the masks are not the ones the same trajectory draws alone (torch draws one-model masks from a
  different stream). Equality with the one-model path holds for networks without dropout (the
  chapter's MLP, the CNN at ``dropout=0``); with dropout, a batched run is its own reproducible estimate.

The one-model functions (:func:`~ctd_lib.task_distance.coupled.coupled_transfer_distance`,
:func:`~ctd_lib.task_distance.coupled.uncoupled_transfer_distance`) stay the reference;
:func:`coupled_transfer_distances` and :func:`uncoupled_transfer_distances` are their batched twins, and
:func:`batched_pair_kl_costs` evaluates the ground cost of Eq. (12b) of P pairs at all checkpoints
together.
"""
from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from .._util.checks import check_device, check_positive
from .._util.progress import progress
from .._util.torch_state import rng_state, set_rng_state
from ..data import Task
from ..geometry.length import LengthMeter, kl_categorical
from ..geometry.sgd import cross_entropy
from ..transport.blocks import BlockPlan
from .coupled import (
    CoupledConfig,
    TrajectoryLog,
    TransferResult,
    _check_tasks,
    _has_dropout,
    _lengths,
    _Streams,
    affine_stem,
    checkpoint_steps,
    initial_coupling,
    proximal_update,
    tau_at,
)

__all__ = [
    "StackedModels", "TrajectoryJob", "batched_pair_kl_costs", "coupled_transfer_distances",
    "run_trajectories", "uncoupled_transfer_distances",
]


def _signature(model: nn.Module) -> tuple:
    return (type(model).__qualname__,
            tuple((k, tuple(v.shape), v.dtype) for k, v in model.named_parameters()),
            tuple((k, tuple(v.shape), v.dtype) for k, v in model.named_buffers()))


class StackedModels:
    r"""P models of one architecture as stacked weights and buffers, evaluated together.

    ``forward(x)`` maps (P, B, ...) inputs to (P, B, C) logits: model p on ``x[p]``. The stacked tensors
    (``params``, leading dimension P) are leaves that require grad; ``buffers`` hold each model's batch-norm
    statistics. ``train()``/``eval()`` switch the shared module's mode.
    """

    def __init__(self, models: Sequence[nn.Module]):
        models = list(models)
        if not models:
            raise ValueError("models is empty: a batch needs at least one model")
        sig = _signature(models[0])
        for i, m in enumerate(models[1:], start=1):
            if _signature(m) != sig:
                raise ValueError(f"models[{i}] ({type(m).__name__}) has another architecture than models[0] "
                                 f"({type(models[0]).__name__}): a batch holds models of one architecture")
        if any(not p.requires_grad for m in models for p in m.parameters()):
            raise ValueError("models have frozen parameters; the batched engine trains every parameter")
        self.P = len(models)
        self.names = [k for k, _ in models[0].named_parameters()]
        self.buffer_names = [k for k, _ in models[0].named_buffers()]
        self.shapes = [tuple(p.shape) for p in models[0].parameters()]
        params, buffers = stack_module_state(models)
        self.params = {k: params[k] for k in self.names}
        self.buffers = {k: buffers[k] for k in self.buffer_names}
        self.template = copy.deepcopy(models[0]).to("meta")
        self.dropout = _has_dropout(models[0])
        self._stem_prefix = "layers.0" if affine_stem(models[0]) is not None else None

    def train(self) -> None:
        self.template.train()

    def eval(self) -> None:
        self.template.eval()

    def parameters(self) -> list:
        return [self.params[k] for k in self.names]

    def _call(self, params: dict, buffers: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.template, (params, buffers), (x,))

    def forward(self, x: torch.Tensor, params: dict | None = None, buffers: dict | None = None) -> torch.Tensor:
        """Logits (P, B, C) of model p on ``x[p]``; ``params``/``buffers`` default to the stacked state."""
        params = self.params if params is None else params
        buffers = self.buffers if buffers is None else buffers
        fn = vmap(self._call, in_dims=(0, 0, 0), randomness="different" if self.dropout else "error")
        return fn(params, buffers, x)

    __call__ = forward

    def affine_stem(self) -> tuple | None:
        """``(first, rest)`` for stacked weights, as :func:`~ctd_lib.task_distance.coupled.affine_stem` for one
        model: ``first(params, x)`` (x: (P, N, ...)) the first, affine layer of each model, ``rest(params,
        buffers, h)`` the layers after it; None when the architecture has no such stem."""
        if self._stem_prefix is None:
            return None
        prefix = self._stem_prefix
        layers = self.template.layers
        assert isinstance(layers, nn.Sequential)
        rest_module = layers[1:]

        def first(params: dict, x: torch.Tensor) -> torch.Tensor:
            w, b = params[f"{prefix}.weight"], params[f"{prefix}.bias"]
            return torch.baddbmm(b.unsqueeze(1), x.reshape(x.shape[0], x.shape[1], -1), w.transpose(1, 2))

        def rest(params: dict, buffers: dict, h: torch.Tensor) -> torch.Tensor:
            sub = {k[len("layers."):]: v for k, v in params.items()
                   if k.startswith("layers.") and not k.startswith(f"{prefix}.")}
            return vmap(lambda p, hh: functional_call(rest_module, p, (hh,)), in_dims=(0, 0))(sub, h)

        return first, rest

    def flat(self) -> torch.Tensor:
        """(P, n) the weights of every model as one flat vector each, in ``flat_parameters`` order."""
        with torch.no_grad():
            return torch.cat([self.params[k].detach().reshape(self.P, -1) for k in self.names], dim=1).clone()

    def buffer_copies(self) -> list:
        """For every model, copies of its buffers in ``model.buffers()`` order (as ``copy_buffers``)."""
        return [[self.buffers[k][p].detach().clone() for k in self.buffer_names] for p in range(self.P)]

    def unflatten(self, flat: torch.Tensor) -> dict:
        """Stacked parameters from (P, n) flat vectors."""
        out, offset = {}, 0
        for k, shape in zip(self.names, self.shapes):
            n = int(np.prod(shape)) if shape else 1
            out[k] = flat[:, offset:offset + n].reshape(flat.shape[0], *shape)
            offset += n
        return out

    def stack_buffers(self, per_model: Sequence[Sequence[torch.Tensor]]) -> dict:
        """Stacked buffers from one list of tensors per model (as ``copy_buffers``)."""
        return {k: torch.stack([b[i] for b in per_model]) for i, k in enumerate(self.buffer_names)}

    def module(self, p: int, like: nn.Module) -> nn.Module:
        """Model ``p`` as a stand-alone ``nn.Module`` (a copy of ``like`` holding its weights and buffers)."""
        m = copy.deepcopy(like)
        with torch.no_grad():
            for w, k in zip(m.parameters(), self.names):
                w.copy_(self.params[k][p])
            for b, k in zip(m.buffers(), self.buffer_names):
                b.copy_(self.buffers[k][p])
        return m


@dataclass(frozen=True)
class TrajectoryJob:
    """One trajectory of a batch: what :func:`~ctd_lib.task_distance.coupled.run_trajectory` takes for it."""

    source_model: nn.Module
    source: Task
    target: Task
    kind: str  # "beta-mixup", "displacement" or "mixture"
    plan: BlockPlan | None = None
    val: tuple | None = None  # (source_val, target_val, val_plan)
    seed: int = 0


def _check_jobs(jobs: Sequence[TrajectoryJob], cfg: CoupledConfig) -> None:
    if len(jobs) < 1:
        raise ValueError("jobs is empty: a batch needs at least one trajectory")
    check_device("device", cfg.device)
    shape, classes = tuple(jobs[0].source.x.shape[1:]), jobs[0].source.num_classes
    for i, job in enumerate(jobs):
        if not isinstance(job, TrajectoryJob):
            raise ValueError(f"jobs[{i}] is a {type(job).__name__}, not a TrajectoryJob")
        _check_tasks(job.source, job.target)
        if tuple(job.source.x.shape[1:]) != shape:
            raise ValueError(f"jobs[{i}] has inputs of shape {tuple(job.source.x.shape[1:])} and jobs[0] {shape}: "
                             "a batch's trajectories share one input shape")
        if job.source.num_classes != classes:
            raise ValueError(f"jobs[{i}] has {job.source.num_classes} classes and jobs[0] {classes}")
        if cfg.length_inputs == "held_out" and job.val is None:
            raise ValueError(f"jobs[{i}]: length_inputs='held_out' needs held-out data (val)")
    StackedModels([job.source_model for job in jobs])  # one architecture, or a ValueError naming the odd one


def run_trajectories(
    jobs: Sequence[TrajectoryJob], cfg: CoupledConfig, *, desc: str = "trajectories", show_progress: bool | None = None,
) -> list[tuple[nn.Module, TrajectoryLog]]:
    r"""Eq. (12c) (or Eq. 10) for every job of ``jobs`` at once; what :func:`run_trajectory` gives each alone.

    All jobs share ``cfg`` (steps, SGD, schedule, length estimator); each has its own source model, tasks,
    coupling and seed. Returns ``(model, log)`` per job, in order. Per step: P mini-batches (one per job's
    numpy stream) stacked to (P, B, ...); one vmapped forward, the sum of the P losses, one backward, one SGD
    step on the stacked weights; the per-step length on the mini-batch (batch-norm statistics restored after
    the measuring forward) and :math:`|dw|` per model; the chords of the polyline at the checkpoints on each
    job's chord inputs.
    """
    _check_jobs(jobs, cfg)
    seeds = [int(job.seed) for job in jobs]
    dev = torch.device(cfg.device)
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        batch_seed = int(np.random.SeedSequence(seeds).generate_state(1)[0])  # the batch's dropout stream
        torch.random.default_generator.manual_seed(batch_seed)
        if dev.type == "cuda":
            with torch.cuda.device(dev):
                torch.cuda.manual_seed(batch_seed)
        return _run(jobs, cfg, desc=desc, show_progress=show_progress)


def _stack_xy(batches: list) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.stack([b[0] for b in batches]), torch.stack([b[1] for b in batches])


def _losses(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(P,) mean cross-entropy of each model on its own batch (hard (P, B) or soft (P, B, C) labels): the
    :func:`~ctd_lib.geometry.sgd.cross_entropy` of each model, bit for bit. Soft labels (every interpolated
    batch) in one call for all models; hard ones one model at a time (a batched mean rounds differently)."""
    if y.dim() == 2:
        return torch.stack([cross_entropy(logits[p], y[p]) for p in range(logits.shape[0])])
    return -(y * torch.log_softmax(logits, dim=2)).sum(dim=2).mean(dim=1)


def _run(jobs, cfg, *, desc, show_progress):
    dev = torch.device(cfg.device)
    P = len(jobs)
    stack = StackedModels([copy.deepcopy(job.source_model).to(dev) for job in jobs])
    params = stack.parameters()
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    w_prev = [torch.empty_like(p) for p in params]  # the weights before each step, for |dw|, allocated once
    streams = [_Streams(job.source, job.target, cfg, job.kind, job.plan, job.val, job.seed) for job in jobs]
    ck_steps = checkpoint_steps(cfg.steps, cfg.length_checkpoints)
    ck_set = set(ck_steps)
    eval_steps = set(ck_steps) if not cfg.eval_every else set(range(0, cfg.steps + 1, cfg.eval_every)) | {cfg.steps}
    per_step_batch = cfg.length_estimator == "per_step" and cfg.length_inputs == "batch"
    chord_at = set(range(cfg.steps + 1)) if cfg.length_estimator == "per_step" else ck_set
    meters = [LengthMeter() for _ in range(P)]
    chord_meters = [LengthMeter() for _ in range(P)]
    open_chord: tuple | None = None
    taus, losses = np.empty(cfg.steps), torch.empty(P, cfg.steps)
    checkpoints: list = [[] for _ in range(P)]
    ck_buf: list = [[] for _ in range(P)]
    ck_tau: list = []
    ev_tau: list = []
    ev_train: list = [[] for _ in range(P)]
    ev_val: list = [[] for _ in range(P)]
    has_val = [s.val_draw is not None for s in streams]

    def mark(x: torch.Tensor | None) -> None:
        nonlocal open_chord
        w = stack.flat()
        stack.eval()
        with torch.no_grad():
            if open_chord is not None:
                x0, before, w0 = open_chord
                after = stack(x0)
                dw = (w - w0).norm(dim=1)
                for p in range(P):
                    chord_meters[p].update(before[p], after[p], dw_norm=float(dw[p]))
            open_chord = None if x is None else (x, stack(x), w)
        stack.train()

    def evaluate(step: int) -> None:
        tau = tau_at(min(step, cfg.steps - 1), cfg.steps, cfg.schedule)
        drawn = [s.eval_batches(tau) for s in streams]
        stack.eval()
        with torch.no_grad():
            x, y = _stack_xy([d[0] for d in drawn])
            for p, v in enumerate(_losses(stack(x), y).tolist()):
                ev_train[p].append(v)
            if any(has_val):
                x, y = _stack_xy([d[1] if d[1] is not None else d[0] for d in drawn])
                for p, v in enumerate(_losses(stack(x), y).tolist()):
                    ev_val[p].append(v if has_val[p] else float("nan"))
            else:
                for p in range(P):
                    ev_val[p].append(float("nan"))
        stack.train()
        ev_tau.append(tau)

    stack.train()
    xb = yb = None
    for step in progress(range(cfg.steps + 1), desc=f"{desc} (P={P})", enabled=show_progress):
        last = step == cfg.steps
        if not last:
            tau = tau_at(step, cfg.steps, cfg.schedule)
            taus[step] = tau
            batches = [s.batch(tau) for s in streams]
            xb, yb = _stack_xy(batches)
        if step in ck_set:
            flat, bufs = stack.flat(), stack.buffer_copies()
            for p in range(P):
                checkpoints[p].append(flat[p])
                ck_buf[p].append(bufs[p])
            ck_tau.append(tau_at(min(step, cfg.steps - 1), cfg.steps, cfg.schedule))
        if not per_step_batch and step in chord_at:
            mark(None if last else torch.stack([s.chord_inputs(step, batches[p][0]) for p, s in enumerate(streams)]))
        if step in eval_steps:
            evaluate(step)
        if last:
            break
        assert xb is not None and yb is not None
        state = rng_state(dev) if stack.dropout else None
        with torch.no_grad():
            torch._foreach_copy_(w_prev, params)
        logits = stack(xb)
        loss = _losses(logits, yb)
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        opt.step()
        losses[:, step] = loss.detach()
        if state is not None:
            set_rng_state(dev, state)  # the same dropout masks as the training forward
        with torch.no_grad():
            saved = {k: v.clone() for k, v in stack.buffers.items()}
            after = stack(xb)
            for k, v in saved.items():
                stack.buffers[k].copy_(v)  # the measuring forward leaves batch-norm statistics untouched
            torch._foreach_sub_(w_prev, params)  # w - (w + dw), in place
            dw = torch.stack([d.reshape(P, -1).norm(dim=1) for d in w_prev]).norm(dim=0)
        for p in range(P):
            meters[p].update(logits[p], after[p], dw_norm=dw[p].double())
    out = []
    for p, job in enumerate(jobs):
        per_step = meters[p].result()
        log = TrajectoryLog(
            tau=taus.copy(), loss=losses[p].numpy(), length=per_step if per_step_batch else chord_meters[p].result(),
            per_step_length=per_step, eval_tau=np.asarray(ev_tau), eval_train_loss=np.asarray(ev_train[p]),
            eval_val_loss=np.asarray(ev_val[p]), checkpoints=checkpoints[p], checkpoint_tau=list(ck_tau),
            checkpoint_buffers=ck_buf[p], checkpoint_steps=list(ck_steps), recorded_logits=None,
        )
        out.append((stack.module(p, job.source_model).to(dev), log))
    return out


@torch.no_grad()
def batched_pair_kl_costs(
    models: Sequence[nn.Module], logs: Sequence[TrajectoryLog], plans: Sequence[BlockPlan], sources: Sequence[Task],
    targets: Sequence[Task], *, chunk: int = 4096,
) -> list:
    r"""The ground cost of Eq. (12b) of P pairs, every chord of every pair's trajectory at once.

    .. math::

        C^{(p)}_{ij} = \sum_{m=0}^{M-2} \sqrt{2\,\mathrm{KL}\big[p_{w^{(p)}_m}(\cdot\mid x^{ij}_{\tau_m}),
                       p_{w^{(p)}_{m+1}}(\cdot\mid x^{ij}_{\tau_m})\big]}

    as :func:`~ctd_lib.task_distance.coupled.pair_kl_cost` gives each pair alone: for each chord m, the P
    "before" and P "after" networks (checkpoints m and m + 1, with their batch-norm statistics) are evaluated
    as one stacked batch of 2P models per chunk of pairs, in eval mode. ``models`` (P networks of one architecture: their
    architecture, not their weights, is used), ``logs`` (their trajectories), ``plans``, ``sources`` and
    ``targets`` hold one entry per pair. Returns, per pair, one (|I_k|, |J_k|) array per block.
    """
    P = len(models)
    if not (len(logs) == len(plans) == len(sources) == len(targets) == P) or P == 0:
        raise ValueError(f"models ({P}), logs ({len(logs)}), plans ({len(plans)}), sources ({len(sources)}) and "
                         f"targets ({len(targets)}) must hold one entry per pair, at least one")
    check_positive("chunk", chunk, integer=True)
    M = len(logs[0].checkpoints)
    if any(len(log.checkpoints) != M for log in logs):
        raise ValueError("logs have different numbers of checkpoints; batch trajectories of one configuration")
    stack = StackedModels(models)
    stack.eval()
    dev = stack.params[stack.names[0]].device
    index = []
    for plan in plans:
        src, tgt = plan.assignment.source_blocks, plan.assignment.target_blocks
        I = torch.cat([torch.as_tensor(i).repeat_interleave(len(j)) for i, j in zip(src, tgt)])
        J = torch.cat([torch.as_tensor(j).repeat(len(i)) for i, j in zip(src, tgt)])
        index.append((I.to(dev), J.to(dev)))
    n_max = max(I.numel() for I, _ in index)
    totals = [torch.zeros(I.numel(), dtype=torch.float64) for I, _ in index]
    xs = [s.x.to(dev) for s in sources]
    xt = [t.x.to(dev) for t in targets]
    per_call = max(1, chunk // (2 * P))  # pairs per model per call: about `chunk` inputs per call
    stem = stack.affine_stem()
    if stem is not None:  # the first layer once per sample (padded to the largest task), combined per pair
        xs_pad = _padded(xs)
        xt_pad = _padded(xt)
    for m in range(M - 1):  # chord m: 2P networks, before = checkpoint m and after = m + 1 of every pair
        ends = [logs[p].checkpoints[m + e] for e in (0, 1) for p in range(P)]
        weights = stack.unflatten(torch.stack(ends).to(dev))
        bufs = stack.stack_buffers([logs[p].checkpoint_buffers[m + e] for e in (0, 1) for p in range(P)]) \
            if stack.buffer_names else {}
        taus = [logs[p].checkpoint_tau[m] for p in range(P)]
        if stem is not None:
            first, rest = stem
            hs, ht = first(weights, torch.cat([xs_pad, xs_pad])), first(weights, torch.cat([xt_pad, xt_pad]))
        for a in range(0, n_max, per_call):
            sel = [torch.arange(a, a + per_call, device=dev).clamp_max(index[p][0].numel() - 1)  # pad: last pair
                   for p in range(P)]
            if stem is not None:
                h = torch.stack([(1 - taus[q % P]) * hs[q][index[q % P][0][sel[q % P]]]
                                 + taus[q % P] * ht[q][index[q % P][1][sel[q % P]]] for q in range(2 * P)])
                logits = rest(weights, bufs, h)
            else:
                x = torch.stack([(1 - taus[p]) * xs[p][index[p][0][sel[p]]] + taus[p] * xt[p][index[p][1][sel[p]]]
                                 for p in range(P)])
                logits = stack.forward(torch.cat([x, x]), weights, bufs)
            c = logits.shape[-1]
            kl = kl_categorical(logits[:P].double().reshape(-1, c), logits[P:].double().reshape(-1, c))
            root = (2.0 * kl.reshape(P, per_call).clamp_min(0.0)).sqrt().cpu()
            for p in range(P):
                n = min(per_call, index[p][0].numel() - a)
                if n > 0:
                    totals[p][a:a + n] += root[p, :n]
    out = []
    for p, plan in enumerate(plans):
        blocks, offset = [], 0
        for i, j in zip(plan.assignment.source_blocks, plan.assignment.target_blocks):
            n = len(i) * len(j)
            blocks.append(totals[p][offset:offset + n].numpy().reshape(len(i), len(j)))
            offset += n
        out.append(blocks)
    return out


def _padded(xs: list) -> torch.Tensor:
    """(P, N_max, ...) from P tensors of up to N_max samples, zero-padded (the padding is never indexed)."""
    n = max(x.shape[0] for x in xs)
    out = xs[0].new_zeros((len(xs), n, *xs[0].shape[1:]))
    for p, x in enumerate(xs):
        out[p, : x.shape[0]] = x
    return out


def _prepared(pairs, vals, cfg: CoupledConfig, batch_size: int) -> tuple[list, list, list]:
    """``pairs`` and ``vals`` as lists and the index groups of ``batch_size`` pairs, after every check of the
    whole input (device, each pair's tasks, one architecture), so no group trains before a bad pair is seen."""
    pairs = list(pairs)
    vals = [None] * len(pairs) if vals is None else list(vals)
    if len(vals) != len(pairs):
        raise ValueError(f"vals has {len(vals)} entries; pairs has {len(pairs)}")
    check_positive("batch_size", batch_size, integer=True)
    check_device("device", cfg.device)
    for i, (s, t, _m) in enumerate(pairs):
        try:
            _check_tasks(s, t)
        except ValueError as exc:
            raise ValueError(f"pairs[{i}]: {exc}") from None
    StackedModels([m for _s, _t, m in pairs])  # one architecture for all
    groups = [list(range(a, min(len(pairs), a + batch_size))) for a in range(0, len(pairs), batch_size)]
    return pairs, vals, groups


def coupled_transfer_distances(
    pairs: Sequence[tuple], config: CoupledConfig | None = None, *, vals: Sequence[tuple | None] | None = None,
    batch_size: int = 20, show_progress: bool | None = None,
) -> list[TransferResult]:
    r"""The coupled transfer distance (Definition 2, Eq. 12) of many pairs, ``batch_size`` trajectories at a time.

    ``pairs`` holds ``(source, target, source_model)`` triples; ``vals`` optionally one ``(source_val,
    target_val)`` per pair. Each pair gets what :func:`~ctd_lib.task_distance.coupled.coupled_transfer_distance`
    gives it alone (the same seeds: ``cfg.seed + k`` at outer iteration k); a pair whose distance has
    converged (``tol``) leaves the batch, the others go on to the next alternation: Eq. (12b) for all of
    them together (:func:`batched_pair_kl_costs`), Eq. (12a) per pair.
    """
    cfg = config or CoupledConfig()
    pairs, vals, groups = _prepared(pairs, vals, cfg, batch_size)
    results: list = [None] * len(pairs)
    for group in groups:
        for i, res in zip(group, _coupled_group([pairs[i] for i in group], [vals[i] for i in group], cfg,
                                                show_progress)):
            results[i] = res
    return results


def _coupled_group(pairs, vals, cfg, show_progress):
    start = time.perf_counter()
    plans, val_args = [], []
    for (s, t, m), v in zip(pairs, vals):
        plans.append(initial_coupling(m, s, t, cfg))
        val_args.append(None if v is None else (v[0], v[1], initial_coupling(m, v[0], v[1], cfg)))
    n = len(pairs)
    per: list = [[] for _ in range(n)]
    other: list = [[] for _ in range(n)]
    logs: list = [[] for _ in range(n)]
    costs: list = [None] * n
    final: list = [None] * n
    active = list(range(n))
    for k in range(1, cfg.outer_iters + 1):
        jobs = [TrajectoryJob(pairs[i][2], pairs[i][0], pairs[i][1], cfg.interpolation, plans[i], val_args[i],
                              cfg.seed + k) for i in active]
        ran = run_trajectories(jobs, cfg, desc=f"coupled k={k}", show_progress=show_progress)
        going = []
        for i, (model, log) in zip(active, ran):
            d, d_other = _lengths(log, cfg.convention)
            per[i].append(d)
            other[i].append(d_other)
            logs[i].append(log)
            final[i] = model
            if not (k == cfg.outer_iters or (k > 1 and abs(per[i][-1] - per[i][-2]) <= cfg.tol * abs(per[i][-2]))):
                going.append(i)
        if not going:
            break
        new = batched_pair_kl_costs([final[i] for i in going], [logs[i][-1] for i in going],
                                    [plans[i] for i in going], [pairs[i][0] for i in going],
                                    [pairs[i][1] for i in going])  # Eq. (12b)
        lam = cfg.prox_lam * cfg.prox_growth ** (k - 1)
        for i, c in zip(going, new):
            costs[i] = c
            plans[i] = proximal_update(plans[i], c, lam, cfg.reg)  # Eq. (12a)
        active = going
    wall = time.perf_counter() - start
    return [TransferResult(distance=per[i][-1], convention=cfg.convention, per_iteration=per[i],
                           per_iteration_other=other[i], coupling=plans[i], ground_cost=costs[i], log=logs[i][-1],
                           logs=logs[i], target_model=final[i], wall_time=wall / n, config=cfg.to_dict())
            for i in range(n)]


def uncoupled_transfer_distances(
    pairs: Sequence[tuple], config: CoupledConfig | None = None, *, vals: Sequence[tuple | None] | None = None,
    batch_size: int = 20, show_progress: bool | None = None,
) -> list[TransferResult]:
    r"""The uncoupled transfer distance (Sec. 3.1, Eqs. 9-10) of many ``(source, target, source_model)``
    pairs, ``batch_size`` trajectories at a time; each as
    :func:`~ctd_lib.task_distance.coupled.uncoupled_transfer_distance` gives it alone."""
    cfg = config or CoupledConfig()
    pairs, vals, groups = _prepared(pairs, vals, cfg, batch_size)
    results: list = [None] * len(pairs)
    for group in groups:
        start = time.perf_counter()
        jobs = [TrajectoryJob(pairs[i][2], pairs[i][0], pairs[i][1], "mixture", None,
                              None if vals[i] is None else (vals[i][0], vals[i][1], None), cfg.seed + 1)
                for i in group]
        ran = run_trajectories(jobs, cfg, desc="uncoupled", show_progress=show_progress)
        wall = (time.perf_counter() - start) / len(group)
        for i, (model, log) in zip(group, ran):
            d, d_other = _lengths(log, cfg.convention)
            results[i] = TransferResult(distance=d, convention=cfg.convention, per_iteration=[d],
                                        per_iteration_other=[d_other], coupling=None, ground_cost=None, log=log,
                                        logs=[log], target_model=model, wall_time=wall, config=cfg.to_dict())
    return results
