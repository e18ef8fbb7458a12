"""Built-in layers and combinators. Each factory returns a :class:`functional_cnn.Layer`."""
from .activations import gelu, identity, leaky_relu, log_softmax, relu, sigmoid, softmax, tanh
from .bias import BiasParams, bias
from .branch import fan_in_concat, fan_in_sum, fan_out, parallel
from .conv import Conv2DCache, Conv2DParams, conv2d
from .conv1d import Conv1DParams, conv1d
from .dense import DenseCache, DenseParams, dense
from .dropout import DropoutCache, dropout
from .norm import BatchNormCache, BatchNormParams, LayerNormCache, LayerNormParams, batch_norm, layer_norm
from .pool import avg_pool2d, global_avg_pool2d, max_pool2d
from .pool1d import avg_pool1d, max_pool1d
from .residual import residual
from .serial import serial
from .shape import flatten, reshape

__all__ = [
    "conv2d", "Conv2DParams", "Conv2DCache", "conv1d", "Conv1DParams",
    "dense", "DenseParams", "DenseCache", "bias", "BiasParams",
    "max_pool2d", "avg_pool2d", "global_avg_pool2d", "max_pool1d", "avg_pool1d",
    "flatten", "reshape",
    "relu", "leaky_relu", "sigmoid", "tanh", "gelu", "softmax", "log_softmax", "identity",
    "dropout", "DropoutCache", "batch_norm", "BatchNormParams", "BatchNormCache",
    "layer_norm", "LayerNormParams", "LayerNormCache",
    "serial", "residual", "parallel", "fan_out", "fan_in_sum", "fan_in_concat",
]
