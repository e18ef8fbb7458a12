import numpy as np
import pytest

from functional_cnn import initializers as init

CASES = [
    (init.he_normal, lambda fi, fo: np.sqrt(2 / fi)),
    (init.he_uniform, lambda fi, fo: np.sqrt(6 / fi) / np.sqrt(3)),
    (init.glorot_normal, lambda fi, fo: np.sqrt(2 / (fi + fo))),
    (init.glorot_uniform, lambda fi, fo: np.sqrt(6 / (fi + fo)) / np.sqrt(3)),
    (init.lecun_normal, lambda fi, fo: np.sqrt(1 / fi)),
    (init.scaled_normal(0.1), lambda fi, fo: 0.1),
]


@pytest.mark.parametrize("fn, std", CASES, ids=lambda c: getattr(c, "__name__", ""))
def test_std_dtype_and_determinism(fn, std):
    shape, fan_in, fan_out = (200, 300), 300, 200
    w = fn(np.random.default_rng(0), shape, fan_in, fan_out)
    assert w.shape == shape and w.dtype == np.float32
    # 60,000 draws: the sample std is within a few percent of the target.
    assert w.std() == pytest.approx(std(fan_in, fan_out), rel=0.03)
    assert abs(w.mean()) < 0.05 * std(fan_in, fan_out)
    np.testing.assert_array_equal(w, fn(np.random.default_rng(0), shape, fan_in, fan_out))
    w64 = fn(np.random.default_rng(0), shape, fan_in, fan_out, np.float64)
    assert w64.dtype == np.float64
    np.testing.assert_array_equal(w64.astype(np.float32), w)  # same stream whatever the dtype


def test_uniform_bounds():
    w = init.he_uniform(np.random.default_rng(1), (1000,), 6, 6)
    assert np.abs(w).max() <= 1.0  # sqrt(6 / 6)


def test_zeros_draws_nothing():
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    assert not init.zeros(rng, (3, 2), 2, 3).any()
    assert rng.bit_generator.state == state


def test_bad_arguments():
    with pytest.raises(ValueError, match="he_normal: rng must be a numpy.random.Generator, got None"):
        init.he_normal(None, (2,), 1, 1)
    with pytest.raises(TypeError, match="he_normal: rng must be a numpy.random.Generator, got RandomState"):
        init.he_normal(np.random.RandomState(0), (2,), 1, 1)
    with pytest.raises(ValueError, match="glorot_normal: fan_in and fan_out must be >= 1, got 0 and 3"):
        init.glorot_normal(np.random.default_rng(0), (2,), 0, 3)
    with pytest.raises(TypeError, match="lecun_normal: dtype must be float16, float32 or float64, got int64"):
        init.lecun_normal(np.random.default_rng(0), (2,), 1, 1, np.int64)
    with pytest.raises(ValueError, match="conv2d: w_init must be a callable or one of"):
        init.get_initializer("orthogonal", "conv2d", "w_init")
