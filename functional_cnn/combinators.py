"""Deprecated home of ``serial`` and the combinator helpers; they live in ``functional_cnn.layers`` now.

Kept so that ``from functional_cnn.combinators import serial`` keeps working.
"""
from .layers._combinator import (
                                 call_child,
                                 check_child_caches,
                                 check_child_params,
                                 check_children,
                                 child_error,
                                 spawn_rngs,
)
from .layers.serial import serial

__all__ = ["serial", "call_child", "child_error", "check_children", "check_child_params", "check_child_caches",
           "spawn_rngs"]
