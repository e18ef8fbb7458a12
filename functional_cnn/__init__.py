"""functional_cnn: convolutional networks in NumPy where nothing is hidden and nothing mutates.

Params are immutable attrs records with read-only arrays; a layer is a bundle of pure
functions (see :class:`Layer`); networks are composed with :func:`serial`.
"""
from . import initializers, layers, losses, models, optim, reporting, tree
from ._parallel import get_num_threads, set_num_threads
from .boundary import validation, validation_enabled
from .checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from .datasets import DATASETS, Dataset, DatasetError, DatasetNotFoundError, load_dataset
from .debug import NonFiniteError, debug
from .gradcheck import GradCheckError, GradCheckReport, check_layer, check_loss
from .layer import Layer
from .layers import (
    avg_pool1d,
    avg_pool2d,
    batch_norm,
    bias,
    conv1d,
    conv2d,
    dense,
    dropout,
    fan_in_concat,
    fan_in_sum,
    fan_out,
    flatten,
    gelu,
    global_avg_pool2d,
    identity,
    layer_norm,
    leaky_relu,
    log_softmax,
    max_pool1d,
    max_pool2d,
    parallel,
    relu,
    reshape,
    residual,
    serial,
    sigmoid,
    softmax,
    tanh,
)
from .losses import (
    accuracy,
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    mean_squared_error,
    one_hot_binary_cross_entropy,
    softmax_cross_entropy,
)
from .optim import adagrad, adam, adamw, apply_updates, chain, learning_rate, rmsprop, sgd
from .params import is_state_field, param_field, params_record, readonly, state_field, trainable
from .summary import summary
from .train import EpochRecord, EvalResult, StepRecord, evaluate, fingerprint, fit, make_step, predict
from .tree import (
    assert_same_structure,
    tree_cast,
    tree_flatten,
    tree_leaves,
    tree_map,
    tree_map_with_path,
    tree_paths,
    tree_structure,
    tree_unflatten,
)

__version__ = "0.1.0"

__all__ = [
    "Layer", "params_record", "param_field", "state_field", "is_state_field", "readonly",
    "serial", "residual", "parallel", "fan_out", "fan_in_sum", "fan_in_concat",
    "conv2d", "conv1d", "dense", "bias", "flatten", "reshape", "max_pool2d", "avg_pool2d", "global_avg_pool2d",
    "max_pool1d", "avg_pool1d", "dropout", "batch_norm", "layer_norm",
    "relu", "leaky_relu", "sigmoid", "tanh", "gelu", "softmax", "log_softmax", "identity",
    "softmax_cross_entropy", "binary_cross_entropy", "binary_cross_entropy_with_logits", "mean_squared_error",
    "one_hot_binary_cross_entropy", "accuracy",
    "sgd", "adam", "adamw", "rmsprop", "adagrad", "chain", "apply_updates", "learning_rate",
    "make_step", "fit", "evaluate", "predict", "fingerprint", "EpochRecord", "StepRecord", "EvalResult",
    "debug", "NonFiniteError",
    "load_dataset", "Dataset", "DATASETS", "DatasetError", "DatasetNotFoundError",
    "save_checkpoint", "load_checkpoint", "Checkpoint", "CheckpointError",
    "check_layer", "check_loss", "GradCheckError", "GradCheckReport",
    "summary", "validation", "validation_enabled", "set_num_threads", "get_num_threads",
    "tree_map", "tree_map_with_path", "tree_leaves", "tree_paths", "tree_flatten", "tree_unflatten",
    "tree_structure", "assert_same_structure", "trainable", "tree_cast",
    "initializers", "layers", "losses", "models", "optim", "reporting", "tree",
]
