import numpy as np
import pytest
import torch
from hypothesis import settings

# Hypothesis draws the same examples on every run, so a test run is reproducible (CI included).
settings.register_profile("deterministic", derandomize=True, deadline=None)
settings.load_profile("deterministic")


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same global RNG state."""
    torch.manual_seed(1234)
    np.random.seed(1234)
    yield
