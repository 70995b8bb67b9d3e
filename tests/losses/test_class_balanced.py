import numpy as np
import pytest
import torch

import reference as ref
from focalkit import class_balanced_weights


@pytest.mark.parametrize("beta", [0.0, 0.9, 0.99, 0.999, 0.9999])
@pytest.mark.parametrize("counts", [[500, 50, 5], [1, 1, 1, 1], [10000, 3, 250, 17]])
def test_values_match_mpmath(beta, counts):
    got = class_balanced_weights(counts, beta, dtype=torch.float64)
    np.testing.assert_allclose(got.numpy(), ref.mp_class_balanced(counts, beta), rtol=1e-12)
    assert abs(got.sum().item() - len(counts)) < 1e-12


def test_limits():
    torch.testing.assert_close(class_balanced_weights([500, 50, 5], 0.0), torch.ones(3))
    inv = class_balanced_weights([500, 50, 5], 1 - 1e-12, dtype=torch.float64)
    np.testing.assert_allclose(inv.numpy(), [0.027027027, 0.27027027, 2.7027027], rtol=1e-6)


def test_zero_count_gets_zero_weight_and_sum_is_c():
    w = class_balanced_weights([100, 0, 10], 0.99, dtype=torch.float64)
    assert w[1].item() == 0.0
    assert abs(w.sum().item() - 3.0) < 1e-12
    np.testing.assert_allclose(w.numpy(), ref.mp_class_balanced([100, 0, 10], 0.99), rtol=1e-12)


def test_tensor_input_and_dtype():
    w = class_balanced_weights(torch.tensor([5, 50]), 0.9)
    assert w.dtype == torch.get_default_dtype() and w.shape == (2,)
    assert class_balanced_weights(np.array([3, 4]), 0.5, dtype=torch.float64).dtype == torch.float64
