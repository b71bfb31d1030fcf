"""The shared argument checks: each names its argument and rejects what the message says it rejects."""
import pytest

from ctd_lib._util.checks import check_count, check_device


@pytest.mark.parametrize("value", [0, 1, 12345])
def test_check_count_accepts_integers_from_zero(value):
    assert check_count("seed", value) == value


@pytest.mark.parametrize("value", [-1, 1.0, "3", True, False, None])
def test_check_count_rejects_the_rest_naming_the_argument(value):
    with pytest.raises(ValueError, match=r"^label_offset=.* it must be an integer >= 0$"):
        check_count("label_offset", value)


@pytest.mark.parametrize("bad", ["tpu", 0, None, "CPU"])
def test_check_device_names_the_argument(bad):
    with pytest.raises(ValueError, match=r"^dev="):
        check_device("dev", bad)


def test_check_device_refuses_cuda_without_a_gpu():
    import torch

    if torch.cuda.is_available():
        assert check_device("dev", "cuda") == "cuda"
    else:
        with pytest.raises(ValueError, match="no CUDA device"):
            check_device("dev", "cuda:0")
    assert check_device("dev", "cpu") == "cpu"
