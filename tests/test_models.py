"""Tests for :mod:`ctd_lib.models`: shapes, seeding, the ReLU rescaling symmetry,
parameter counts derived by hand, and argument errors."""
from __future__ import annotations

import copy
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils import parameters_to_vector

from ctd_lib.models import (
    MLP,
    MODEL_NAMES,
    PaperCNN,
    WideResNet,
    count_parameters,
    make_model,
    scale_hidden_,
    small_cnn,
    wrn_16_4,
)

MNIST = (1, 28, 28)
CIFAR = (3, 32, 32)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _state(model: nn.Module) -> list[torch.Tensor]:
    return [t.detach().clone() for t in model.state_dict().values()]


# ----------------------------------------------------------------------------
# shapes
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("in_shape", [MNIST, CIFAR], ids=["mnist", "cifar"])
@pytest.mark.parametrize("num_classes", [10, 5])
def test_output_shape(name: str, in_shape: tuple[int, int, int], num_classes: int) -> None:
    model = make_model(name, in_shape=in_shape, num_classes=num_classes, seed=0)
    x = torch.randn(2, *in_shape)
    for train in (True, False):
        model.train(train)
        out = model(x)
        assert out.shape == (2, num_classes)
        assert out.dtype == torch.float32
        assert torch.isfinite(out).all()


def test_paper_cnn_structure() -> None:
    """Six conv/BN/ReLU, three pools and Dropout2d(0.05), one Linear of the right width."""
    for in_shape, side in [(MNIST, 3), (CIFAR, 4)]:  # 28 -> 14 -> 7 -> 3; 32 -> 16 -> 8 -> 4
        net = PaperCNN(in_shape)
        kinds = [type(m) for m in net.modules()]
        assert kinds.count(nn.Conv2d) == 6
        assert kinds.count(nn.BatchNorm2d) == 6
        assert kinds.count(nn.MaxPool2d) == 3
        assert kinds.count(nn.Dropout2d) == 3
        assert kinds.count(nn.Linear) == 1
        assert all(m.p == 0.05 for m in net.modules() if isinstance(m, nn.Dropout2d))
        assert [m.out_channels for m in net.modules() if isinstance(m, nn.Conv2d)] == [
            32, 64, 128, 128, 256, 256,
        ]
        assert net.classifier.in_features == 256 * side * side
    without_bn = PaperCNN(CIFAR, batch_norm=False)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in without_bn.modules())
    assert without_bn(torch.randn(1, *CIFAR)).shape == (1, 10)


def test_paper_cnn_init_leaves_batchnorm_and_rng_alone() -> None:
    """The dummy forward that sizes the head must not update running statistics."""
    before = torch.get_rng_state()
    net = PaperCNN(CIFAR)
    assert net.training
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert int(m.num_batches_tracked) == 0
            assert torch.equal(m.running_mean, torch.zeros_like(m.running_mean))
    # Construction draws initial weights, but the dummy forward adds no draws:
    # building again from the same state consumes exactly as much randomness.
    torch.set_rng_state(before)
    PaperCNN(CIFAR)
    after_second = torch.get_rng_state()
    torch.set_rng_state(before)
    PaperCNN(CIFAR)
    assert torch.equal(torch.get_rng_state(), after_second)


def test_small_cnn_is_a_narrow_paper_cnn() -> None:
    net = small_cnn()
    assert isinstance(net, PaperCNN)
    assert net.widths == (16, 16, 32, 32, 64, 64)
    assert all(m.p == 0.0 for m in net.modules() if isinstance(m, nn.Dropout2d))


def test_wrn_block_layout() -> None:
    """WRN-16-4: n = (16 - 4) / 6 = 2 blocks per group, widths 64, 128, 256, final 8x8 map."""
    net = wrn_16_4()
    assert [len(g) for g in (net.block1, net.block2, net.block3)] == [2, 2, 2]
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1 + 3 * 2 * 2 + 3  # stem, two per block, three 1x1 shortcuts
    assert all(c.bias is None for c in convs)
    assert net.fc.in_features == 256
    feats = net.block3(net.block2(net.block1(net.conv1(torch.zeros(1, *CIFAR)))))
    assert feats.shape == (1, 256, 8, 8)  # strides 1, 2, 2


# ----------------------------------------------------------------------------
# parameter counts, derived by hand
# ----------------------------------------------------------------------------
def test_wrn_16_4_parameter_count() -> None:
    """Exact count for CIFAR-10 (3 input channels, 10 classes, bias-free convs).

    Notation: conv(i, o, k) = i * o * k * k, bn(c) = 2c (weight and bias).
    """
    def conv(i: int, o: int, k: int = 3) -> int:
        return i * o * k * k

    def bn(c: int) -> int:
        return 2 * c

    stem = conv(3, 16)                                                       # 432
    # group 1, 16 -> 64, stride 1
    g1 = (bn(16) + conv(16, 64) + bn(64) + conv(64, 64) + conv(16, 64, 1)    # 47,264
          + bn(64) + conv(64, 64) + bn(64) + conv(64, 64))                   # 73,984
    # group 2, 64 -> 128, stride 2
    g2 = (bn(64) + conv(64, 128) + bn(128) + conv(128, 128) + conv(64, 128, 1)   # 229,760
          + bn(128) + conv(128, 128) + bn(128) + conv(128, 128))                 # 295,424
    # group 3, 128 -> 256, stride 2
    g3 = (bn(128) + conv(128, 256) + bn(256) + conv(256, 256) + conv(128, 256, 1)  # 918,272
          + bn(256) + conv(256, 256) + bn(256) + conv(256, 256))                   # 1,180,672
    head = bn(256) + 256 * 10 + 10                                                  # 3,082
    expected = stem + g1 + g2 + g3 + head
    assert (g1, g2, g3) == (121_248, 525_184, 2_098_944)
    assert expected == 2_748_890
    net = make_model("wrn-16-4", in_shape=CIFAR, num_classes=10, seed=0)
    assert count_parameters(net) == expected
    assert abs(count_parameters(net) - 2.75e6) / 2.75e6 < 0.01
    # one input channel removes 2 * 16 * 9 weights from the stem
    assert count_parameters(WideResNet(in_channels=1)) == expected - 288


def test_cnn_and_mlp_parameter_counts() -> None:
    # MLP on MNIST: 784*256 + 256 + 256*10 + 10
    assert count_parameters(make_model("mlp", in_shape=MNIST, num_classes=10, seed=0)) == 203_530
    # mlp-wide: 784*1024 + 1024 + 1024*10 + 10
    assert count_parameters(make_model("mlp-wide", in_shape=MNIST, num_classes=10, seed=0)) == 814_090
    # small CNN on MNIST: bias-free convs + BN, then Linear(64*3*3, 10)
    convs = 1 * 16 * 9 + 16 * 16 * 9 + 16 * 32 * 9 + 32 * 32 * 9 + 32 * 64 * 9 + 64 * 64 * 9
    bns = 2 * (16 + 16 + 32 + 32 + 64 + 64)
    assert count_parameters(small_cnn(MNIST)) == convs + bns + 64 * 9 * 10 + 10 == 77_786
    # paper CNN on CIFAR: Linear(256*4*4, 10)
    convs = 3 * 32 * 9 + 32 * 64 * 9 + 64 * 128 * 9 + 128 * 128 * 9 + 128 * 256 * 9 + 256 * 256 * 9
    bns = 2 * (32 + 64 + 128 + 128 + 256 + 256)
    assert count_parameters(PaperCNN(CIFAR)) == convs + bns + 256 * 16 * 10 + 10 == 1_167_914


# ----------------------------------------------------------------------------
# seeding
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_same_seed_same_parameters(name: str) -> None:
    a = make_model(name, in_shape=CIFAR, num_classes=10, seed=123)
    b = make_model(name, in_shape=CIFAR, num_classes=10, seed=123)
    c = make_model(name, in_shape=CIFAR, num_classes=10, seed=124)
    sa, sb, sc = _state(a), _state(b), _state(c)
    assert all(torch.equal(x, y) for x, y in zip(sa, sb, strict=True))
    assert not torch.equal(parameters_to_vector(a.parameters()), parameters_to_vector(c.parameters()))
    # buffers (BN statistics) are deterministic anyway; parameters must differ somewhere
    assert any(not torch.equal(x, z) for x, z in zip(sa, sc, strict=True))


def test_make_model_leaves_global_rng_untouched() -> None:
    torch.manual_seed(7)
    expected = torch.rand(5)
    torch.manual_seed(7)
    state = torch.get_rng_state()
    for name in ("mlp", "small-cnn"):
        make_model(name, in_shape=MNIST, num_classes=10, seed=99)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(torch.rand(5), expected)


def test_make_model_kwargs_override_defaults() -> None:
    net = make_model("mlp", in_shape=MNIST, num_classes=3, seed=0, hidden=(8, 4))
    assert [m.out_features for m in net.layers if isinstance(m, nn.Linear)] == [8, 4, 3]
    cnn = make_model("paper-cnn", in_shape=MNIST, num_classes=10, seed=0, dropout=0.0)
    assert all(m.p == 0.0 for m in cnn.modules() if isinstance(m, nn.Dropout2d))


# ----------------------------------------------------------------------------
# ReLU rescaling symmetry
# ----------------------------------------------------------------------------
def _mlp64() -> MLP:
    gen_state = torch.get_rng_state()
    torch.manual_seed(3)
    net = MLP((1, 4, 4), 5, hidden=(12, 8)).double()
    torch.set_rng_state(gen_state)
    return net


def _check_rescaling(c: float, layer_index: int) -> None:
    """Logits unchanged (float64, rtol 1e-10); parameter norm changes as predicted."""
    net = _mlp64()
    x = torch.randn(6, 1, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    a, b = net.layers[layer_index], net.layers[layer_index + 2]
    theta = parameters_to_vector(net.parameters()).detach().clone()
    # closed form: ||theta'||^2 = ||theta||^2 + (c^2 - 1)(|W_a|^2 + |b_a|^2) + (c^-2 - 1)|W_b|^2
    sq_a = (a.weight.pow(2).sum() + a.bias.pow(2).sum()).detach()
    sq_b = b.weight.pow(2).sum().detach()
    expected_sq = theta.pow(2).sum() + (c**2 - 1) * sq_a + (c**-2 - 1) * sq_b
    with torch.no_grad():
        before = net(x)
    scaled = scale_hidden_(copy.deepcopy(net), layer_index, c)
    with torch.no_grad():
        after = scaled(x)
    torch.testing.assert_close(after, before, rtol=1e-10, atol=1e-12)
    theta_new = parameters_to_vector(scaled.parameters()).detach()
    torch.testing.assert_close(theta_new.pow(2).sum(), expected_sq, rtol=1e-12, atol=0)
    if abs(c - 1) > 1e-6:
        assert torch.linalg.vector_norm(theta_new - theta) > 0
    # the norm is unchanged only at c = 1 and at c^4 = |W_b|^2 / (|W_a|^2 + |b_a|^2)
    c_fixed = float((sq_b / sq_a) ** 0.25)
    if abs(c - 1) > 1e-3 and abs(c - c_fixed) > 1e-3:
        assert not math.isclose(
            float(theta_new.norm()), float(theta.norm()), rel_tol=1e-9
        )


@pytest.mark.parametrize("c", [0.1, 0.5, 2.0, 3.7, 10.0])
@pytest.mark.parametrize("layer_index", [0, 2])
def test_scale_hidden_preserves_function(c: float, layer_index: int) -> None:
    _check_rescaling(c, layer_index)


@settings(max_examples=30, deadline=None)
@given(c=st.floats(min_value=0.1, max_value=10.0), layer_index=st.sampled_from([0, 2]))
def test_scale_hidden_preserves_function_hypothesis(c: float, layer_index: int) -> None:
    _check_rescaling(c, layer_index)


def test_scale_hidden_is_in_place_and_returns_model() -> None:
    net = _mlp64()
    w0, b0, w1, b1 = (t.clone() for t in (net.layers[0].weight, net.layers[0].bias,
                                          net.layers[2].weight, net.layers[2].bias))
    assert scale_hidden_(net, 0, 4.0) is net
    torch.testing.assert_close(net.layers[0].weight, 4.0 * w0, rtol=0, atol=0)
    torch.testing.assert_close(net.layers[0].bias, 4.0 * b0, rtol=0, atol=0)
    torch.testing.assert_close(net.layers[2].weight, w1 / 4.0, rtol=0, atol=0)
    torch.testing.assert_close(net.layers[2].bias, b1, rtol=0, atol=0)  # next bias untouched


# ----------------------------------------------------------------------------
# argument errors
# ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"name": "resnet50"}, "name"),
        ({"name": "MLP"}, "name"),
        ({"num_classes": 1}, "num_classes"),
        ({"num_classes": 0}, "num_classes"),
        ({"num_classes": 2.0}, "num_classes"),
        ({"in_shape": (28, 28)}, "in_shape"),
        ({"in_shape": (1, 0, 28)}, "in_shape"),
        ({"in_shape": (1, 28, 28.0)}, "in_shape"),
        ({"in_shape": (1, 28, 28, 1)}, "in_shape"),
        ({"in_shape": "1x28x28"}, "in_shape"),
        ({"seed": 1.5}, "seed"),
        ({"name": "small-cnn", "in_shape": (1, 4, 4)}, "in_shape"),
        ({"name": "paper-cnn", "dropout": 1.5}, "dropout"),
    ],
)
def test_make_model_bad_arguments(kwargs: dict, argument: str) -> None:
    args = {"name": "mlp", "in_shape": MNIST, "num_classes": 10, "seed": 0, **kwargs}
    name = args.pop("name")
    with pytest.raises(ValueError, match=argument):
        make_model(name, **args)


def test_unknown_name_lists_choices() -> None:
    with pytest.raises(ValueError, match="name") as info:
        make_model("vgg", in_shape=MNIST, num_classes=10, seed=0)
    assert all(n in str(info.value) for n in MODEL_NAMES)


@pytest.mark.parametrize(
    "build, argument",
    [
        (lambda: MLP(hidden=(0,)), "hidden"),
        (lambda: MLP(activation="sigmoid"), "activation"),
        (lambda: MLP(num_classes=1), "num_classes"),
        (lambda: PaperCNN(widths=(32, 64, 128)), "widths"),
        (lambda: PaperCNN(dropout=-0.1), "dropout"),
        (lambda: WideResNet(depth=15), "depth"),
        (lambda: WideResNet(depth=4), "depth"),
        (lambda: WideResNet(widen_factor=0), "widen_factor"),
        (lambda: WideResNet(in_channels=0), "in_channels"),
        (lambda: wrn_16_4(num_classes=1), "num_classes"),
    ],
)
def test_constructor_bad_arguments(build, argument: str) -> None:
    with pytest.raises(ValueError, match=argument):
        build()


@pytest.mark.parametrize("c", [0.0, -1.0, float("nan"), float("inf"), True])
def test_scale_hidden_bad_c(c: float) -> None:
    with pytest.raises(ValueError, match="c="):
        scale_hidden_(_mlp64(), 0, c)


@pytest.mark.parametrize("layer_index", [1, 4, 5, -1, 1.0])
def test_scale_hidden_bad_layer_index(layer_index) -> None:
    """1: a ReLU; 4: the output Linear (nothing follows); 5, -1: out of range."""
    net = _mlp64()
    before = _state(net)
    with pytest.raises(ValueError, match="layer_index"):
        scale_hidden_(net, layer_index, 2.0)
    assert all(torch.equal(x, y) for x, y in zip(before, _state(net)))  # untouched on error


def test_scale_hidden_rejects_non_relu_between() -> None:
    net = MLP((1, 4, 4), 5, hidden=(6,), activation="tanh")
    with pytest.raises(ValueError, match="layer_index"):
        scale_hidden_(net, 0, 2.0)


def test_scale_hidden_rejects_model_without_layers() -> None:
    with pytest.raises(ValueError, match="model"):
        scale_hidden_(small_cnn(), 0, 2.0)
