"""The params concept: read-only fields, trainable vs state, and the trainable structure."""
import attrs
import numpy as np
import pytest

from functional_cnn.params import (
    is_state_field,
    param_field,
    readonly,
    state_field,
    state_paths,
    trainable,
    trainable_structure,
)
from functional_cnn.tree import tree_flatten, tree_leaves, tree_structure


@attrs.frozen(eq=False)
class Norm:
    gamma: np.ndarray = param_field()
    mean: np.ndarray = state_field(metadata={"note": "kept"})


def params():
    return (Norm(np.ones(2), np.zeros(2)), None, [Norm(np.full(3, 2.0), np.ones(3))])


def test_fields_store_read_only_arrays_and_state_is_marked():
    n = Norm([1.0, 2.0], [0.0, 0.0])
    assert not n.gamma.flags.writeable and not n.mean.flags.writeable
    mine = np.ones(2)
    assert readonly(mine) is not mine and mine.flags.writeable
    fields = attrs.fields(Norm)
    assert not is_state_field(fields.gamma) and is_state_field(fields.mean)
    assert fields.mean.metadata["note"] == "kept"
    with pytest.raises(ValueError, match="read-only"):
        n.gamma[0] = 5.0


def test_trainable_structure_is_that_of_trainable_and_computed_once():
    p = params()
    leaves, treedef = tree_flatten(p)
    tdef, keep = trainable_structure(treedef)
    assert tdef is tree_structure(trainable(p))
    assert keep == (0, 2) and [leaves[i] for i in keep] == tree_leaves(trainable(p))
    assert trainable_structure(treedef) is trainable_structure(treedef)
    assert trainable_structure(tdef)[0] is tdef  # trainable of trainable changes nothing
    assert state_paths(p) == ["0.mean", "2.0.mean"]


def test_trainable_of_leaves_and_none():
    assert trainable(None) is None
    x = np.ones(2)
    assert trainable(x) is x
    assert state_paths(x) == [] and state_paths(None) == []
