import numpy as np
import pytest

import functional_cnn as fc

LENET = fc.serial(
    fc.conv2d(6, 5, padding=2), fc.relu(), fc.max_pool2d(2),
    fc.conv2d(16, 5), fc.relu(), fc.max_pool2d(2),
    fc.flatten(), fc.dense(120), fc.relu(), fc.dense(84), fc.relu(), fc.dense(10),
)


def test_lenet_summary_counts_and_prints():
    s = fc.summary(LENET, (1, 28, 28), batch_size=64)
    assert s.total_params == 61706  # 156 + 2416 + 48120 + 10164 + 850
    assert [r.out_shape for r in s.rows[1:4]] == [(6, 28, 28), (6, 28, 28), (6, 14, 14)]
    text = str(s)
    assert "conv2d(out_channels=6, kernel_size=5x5, padding=2x2)" in text and "61,706" in text


def test_summary_cache_bytes_match_a_real_forward_and_scale_with_batch():
    rng = np.random.default_rng(0)
    _, params = LENET.init(rng, (1, 28, 28))
    # Summary sizes the training cache; an inference forward (train=False) may keep less (conv2d chunks it).
    _, cache = LENET.forward(params, rng.random((8, 1, 28, 28), dtype=np.float32), train=True)
    s = fc.summary(LENET, (1, 28, 28), batch_size=8)
    assert s.total_cache_bytes == fc.tree.tree_nbytes(cache)
    assert fc.summary(LENET, (1, 28, 28), batch_size=16).total_cache_bytes == 2 * s.total_cache_bytes


def test_summary_rejects_bad_arguments():
    with pytest.raises(TypeError, match="summary: net must be a Layer"):
        fc.summary("lenet", (1, 28, 28))
    with pytest.raises(ValueError, match="summary: batch_size must be an integer >= 1, got 0"):
        fc.summary(LENET, (1, 28, 28), batch_size=0)
    with pytest.raises(ValueError, match=r"serial\[0\] \(conv2d\) -> conv2d: in_shape must be \(C, H, W\)"):
        fc.summary(LENET, (28, 28))


def test_summary_descends_into_every_combinator():
    block = fc.residual(fc.serial(fc.conv2d(2, 3, padding=1), fc.relu()), projection=fc.conv2d(2, 1))
    net = fc.serial(block, fc.fan_out(2), fc.parallel(fc.conv2d(3, 1), fc.max_pool2d(2)),
                    fc.parallel(fc.flatten(), fc.flatten()))
    s = fc.summary(net, (1, 4, 4), batch_size=2)
    rows = [(r.depth, r.name, r.out_shape) for r in s.rows]
    assert rows == [
        (0, "serial", ((48,), (8,))),
        (1, "residual", (2, 4, 4)),
        (2, "serial", (2, 4, 4)),  # the block, on the residual's input
        (3, "conv2d(out_channels=2, kernel_size=3x3, padding=1x1)", (2, 4, 4)),
        (3, "relu()", (2, 4, 4)),
        (2, "conv2d(out_channels=2, kernel_size=1x1)", (2, 4, 4)),  # the projection, on the same input
        (1, "fan_out(n=2)", ((2, 4, 4), (2, 4, 4))),
        (1, "parallel", ((3, 4, 4), (2, 2, 2))),
        (2, "conv2d(out_channels=3, kernel_size=1x1)", (3, 4, 4)),  # each branch on its own input
        (2, "max_pool2d(size=2x2)", (2, 2, 2)),
        (1, "parallel", ((48,), (8,))),
        (2, "flatten()", (48,)),
        (2, "flatten()", (8,)),
    ]
    assert s.total_params == (18 + 2) + (2 + 2) + (6 + 3)
    assert "(2, 3, 4, 4), (2, 2, 2, 2)" in str(s)
