r"""Task2Vec (Achille et al. 2019), the baseline of Figs. 2-5 of [Gao & Chaudhari 2021].

Sec. 5.2: "The next baseline is Task2Vec (Achille et al., 2019a) which embeds tasks using the
diagonal of the FIM of a model trained on them individually. Cosine distance between these vectors
is defined as the task distance." :func:`task2vec_embedding` computes the diagonal of the Fisher
information matrix (Eq. 3) of a probe network from exact per-sample gradients
(``torch.func.vmap(grad(...))``) and :func:`task2vec_distance` compares two embeddings as Task2Vec
does (the normalised cosine distance).
"""
from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from .._util.checks import check_choice, check_count, check_positive
from ..data import Task
from ..geometry.sgd import SGDConfig, minibatch_sampler, train_sgd
from .finetune import _check_labels_fit, _check_seed, _model_dtype

__all__ = [
    "FISHER_KINDS", "PARAMETER_SETS", "REDUCTIONS", "Task2VecConfig", "classifier_layer", "embed_tasks",
    "fisher_diagonal", "task2vec_distance", "task2vec_embedding", "task2vec_matrix"
]

#: How the label in :math:`\nabla_w \log p_w(y\mid x)` is chosen (see :func:`fisher_diagonal`).
FISHER_KINDS = ("model", "empirical", "exact")
#: Which weights Task2Vec embeds (see :class:`Task2VecConfig`).
PARAMETER_SETS = ("features", "all", "head")
#: How the per-weight diagonal is reduced (see :class:`Task2VecConfig`).
REDUCTIONS = ("none", "filter")


@dataclass(frozen=True, kw_only=True)
class Task2VecConfig:
    """Task2Vec embedding of a task by a probe network (Achille et al. 2019; Sec. 5.2)."""

    n_samples: int = 1000  # inputs drawn without replacement from the task (all, if it has fewer)
    batch_size: int = 64  # per-sample gradients computed together (memory ~ batch_size x parameters)
    parameters: str = "features"  # "features": all but the final linear layer (Task2Vec); "all"; "head"
    fisher: str = "exact"  # FIM diagonal, sum over y ~ p_w(.|x) ("model": sampled y, Task2Vec; "empirical")
    mc_samples: int = 1  # label draws per input for fisher="model" (Task2Vec's Monte Carlo: 1)
    head_steps: int = 100  # SGD steps on the final linear layer alone, features frozen (0: none)
    head_lr: float = 0.05  # learning rate of those steps
    reduction: str = "filter"  # "filter": mean over each output unit (Task2Vec); "none": one entry per weight
    seed: int = 0  # seeds the subsample, the head's mini-batches and the label draws

    def __post_init__(self):
        check_positive("n_samples", self.n_samples, integer=True)
        check_positive("batch_size", self.batch_size, integer=True)
        check_choice("parameters", self.parameters, PARAMETER_SETS)
        check_choice("fisher", self.fisher, FISHER_KINDS)
        check_positive("mc_samples", self.mc_samples, integer=True)
        check_count("head_steps", self.head_steps)
        check_positive("head_lr", self.head_lr)
        check_choice("reduction", self.reduction, REDUCTIONS)
        _check_seed(self.seed)

    def to_dict(self) -> dict:
        return asdict(self)


def classifier_layer(model: nn.Module) -> tuple[str, nn.Linear]:
    """The final classifier: the last ``nn.Linear`` registered in ``model`` (name, module).

    ``layers[-1]`` of :class:`~ctd_lib.models.MLP`, ``classifier`` of
    :class:`~ctd_lib.models.PaperCNN`, ``fc`` of :class:`~ctd_lib.models.WideResNet`.
    """
    found = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not found:
        raise ValueError(f"model={type(model).__name__} has no nn.Linear layer to use as the classifier")
    return found[-1]


def _parameter_names(model: nn.Module, which: str) -> list[str]:
    head_name, _ = classifier_layer(model)
    prefix = head_name + "." if head_name else ""
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    in_head = [n.startswith(prefix) for n in trainable]
    if which == "all":
        names = trainable
    elif which == "head":
        names = [n for n, h in zip(trainable, in_head) if h]
    else:
        names = [n for n, h in zip(trainable, in_head) if not h]
    if not names:
        raise ValueError(f"parameters={which!r} selects no trainable parameter of {type(model).__name__}")
    return names


def fisher_diagonal(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    fisher: str = "model",
    mc_samples: int = 1,
    parameters: Sequence[str] | None = None,
    batch_size: int = 64,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    r"""Diagonal of the Fisher information matrix from exact per-sample gradients.

    .. math::

        F_{ii} = \frac1N \sum_{n=1}^N \mathbb{E}_{y \sim q(\cdot\mid x_n)}
                 \big[\partial_{w_i} \log p_w(y\mid x_n)\big]^2

    where the :math:`x_n` are the rows of ``x`` and, by ``fisher``,

    - ``"exact"``: :math:`q = p_w`, the expectation summed over all classes: the
      diagonal of Eq. (3) of [Gao & Chaudhari 2021] (the diagonal of
      :func:`~ctd_lib.geometry.fim.fisher_matrix`);
    - ``"model"``: :math:`q = p_w`, the expectation estimated by ``mc_samples``
      draws per input (unbiased; this is Task2Vec's estimator, which samples
      :math:`y` from the model, not the data);
    - ``"empirical"``: :math:`q = \delta_{y_n}`, the observed labels (the
      "empirical Fisher", not the FIM).

    Each squared gradient is of one sample's log-likelihood
    (``vmap(grad(...))`` over samples), not of a mini-batch mean: the square of a
    mean gradient is not the mean of squares. The model is evaluated in
    ``eval()`` mode (restored on return), so batch norm uses its running
    statistics and dropout is off.

    Parameters
    ----------
    model : network whose output (N, C) are logits.
    x : (N, ...) inputs, in the model's dtype.
    y : (N,) integer labels; required for ``"empirical"``, ignored otherwise.
    fisher : one of :data:`FISHER_KINDS`.
    mc_samples : label draws per input for ``"model"``.
    parameters : names (as in ``named_parameters``) of the weights :math:`w_i`;
        None: every trainable parameter. The others are held fixed.
    batch_size : per-sample gradients computed at once (rows are (input, label) pairs).
    generator : random source of the ``"model"`` label draws.

    Returns
    -------
    dict from parameter name to a float64 tensor of that parameter's shape.
    """
    check_choice("fisher", fisher, FISHER_KINDS)
    check_positive("mc_samples", mc_samples, integer=True)
    check_positive("batch_size", batch_size, integer=True)
    n = x.shape[0]
    if n == 0:
        raise ValueError("x is empty: the task has no samples")
    if fisher == "empirical":
        if y is None:
            raise ValueError("y=None is not valid for fisher='empirical'; pass the observed labels")
        if y.shape[0] != n:
            raise ValueError(f"x and y disagree on the number of samples: {n} and {y.shape[0]}")
    all_params = dict(model.named_parameters())
    names = [k for k, p in all_params.items() if p.requires_grad] if parameters is None else list(parameters)
    unknown = [k for k in names if k not in all_params]
    if unknown or not names:
        raise ValueError(f"parameters={list(parameters or [])!r} is not valid; unknown names {unknown}")
    wrt = {k: all_params[k].detach() for k in names}
    fixed = {k: p.detach() for k, p in all_params.items() if k not in wrt}
    fixed.update({k: b.detach() for k, b in model.named_buffers()})

    def log_lik(w, xi, yi):
        out = functional_call(model, {**w, **fixed}, (xi.unsqueeze(0),))
        return torch.log_softmax(out, dim=1)[0].gather(0, yi.reshape(1)).squeeze(0)

    per_sample_grad = vmap(grad(log_lik), in_dims=(None, 0, 0))
    was_training = model.training
    model.eval()
    try:
        # Rows (input index, label, weight); F_ii = (1/N) sum_rows weight * grad_i^2.
        if fisher == "empirical":
            rows = torch.arange(n)
            assert y is not None  # checked above
            labels = y.to(torch.int64)
            weights = torch.ones(n, dtype=torch.float64)
        else:
            with torch.no_grad():
                probs = torch.cat([torch.softmax(model(x[i : i + 1024]), dim=1) for i in range(0, n, 1024)])
            n_classes = probs.shape[1]
            if fisher == "exact":
                rows = torch.arange(n).repeat_interleave(n_classes)
                labels = torch.arange(n_classes).repeat(n)
                weights = probs.double().reshape(-1)
            else:
                draws = torch.multinomial(probs.float(), mc_samples, replacement=True, generator=generator)
                rows = torch.arange(n).repeat_interleave(mc_samples)
                labels = draws.reshape(-1)
                weights = torch.full((n * mc_samples,), 1.0 / mc_samples, dtype=torch.float64)
        acc = {k: torch.zeros(v.shape, dtype=torch.float64) for k, v in wrt.items()}
        for i in range(0, rows.shape[0], batch_size):
            r = rows[i : i + batch_size]
            g = per_sample_grad(wrt, x[r], labels[i : i + batch_size])
            wb = weights[i : i + batch_size]
            for k in names:
                sq = g[k].detach().double().square()
                acc[k] += torch.tensordot(wb, sq, dims=1)
    finally:
        model.train(was_training)
    return {k: v / n for k, v in acc.items()}


def _subsample(task: Task, n: int, gen: torch.Generator, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    if task.x.shape[0] == 0:
        raise ValueError(f"task {task.name!r} is empty: it has no samples")
    idx = torch.randperm(task.x.shape[0], generator=gen)[: min(n, task.x.shape[0])]
    idx = idx.sort().values
    return task.x[idx].to(dtype), task.y[idx]


def _fit_head(model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: Task2VecConfig) -> None:
    """Train the final linear layer on frozen features (eval-mode feature extractor), in place."""
    _, head = classifier_layer(model)
    feats: list[torch.Tensor] = []
    hook = head.register_forward_pre_hook(lambda module, inputs: feats.append(inputs[0].detach()))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for i in range(0, x.shape[0], 1024):
                model(x[i : i + 1024])
    finally:
        hook.remove()
        model.train(was_training)
    sampler = minibatch_sampler(torch.cat(feats), y, config.batch_size)
    sgd = SGDConfig(steps=config.head_steps, lr=config.head_lr, seed=config.seed)
    train_sgd(head, sampler, sgd, track_length=False, show_progress=False)


def _reduce(diag: dict[str, torch.Tensor], reduction: str) -> np.ndarray:
    if reduction == "none":
        parts = [v.reshape(-1) for v in diag.values()]
    else:  # Task2Vec: weights only, averaged over each output unit's (filter's) entries
        parts = [v.reshape(v.shape[0], -1).mean(dim=1) for k, v in diag.items()
                 if k.rsplit(".", 1)[-1] == "weight" and v.dim() >= 1]
        if not parts:
            raise ValueError("reduction='filter' found no weight among the selected parameters")
    return torch.cat(parts).numpy()


def task2vec_embedding(probe: nn.Module, task: Task, config: Task2VecConfig | None = None) -> np.ndarray:
    r"""Task2Vec embedding: the FIM diagonal of a probe network on the task's data.

    .. math::

        e_t = \operatorname{diag} F(w_t), \qquad
        F_{ii}(w) = \mathbb{E}_{x \sim t}\, \mathbb{E}_{y \sim p_w(\cdot\mid x)}
                    \big[\partial_{w_i} \log p_w(y\mid x)\big]^2,

    the diagonal of Eq. (3) of [Gao & Chaudhari 2021] on the task :math:`t`
    ("embeds tasks using the diagonal of the FIM of a model trained on them
    individually", Sec. 5.2), computed by :func:`fisher_diagonal`, where
    :math:`w_t` are the probe's weights with the final linear layer first
    re-fitted to :math:`t` (``head_steps`` SGD steps, feature extractor frozen,
    as Task2Vec fits its classifier before computing the Fisher).

    **The probe.** Task2Vec and the paper use an ImageNet-pretrained ResNet as
    the probe; none can be downloaded here, so the probe is whatever network the
    caller passes, typically one the library trained on a reference task (e.g.
    all ten digits). The distances depend on that choice (the paper: "a small
    model will indicate that tasks are far away").

    **Differences from Task2Vec's code**, chosen for a well-defined quantity:
    the expectation over :math:`y \sim p_w(\cdot\mid x)` is summed over the
    classes by default (``fisher="exact"``, C times the cost of one draw) where
    Task2Vec draws one label per input (``fisher="model"``): with 80 inputs of
    MNIST 0/1 and a 32-unit MLP, one draw gave distances of 0.4-0.7 between two
    draws of the same task and the exact sum 0.02-0.11 (0.40-0.50 to digits 8/9),
    so the sampling noise swamps the signal on small tasks; use ``"model"`` for
    wide heads (CIFAR-100). The squared gradient is per sample (Task2Vec squares
    mini-batch gradients); the plain diagonal rather than Task2Vec's "robust" variational estimate;
    inputs drawn uniformly rather than class-balanced; SGD on the head rather
    than Adam. ``reduction="filter"`` (default) keeps Task2Vec's mean over the
    weights of each filter (output unit; biases dropped; batch-norm scales count,
    one per channel, as in their code), so the embedding has one entry per unit; ``"none"`` keeps one entry per weight (noisier: rarely active
    inputs give near-zero entries whose ratios are pure noise). The default
    ``parameters="features"`` embeds everything but the final linear layer, as
    Task2Vec excludes its classifier.

    Parameters
    ----------
    probe : the probe network; deep-copied, the caller's model is left untouched.
    task : its ``x`` (N, ...) and ``y`` (N,) (labels must index the probe's outputs).
    config : :class:`Task2VecConfig` (defaults if None).

    Returns
    -------
    (P,) float64 array, non-negative: P selected weights (``reduction="none"``)
    or output units (``"filter"``), in the order of ``named_parameters``.
    """
    config = Task2VecConfig() if config is None else config
    if not isinstance(config, Task2VecConfig):
        raise ValueError(f"config={config!r} is not valid; it must be a Task2VecConfig")
    model = copy.deepcopy(probe)
    _check_labels_fit(f"task {task.name!r}", model, task)
    names = _parameter_names(model, config.parameters)
    gen = torch.Generator().manual_seed(config.seed)
    x, y = _subsample(task, config.n_samples, gen, _model_dtype(model))
    if config.head_steps:
        _fit_head(model, x, y, config)
    diag = fisher_diagonal(model, x, y, fisher=config.fisher, mc_samples=config.mc_samples, parameters=names,
                           batch_size=config.batch_size, generator=gen)
    return _reduce(diag, config.reduction)


def task2vec_distance(e1: np.ndarray, e2: np.ndarray) -> float:
    r"""Task2Vec's symmetric distance: cosine distance of the elementwise-normalised embeddings.

    .. math::

        d(e_1, e_2) = 1 - \frac{\langle a, b\rangle}{\lVert a\rVert\, \lVert b\rVert},
        \qquad a_i = \frac{e_{1,i}}{e_{1,i} + e_{2,i}}, \quad b_i = \frac{e_{2,i}}{e_{1,i} + e_{2,i}},

    the "symmetric TASK2VEC distance" of Achille et al. (2019), and the
    function ``cosine`` of their code; Sec. 5.2 of [Gao & Chaudhari 2021] calls
    it the "cosine distance between these vectors". The normalisation puts each
    weight on the same scale whatever its raw Fisher value; :math:`a + b = 1`
    elementwise. Entries where :math:`e_1 = e_2 = 0` are dropped (their
    Task2Vec code adds 1e-8 to the denominator, which does the same up to a
    scale-dependent error). Symmetric, 0 when :math:`e_1 = e_2`, and in [0, 1];
    1 when the supports are disjoint.

    Parameters
    ----------
    e1, e2 : (P,) non-negative embeddings of one shape, neither all zero.

    >>> task2vec_distance(np.array([1.0, 2.0]), np.array([1.0, 2.0]))
    0.0
    >>> task2vec_distance(np.array([1.0, 0.0]), np.array([0.0, 1.0]))
    1.0
    >>> round(task2vec_distance(np.array([1.0, 1.0]), np.array([1.0, 3.0])), 6)
    0.131757
    """
    a, b = np.asarray(e1, dtype=np.float64), np.asarray(e2, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"e1 and e2 must be 1-D arrays of one shape; got {a.shape} and {b.shape}")
    for name, e in (("e1", a), ("e2", b)):
        if not np.all(np.isfinite(e)) or np.any(e < 0):
            raise ValueError(f"{name} is not valid; it must be finite and non-negative (a Fisher diagonal)")
        if not np.any(e > 0):
            raise ValueError(f"{name} is not valid; it is all zero, so its direction is undefined")
    s = a + b
    keep = s > 0
    a, b = a[keep] / s[keep], b[keep] / s[keep]
    if a.max() == 0 or b.max() == 0:
        raise ValueError("e1 and e2 are not valid; one is below 1e-308 of the other everywhere (underflow)")
    a, b = a / a.max(), b / b.max()  # cosine is scale-free; this keeps the squares from underflowing
    cos = float(a @ b) / math.sqrt(float(a @ a) * float(b @ b))
    return float(min(1.0, max(0.0, 1.0 - cos)))


def embed_tasks(probe: nn.Module, tasks: Mapping[str, Task] | Sequence[Task],
                config: Task2VecConfig | None = None) -> dict[str, np.ndarray]:
    """Task2Vec embeddings of several tasks with one probe and one config.

    Parameters
    ----------
    probe : the probe network (left untouched).
    tasks : a mapping from a label to a task, or a sequence of tasks labelled by
        ``task.name`` (names must then be distinct: pass a mapping for two draws of one task).
    config : :class:`Task2VecConfig`.

    Returns
    -------
    dict from label to the (P,) embedding of :func:`task2vec_embedding`.
    """
    if not isinstance(tasks, Mapping):
        tasks = list(tasks)
        names = [t.name for t in tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"tasks={names!r} is not valid; names repeat, pass a dict label -> Task instead")
        tasks = dict(zip(names, tasks))
    return {label: task2vec_embedding(probe, task, config) for label, task in tasks.items()}


def task2vec_matrix(embeddings: Mapping[str, np.ndarray], names: Sequence[str] | None = None) -> np.ndarray:
    r"""Matrix of :func:`task2vec_distance` between embeddings, :math:`D_{ij} = d(e_i, e_j)`.

    Parameters
    ----------
    embeddings : label -> (P,) embedding.
    names : order of rows and columns (default: the mapping's order).

    Returns
    -------
    (n, n) symmetric array with a zero diagonal.
    """
    names = list(embeddings) if names is None else list(names)
    missing = [k for k in names if k not in embeddings]
    if missing:
        raise ValueError(f"names={names!r} is not valid; no embedding for {missing}")
    n = len(names)
    d = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            d[i, j] = d[j, i] = task2vec_distance(embeddings[names[i]], embeddings[names[j]])
    return d
