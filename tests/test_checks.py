"""The shared argument checks: each names its argument and rejects what the message says it rejects."""
import pytest

from ctd_lib._util.checks import check_count


@pytest.mark.parametrize("value", [0, 1, 12345])
def test_check_count_accepts_integers_from_zero(value):
    assert check_count("seed", value) == value


@pytest.mark.parametrize("value", [-1, 1.0, "3", True, False, None])
def test_check_count_rejects_the_rest_naming_the_argument(value):
    with pytest.raises(ValueError, match=r"^label_offset=.* it must be an integer >= 0$"):
        check_count("label_offset", value)
