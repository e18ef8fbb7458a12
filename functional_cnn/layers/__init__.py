"""Built-in layers. Each factory returns a :class:`functional_cnn.Layer`."""
from .bias import BiasParams, bias
from .activations import gelu, identity, leaky_relu, log_softmax, relu, sigmoid, softmax, tanh
from .conv import Conv2DCache, Conv2DParams, conv2d
from .dense import DenseCache, DenseParams, dense
from .pool import avg_pool2d, global_avg_pool2d, max_pool2d
from .shape import flatten, reshape

__all__ = [
    "conv2d", "Conv2DParams", "Conv2DCache",
    "dense", "DenseParams", "DenseCache",
    "max_pool2d", "avg_pool2d", "global_avg_pool2d",
    "flatten", "reshape", "bias", "BiasParams",
    "relu", "leaky_relu", "sigmoid", "tanh", "gelu", "softmax", "log_softmax", "identity",
]
