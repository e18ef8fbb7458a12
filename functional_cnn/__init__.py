"""functional_cnn: convolutional networks in NumPy where nothing is hidden and nothing mutates."""
from .layer import Layer, param_field, readonly, state_field
from .tree import (
    assert_same_structure,
    tree_flatten,
    tree_leaves,
    tree_map,
    tree_map_with_path,
    tree_paths,
    tree_structure,
    tree_unflatten,
)

__version__ = "0.1.0"
