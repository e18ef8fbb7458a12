"""Deprecated home of the branching combinators; they live in ``functional_cnn.layers`` now.

Kept so that ``from functional_cnn.branching import residual`` keeps working.
"""
from .layers.branch import fan_in_concat, fan_in_sum, fan_out, parallel
from .layers.residual import residual

__all__ = ["residual", "parallel", "fan_out", "fan_in_sum", "fan_in_concat"]
