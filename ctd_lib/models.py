r"""Network architectures used for the task-distance experiments.

Every model takes a float tensor of shape ``(N, C, H, W)`` and returns logits
of shape ``(N, num_classes)``.

* :class:`MLP` -- a fully connected ReLU network, with :func:`scale_hidden_`,
  an exact reparametrisation used to check that distances computed in
  function space (Fisher-Rao lengths, KL divergences) do not depend on how the
  weights are parametrised.
* :class:`PaperCNN` -- the six-layer convolutional network of the authors'
  task-distance code (conv 32-64, 128-128, 256-256 with batch norm, three
  max-pools, ``Dropout2d(0.05)``, one linear layer); :func:`small_cnn` is a
  narrower instance of the same architecture that trains quickly on a CPU.
* :class:`WideResNet` -- WRN-d-k of Zagoruyko & Komodakis (2016);
  :func:`wrn_16_4` is the WRN-16-4 (no dropout) of [Gao & Chaudhari 2021].
* :func:`make_model` -- build any of :data:`MODEL_NAMES` from a seed, leaving
  the global random state untouched.

References
----------
Y. Gao and P. Chaudhari, *An Information-Geometric Distance on the Space of
Tasks*, ICML 2021.
S. Zagoruyko and N. Komodakis, *Wide Residual Networks*, BMVC 2016.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ._util.checks import check_choice, check_in_range, check_positive

__all__ = [
    "MODEL_NAMES",
    "MLP",
    "PaperCNN",
    "WideResNet",
    "count_parameters",
    "make_model",
    "scale_hidden_",
    "small_cnn",
    "wrn_16_4",
]

#: Names accepted by :func:`make_model`.
MODEL_NAMES: tuple[str, ...] = ("mlp", "mlp-wide", "small-cnn", "paper-cnn", "wrn-16-4")

#: Activations accepted by :class:`MLP`; only ``"relu"`` is positively
#: homogeneous, which :func:`scale_hidden_` requires.
_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


# ----------------------------------------------------------------------------
# argument checks specific to this module
# ----------------------------------------------------------------------------
def _check_in_shape(in_shape: Any) -> tuple[int, int, int]:
    """Return ``in_shape`` as a tuple ``(C, H, W)`` of positive ints, else raise."""
    ok = (
        isinstance(in_shape, (tuple, list))
        and len(in_shape) == 3
        and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in in_shape)
    )
    if not ok:
        raise ValueError(
            f"in_shape={in_shape!r} is not valid; it must be a tuple (C, H, W) of 3 positive integers"
        )
    return tuple(in_shape)


def _check_num_classes(num_classes: Any) -> int:
    """Return ``num_classes`` if it is an int >= 2, else raise."""
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
        raise ValueError(f"num_classes={num_classes!r} is not valid; it must be an integer >= 2")
    return num_classes


def _check_int_tuple(name: str, value: Any, length: int | None = None) -> tuple[int, ...]:
    """Return ``value`` as a tuple of positive ints (of ``length`` if given), else raise."""
    ok = isinstance(value, (tuple, list)) and all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value
    )
    if ok and length is not None:
        ok = len(value) == length
    if not ok:
        what = f"{length} positive integers" if length is not None else "positive integers"
        raise ValueError(f"{name}={value!r} is not valid; it must be a tuple of {what}")
    return tuple(value)


# ----------------------------------------------------------------------------
# MLP and its ReLU rescaling symmetry
# ----------------------------------------------------------------------------
class MLP(nn.Module):
    r"""Fully connected network: flatten, ``Linear`` + activation per hidden size, ``Linear`` out.

    .. math::

        f(x) = W_{L} \, \sigma(W_{L-1} \cdots \sigma(W_1 \operatorname{vec}(x) + b_1) \cdots
               + b_{L-1}) + b_L

    Parameters
    ----------
    in_shape : tuple of int
        Shape ``(C, H, W)`` of one input; the first layer has ``C * H * W`` inputs.
    num_classes : int
        Number of logits, at least 2.
    hidden : tuple of int
        Width of each hidden layer; ``()`` gives multinomial logistic regression.
    activation : {"relu", "tanh", "gelu"}
        Nonlinearity :math:`\sigma` after each hidden layer.

    Attributes
    ----------
    layers : torch.nn.Sequential
        ``Linear, act, Linear, act, ..., Linear``; the ``Linear`` modules sit at
        even indices ``0, 2, 4, ...``.

    Examples
    --------
    >>> net = MLP((1, 28, 28), 10, hidden=(256,))
    >>> net(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    >>> count_parameters(net)  # 784*256 + 256 + 256*10 + 10
    203530
    """

    def __init__(
        self,
        in_shape: Sequence[int] = (1, 28, 28),
        num_classes: int = 10,
        hidden: Sequence[int] = (256,),
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.in_shape = _check_in_shape(in_shape)
        self.num_classes = _check_num_classes(num_classes)
        self.hidden = _check_int_tuple("hidden", hidden)
        self.activation = check_choice("activation", activation, _ACTIVATIONS)
        act = _ACTIVATIONS[activation]
        sizes = (math.prod(self.in_shape), *self.hidden)
        modules: list[nn.Module] = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            modules += [nn.Linear(n_in, n_out), act()]
        modules.append(nn.Linear(sizes[-1], self.num_classes))
        self.flatten = nn.Flatten()
        self.layers = nn.Sequential(*modules)

    def forward(self, x: Tensor) -> Tensor:
        """Logits of shape ``(N, num_classes)`` for ``x`` of shape ``(N, C, H, W)``."""
        return self.layers(self.flatten(x))


@torch.no_grad()
def scale_hidden_(model: nn.Module, layer_index: int, c: float) -> nn.Module:
    r"""Rescale one hidden layer of a ReLU network in place without changing its function.

    With :math:`A` the ``Linear`` at ``model.layers[layer_index]`` and
    :math:`B` the next ``Linear``, separated only by ReLUs,

    .. math::

        W_A \leftarrow c\, W_A, \qquad b_A \leftarrow c\, b_A, \qquad
        W_B \leftarrow W_B / c, \qquad b_B \leftarrow b_B,

    and since :math:`\operatorname{relu}(c z) = c \operatorname{relu}(z)` for
    :math:`c > 0`,

    .. math::

        W_B \operatorname{relu}(W_A h + b_A) + b_B
        = (W_B / c) \operatorname{relu}(c W_A h + c b_A) + b_B,

    so the network computes the same function (up to round-off) from a
    parameter vector whose Euclidean norm has changed. Quantities defined on
    the output distribution (the Fisher-Rao length and KL divergences of
    [Gao & Chaudhari 2021]) are invariant under this map; weight-space
    distances are not.

    Parameters
    ----------
    model : torch.nn.Module
        An :class:`MLP`, or any module whose ``layers`` attribute is an
        ``nn.Sequential`` (or an ``nn.Sequential`` itself).
    layer_index : int
        Index into ``model.layers`` of the ``Linear`` :math:`A`.
    c : float
        Scale factor, finite and > 0.

    Returns
    -------
    torch.nn.Module
        ``model`` itself, modified in place.

    Raises
    ------
    ValueError
        If ``c`` is not positive, or ``layer_index`` does not point at a
        ``Linear`` followed, through ReLUs only, by another ``Linear``.
    """
    check_positive("c", c)
    c = float(c)
    layers = getattr(model, "layers", model)
    if not isinstance(layers, nn.Sequential):
        raise ValueError(
            f"model={type(model).__name__} is not valid; it must be an nn.Sequential "
            "or have an nn.Sequential `layers` attribute"
        )
    n = len(layers)
    if (
        not isinstance(layer_index, int)
        or isinstance(layer_index, bool)
        or not 0 <= layer_index < n
        or not isinstance(layers[layer_index], nn.Linear)
    ):
        linear_ids = [i for i, m in enumerate(layers) if isinstance(m, nn.Linear)]
        raise ValueError(
            f"layer_index={layer_index!r} is not valid; it must index a Linear in model.layers "
            f"(Linear layers at {linear_ids})"
        )
    j = layer_index + 1
    while j < n and isinstance(layers[j], nn.ReLU):
        j += 1
    if j >= n or not isinstance(layers[j], nn.Linear):
        found = "nothing" if j >= n else type(layers[j]).__name__
        raise ValueError(
            f"layer_index={layer_index!r} is not valid; the Linear there must be followed, "
            f"through ReLU only, by another Linear (found {found})"
        )
    first, second = layers[layer_index], layers[j]
    assert isinstance(first, nn.Linear) and isinstance(second, nn.Linear)  # checked above
    first.weight.mul_(c)
    if first.bias is not None:
        first.bias.mul_(c)
    second.weight.div_(c)
    return model


# ----------------------------------------------------------------------------
# The authors' CNN
# ----------------------------------------------------------------------------
class PaperCNN(nn.Module):
    r"""The convolutional network of the authors' task-distance code.

    Three stages, each two 3x3 convolutions (padding 1) followed by a 2x2
    max-pool and ``Dropout2d``; every convolution is followed by
    ``BatchNorm2d`` (if ``batch_norm``) and ReLU. The output of the last stage
    is flattened and fed to a single ``Linear`` layer:

    .. code-block:: text

        [conv(w1) BN ReLU  conv(w2) BN ReLU  maxpool2  Dropout2d(p)]   H -> H//2
        [conv(w3) BN ReLU  conv(w4) BN ReLU  maxpool2  Dropout2d(p)]   -> H//4
        [conv(w5) BN ReLU  conv(w6) BN ReLU  maxpool2  Dropout2d(p)]   -> H//8
        flatten -> Linear(w6 * (H//8) * (W//8), num_classes)

    For 1x28x28 inputs the pools give 14, 7, 3; for 3x32x32 they give 16, 8, 4.
    The flattened size is found by a forward pass of zeros through the
    features in evaluation mode during ``__init__`` (so batch-norm statistics
    and the random state are not touched).

    Parameters
    ----------
    in_shape : tuple of int
        Shape ``(C, H, W)`` of one input; ``H`` and ``W`` must be at least 8.
    num_classes : int
        Number of logits, at least 2.
    widths : tuple of 6 int
        Output channels of the six convolutions (the authors use
        ``(32, 64, 128, 128, 256, 256)``).
    dropout : float
        Channel-dropout probability in ``[0, 1]`` after each pool (authors: 0.05).
    batch_norm : bool
        Insert ``BatchNorm2d`` after each convolution. When true the
        convolutions have no bias (it would be cancelled by the batch norm).
    """

    def __init__(
        self,
        in_shape: Sequence[int] = (3, 32, 32),
        num_classes: int = 10,
        widths: Sequence[int] = (32, 64, 128, 128, 256, 256),
        dropout: float = 0.05,
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        self.in_shape = _check_in_shape(in_shape)
        self.num_classes = _check_num_classes(num_classes)
        self.widths = _check_int_tuple("widths", widths, length=6)
        check_in_range("dropout", dropout, 0.0, 1.0)
        if min(self.in_shape[1:]) < 8:
            raise ValueError(
                f"in_shape={tuple(in_shape)!r} is not valid; PaperCNN needs H, W >= 8 "
                "(three 2x2 max-pools)"
            )
        layers: list[nn.Module] = []
        c_in = self.in_shape[0]
        for stage in range(3):
            for c_out in self.widths[2 * stage : 2 * stage + 2]:
                layers.append(nn.Conv2d(c_in, c_out, 3, padding=1, bias=not batch_norm))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(c_out))
                layers.append(nn.ReLU(inplace=True))
                c_in = c_out
            layers += [nn.MaxPool2d(2), nn.Dropout2d(float(dropout))]
        self.features = nn.Sequential(*layers)

        was_training = self.features.training
        self.features.eval()
        with torch.no_grad():
            n_flat = self.features(torch.zeros(1, *self.in_shape)).numel()
        self.features.train(was_training)
        self.classifier = nn.Linear(n_flat, self.num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Logits of shape ``(N, num_classes)`` for ``x`` of shape ``(N, C, H, W)``."""
        return self.classifier(torch.flatten(self.features(x), 1))


def small_cnn(in_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10) -> PaperCNN:
    """A CPU-sized :class:`PaperCNN`: the same architecture, narrower and without dropout.

    Widths ``(16, 16, 32, 32, 64, 64)`` instead of ``(32, 64, 128, 128, 256, 256)``
    and ``dropout=0``; batch norm, pooling and the single linear head are unchanged.

    Parameters
    ----------
    in_shape : tuple of int
        Shape ``(C, H, W)`` of one input (H, W >= 8).
    num_classes : int
        Number of logits, at least 2.
    """
    return PaperCNN(in_shape, num_classes, widths=(16, 16, 32, 32, 64, 64), dropout=0.0)


# ----------------------------------------------------------------------------
# Wide residual network
# ----------------------------------------------------------------------------
class _BasicBlock(nn.Module):
    """Pre-activation block BN-ReLU-conv3x3-BN-ReLU-(dropout)-conv3x3 plus shortcut.

    When the shape changes the shortcut is a 1x1 convolution (with the block's
    stride) of the *pre-activated* input, as in the original WRN code.
    """

    def __init__(self, c_in: int, c_out: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.dropout = dropout
        self.equal_in_out = c_in == c_out and stride == 1
        self.shortcut = (
            None if self.equal_in_out else nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)
        )

    def forward(self, x: Tensor) -> Tensor:
        o = F.relu(self.bn1(x))
        residual = x if self.shortcut is None else self.shortcut(o)
        o = F.relu(self.bn2(self.conv1(o)))
        if self.dropout > 0:
            o = F.dropout(o, p=self.dropout, training=self.training)
        return self.conv2(o) + residual


class WideResNet(nn.Module):
    r"""Wide residual network WRN-depth-k of Zagoruyko & Komodakis (2016).

    A 3x3 convolution to 16 channels, three groups of
    :math:`n = (\text{depth} - 4) / 6` pre-activation basic blocks with
    widths :math:`16k, 32k, 64k` and strides 1, 2, 2, then BN-ReLU, global
    average pooling and a ``Linear`` layer. Convolutions have no bias;
    convolution weights are Kaiming-normal (fan-out), batch-norm weights 1,
    all biases 0.

    Parameters
    ----------
    depth : int
        Total depth; ``(depth - 4) % 6 == 0`` and ``depth >= 10``.
    widen_factor : int
        Width multiplier :math:`k`.
    num_classes : int
        Number of logits, at least 2.
    in_channels : int
        Input channels ``C`` (3 for CIFAR, 1 for MNIST).
    dropout : float
        Dropout probability in ``[0, 1]`` between the two convolutions of each
        block (0 in [Gao & Chaudhari 2021]).
    """

    def __init__(
        self,
        depth: int = 16,
        widen_factor: int = 4,
        num_classes: int = 10,
        in_channels: int = 3,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if (
            not isinstance(depth, int)
            or isinstance(depth, bool)
            or depth < 10
            or (depth - 4) % 6 != 0
        ):
            raise ValueError(
                f"depth={depth!r} is not valid; it must be an integer >= 10 with (depth - 4) % 6 == 0 "
                "(e.g. 10, 16, 22, 28, 40)"
            )
        check_positive("widen_factor", widen_factor, integer=True)
        check_positive("in_channels", in_channels, integer=True)
        self.num_classes = _check_num_classes(num_classes)
        check_in_range("dropout", dropout, 0.0, 1.0)
        n = (depth - 4) // 6
        widths = (16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor)
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        groups: list[nn.Module] = []
        for g, stride in enumerate((1, 2, 2)):
            blocks = [
                _BasicBlock(
                    widths[g] if i == 0 else widths[g + 1],
                    widths[g + 1],
                    stride if i == 0 else 1,
                    float(dropout),
                )
                for i in range(n)
            ]
            groups.append(nn.Sequential(*blocks))
        self.block1, self.block2, self.block3 = groups
        self.bn = nn.BatchNorm2d(widths[3])
        self.fc = nn.Linear(widths[3], self.num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        """Logits of shape ``(N, num_classes)`` for ``x`` of shape ``(N, C, H, W)``."""
        o = self.block3(self.block2(self.block1(self.conv1(x))))
        o = F.relu(self.bn(o))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(o, 1), 1))


def wrn_16_4(num_classes: int = 10, in_channels: int = 3, dropout: float = 0.0) -> WideResNet:
    """WRN-16-4 (about 2.75 M parameters on CIFAR-10), as used by [Gao & Chaudhari 2021].

    Parameters
    ----------
    num_classes : int
        Number of logits, at least 2.
    in_channels : int
        Input channels.
    dropout : float
        Within-block dropout; the authors use none.
    """
    return WideResNet(16, 4, num_classes=num_classes, in_channels=in_channels, dropout=dropout)


# ----------------------------------------------------------------------------
# Factory
# ----------------------------------------------------------------------------
def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters of ``model`` (trainable or not; buffers excluded).

    >>> count_parameters(nn.Linear(3, 2))
    8
    """
    return sum(p.numel() for p in model.parameters())


def make_model(
    name: str,
    *,
    in_shape: Sequence[int],
    num_classes: int,
    seed: int,
    **kwargs: Any,
) -> nn.Module:
    """Build one of :data:`MODEL_NAMES` with parameters drawn from ``seed``.

    The model is initialised under ``torch.manual_seed(seed)`` inside
    ``torch.random.fork_rng``, so the same seed gives bitwise-identical
    parameters and the caller's global random state is left as it was.

    ============  ==========================================================
    name          model
    ============  ==========================================================
    ``mlp``       :class:`MLP` with ``hidden=(256,)``
    ``mlp-wide``  :class:`MLP` with ``hidden=(1024,)``
    ``small-cnn`` :func:`small_cnn` (narrow :class:`PaperCNN`, no dropout)
    ``paper-cnn`` :class:`PaperCNN` with the authors' widths and dropout 0.05
    ``wrn-16-4``  :func:`wrn_16_4` with ``in_channels = in_shape[0]``
    ============  ==========================================================

    Parameters
    ----------
    name : str
        One of :data:`MODEL_NAMES`.
    in_shape : tuple of int
        Shape ``(C, H, W)`` of one input.
    num_classes : int
        Number of logits, at least 2.
    seed : int
        Seed for the parameter initialisation.
    **kwargs
        Passed to the constructor, overriding the defaults above (e.g.
        ``dropout`` for ``paper-cnn`` or ``wrn-16-4``, ``hidden`` for ``mlp``).

    Returns
    -------
    torch.nn.Module
        The model, on the CPU, in training mode, float32.

    Examples
    --------
    >>> a = make_model("mlp", in_shape=(1, 28, 28), num_classes=10, seed=0)
    >>> b = make_model("mlp", in_shape=(1, 28, 28), num_classes=10, seed=0)
    >>> all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    True
    """
    check_choice("name", name, MODEL_NAMES)
    in_shape = _check_in_shape(in_shape)
    num_classes = _check_num_classes(num_classes)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed={seed!r} is not valid; it must be an integer")

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if name in ("mlp", "mlp-wide"):
            opts = {"hidden": (256,) if name == "mlp" else (1024,), **kwargs}
            return MLP(in_shape, num_classes, **opts)
        if name == "small-cnn":
            return small_cnn(in_shape, num_classes, **kwargs)
        if name == "paper-cnn":
            return PaperCNN(in_shape, num_classes, **kwargs)
        return wrn_16_4(num_classes=num_classes, in_channels=in_shape[0], **kwargs)
