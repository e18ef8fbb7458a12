"""Optimizers as values: gradient transformations, their algebra and schedules.

::

    opt = adamw(warmup_cosine_decay_schedule(0.0, 1e-3, 100, 5000), mask=exclude_paths("*.b"))
    state = opt.init(params)
    updates, state = opt.update(grads, state, params)
    params = apply_updates(params, updates)
    learning_rate(state)          # the rate the next update will apply

See ``docs/optim.md`` for the algebra, masks, state records and schedules.
"""
from .aliases import adagrad, adam, adamw, rmsprop, sgd
from .base import EmptyState, GradientTransformation, apply_updates, chain
from .constraints import (
    MaskedState,
    add_decayed_weights,
    clip_by_global_norm,
    clip_by_value,
    global_norm,
    masked,
)
from .masks import exclude_paths, path_mask
from .schedules import (
    Schedule,
    constant_schedule,
    cosine_decay_schedule,
    exponential_decay,
    join_schedules,
    linear_schedule,
    piecewise_constant_schedule,
    warmup_cosine_decay_schedule,
)
from .transforms import (
    ScaleByAdagradState,
    ScaleByAdamState,
    ScaleByLearningRateState,
    ScaleByRmsState,
    TraceState,
    learning_rate,
    scale,
    scale_by_adagrad,
    scale_by_adam,
    scale_by_learning_rate,
    scale_by_rms,
    trace,
)

__all__ = [
    # algebra
    "GradientTransformation",
    "chain",
    "apply_updates",
    "learning_rate",
    "global_norm",
    # transforms
    "scale",
    "scale_by_learning_rate",
    "trace",
    "scale_by_adam",
    "scale_by_rms",
    "scale_by_adagrad",
    "add_decayed_weights",
    "clip_by_global_norm",
    "clip_by_value",
    "masked",
    # masks
    "path_mask",
    "exclude_paths",
    # aliases
    "sgd",
    "adam",
    "adamw",
    "rmsprop",
    "adagrad",
    # states
    "EmptyState",
    "ScaleByLearningRateState",
    "TraceState",
    "ScaleByAdamState",
    "ScaleByRmsState",
    "ScaleByAdagradState",
    "MaskedState",
    # schedules
    "Schedule",
    "constant_schedule",
    "piecewise_constant_schedule",
    "exponential_decay",
    "cosine_decay_schedule",
    "linear_schedule",
    "join_schedules",
    "warmup_cosine_decay_schedule",
]
