import numpy as np
import pytest

import functional_cnn as fc
from functional_cnn.models import MODELS, build_model


@pytest.mark.parametrize("name", sorted(MODELS))
def test_models_build_run_and_pass_the_gradient_check_on_small_batches(name):
    net = build_model(name, 10)
    out_shape, params = net.init(np.random.default_rng(0), (1, 28, 28))
    assert out_shape == (10,)
    y, _ = net.forward(params, np.zeros((2, 1, 28, 28), np.float32))
    assert y.shape == (2, 10) and y.dtype == np.float32
    # Batch norm needs two examples per channel in training mode; dropout is fixed by the checker's rng.
    report = fc.check_layer(net, np.random.default_rng(1), (1, 28, 28), batch_size=2, max_checks=20,
                            x=np.random.default_rng(2).random((2, 1, 28, 28)))
    assert report.ok, report.table()


def test_seed_nets_match_the_notebooks_shapes_and_counts():
    assert fc.summary(build_model("seed1"), (1, 28, 28)).total_params == 4 * 9 + 4 + 676 * 10 + 10
    # conv 5x3x3 (no per-channel bias) + 5x26x26 position biases + 3380x100 + 100 + 100x2 + 2
    assert fc.summary(build_model("seed2", 2), (1, 28, 28)).total_params == 45 + 3380 + 338000 + 100 + 200 + 2


def test_unknown_model_lists_choices():
    with pytest.raises(ValueError, match="unknown model 'vgg'; choose one of lenet, resnet-small, seed1, seed2"):
        build_model("vgg")
