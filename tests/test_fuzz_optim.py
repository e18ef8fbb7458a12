"""Fuzzing every optimizer alias, transformation and schedule over random parameter trees.

Random trees (attrs records with state fields, tuples, dicts, ``None``), float16/32/64
arrays of any shape including empty ones: updates have the gradients' structure and the
params' dtype, are finite, and nothing is mutated. Mismatched gradients, states and
updates raise a ``TypeError`` that names the optimizer and shows both trees by path
(``ValueError`` for a shape); junk hyperparameters raise errors naming the argument.
"""
import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import functional_cnn as fc
from errors_doc import Case, assert_named
from functional_cnn import optim
from functional_cnn.layers import BatchNormParams, DenseParams
from functional_cnn.optim import schedules as S
from functional_cnn.tree import trainable, tree_leaves, tree_leaves_with_paths, tree_map, tree_structure

FLOATS = (np.float16, np.float32, np.float64)
SEEDS = st.integers(0, 2**32 - 1)


def _matrix(p, leaf):
    return bool(np.ndim(leaf) >= 2)


OPTIMIZERS = {  # name the errors start with: constructor
    "sgd": lambda: optim.sgd(0.1),
    "sgd(0.1, momentum": lambda: optim.sgd(0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "adam": lambda: optim.adam(1e-3),
    "adamw": lambda: optim.adamw(S.warmup_cosine_decay_schedule(0.0, 1e-3, 2, 10), mask=_matrix),
    "rmsprop": lambda: optim.rmsprop(1e-3, momentum=0.5),
    "adagrad": lambda: optim.adagrad(0.1),
    "chain": lambda: optim.chain(optim.clip_by_global_norm(1.0), optim.scale_by_adam(), optim.scale(-1e-3)),
    "masked": lambda: optim.masked(optim.scale_by_rms(), _matrix),
    "trace": lambda: optim.trace(0.9, nesterov=True),
    "scale_by_adagrad": lambda: optim.scale_by_adagrad(),
    "add_decayed_weights": lambda: optim.add_decayed_weights(0.1, _matrix),
    "clip_by_value": lambda: optim.clip_by_value(-1.0, 1.0),
    "scale_by_learning_rate": lambda: optim.scale_by_learning_rate(S.exponential_decay(0.1, 3, 0.5)),
    "scale": lambda: optim.scale(-0.5),
    "clip_by_global_norm": lambda: optim.clip_by_global_norm(0.5),
}
by_optimizer = pytest.mark.parametrize("name", list(OPTIMIZERS))


# ----------------------------------------------------------------------------- random trees
def _array(draw, dtype):
    shape = tuple(draw(st.lists(st.integers(0, 3), max_size=3)))
    return np.random.default_rng(draw(SEEDS)).standard_normal(shape).astype(dtype)


@st.composite
def param_trees(draw, dtype=None):
    dtype = dtype or draw(st.sampled_from(FLOATS))

    def node(depth):
        kinds = ["array", "dense", "norm", "none"] + (["tuple", "dict"] if depth < 2 else [])
        kind = draw(st.sampled_from(kinds))
        if kind == "array":
            return _array(draw, dtype)
        if kind == "dense":
            return DenseParams(_array(draw, dtype), draw(st.one_of(st.none(), st.just(_array(draw, dtype)))))
        if kind == "norm":
            c = draw(st.integers(1, 3))
            return BatchNormParams(*(np.ones(c, dtype) for _ in range(4)))
        if kind == "none":
            return None
        kids = [node(depth + 1) for _ in range(draw(st.integers(0, 3)))]
        if kind == "tuple":
            return tuple(kids)
        return {f"k{i}": kid for i, kid in enumerate(kids)}

    return (node(0), node(0))


def grads_for(params, rng, scale=1.0):
    return tree_map(lambda p: (rng.standard_normal(p.shape) * scale).astype(p.dtype), trainable(params))


def frozen_copy(tree):
    return [np.array(a, copy=True) for a in tree_leaves(tree)]


def same(tree, copy):
    return all(np.array_equal(a, b, equal_nan=True) for a, b in zip(tree_leaves(tree), copy, strict=True))


# ----------------------------------------------------------------------------- the contract
@by_optimizer
@settings()
@given(params=param_trees(), seed=SEEDS, scale=st.sampled_from([1e-3, 1.0, 1e3]), steps=st.integers(1, 3))
def test_updates_follow_the_params(name, params, seed, scale, steps):
    opt = OPTIMIZERS[name]()
    rng = np.random.default_rng(seed)
    state = opt.init(params)
    for _ in range(steps):
        grads = grads_for(params, rng, scale)
        kept = frozen_copy((params, grads, state))
        updates, new_state = opt.update(grads, state, params)
        assert same((params, grads, state), kept), "update changed its inputs"
        assert tree_structure(updates) == tree_structure(grads)
        for (path, u), g in zip(tree_leaves_with_paths(updates), tree_leaves(grads), strict=True):
            assert u.shape == g.shape and u.dtype == g.dtype and np.isfinite(u).all(), path
        assert all(not a.flags.writeable for a in tree_leaves(new_state) if isinstance(a, np.ndarray))
        new_params = optim.apply_updates(params, updates)
        assert tree_structure(new_params) == tree_structure(params)
        for (path, a), b in zip(tree_leaves_with_paths(new_params), tree_leaves(params), strict=True):
            assert a.dtype == b.dtype and a.shape == b.shape, path
        for path in fc.tree.state_paths(params):  # optimizers never touch state fields
            assert dict(tree_leaves_with_paths(new_params))[path] is dict(tree_leaves_with_paths(params))[path]
        params, state = new_params, new_state


@by_optimizer
@settings()
@given(params=param_trees(dtype=np.float32), seed=SEEDS, value=st.sampled_from([np.nan, np.inf, -np.inf]))
def test_non_finite_grads_are_not_hidden(name, params, seed, value):
    """A NaN/Inf gradient is data: no error, and the updates show it (never a silent finite step)."""
    grads = grads_for(params, np.random.default_rng(seed))
    path = _first_array_path(grads)
    assume(path is not None and dict(tree_leaves_with_paths(grads))[path].size > 0)
    grads = fc.tree.tree_map_with_path(lambda p, a: np.full_like(a, value) if p == path else a, grads)
    opt = OPTIMIZERS[name]()
    with np.errstate(all="ignore"):
        updates, _ = opt.update(grads, opt.init(params), params)
    if name == "clip_by_value" and value == value:
        assert all(np.isfinite(u).all() for u in tree_leaves(updates))  # clipping an Inf is its purpose
        return
    assert not all(np.isfinite(u).all() for u in tree_leaves(updates))


# ----------------------------------------------------------------------------- structural mismatches
def _first_array_path(tree):
    paths = [p for p, _ in tree_leaves_with_paths(tree)]
    return paths[0] if paths else None


@st.composite
def spoiled_grads(draw):
    """A params tree with at least one trainable leaf, and grads spoiled in one way."""
    params = draw(param_trees())
    if not tree_leaves(trainable(params)):
        params = (DenseParams(np.ones((2, 3), np.float32), None), params[1])
    grads = grads_for(params, np.random.default_rng(draw(SEEDS)))
    how = draw(st.sampled_from(["extra", "missing", "record", "shape", "leaf for subtree", "dtype"]))
    g0, g1 = grads
    if how == "extra":
        bad = (g0, g1, np.ones(2, np.float32))
    elif how == "missing":
        bad = (g0,)
    elif how == "record":
        bad = (fc.layers.BiasParams(np.ones(2, np.float32)), g1) if not isinstance(g0, fc.layers.BiasParams) else 0
    elif how == "leaf for subtree":
        bad = np.ones(3, np.float32)
    else:
        path = _first_array_path(grads)

        def spoil(p, a):
            if p != path:
                return a
            return {"shape": np.ones(a.shape + (2,), a.dtype), "dtype": a.astype(np.int64)}[how]

        bad = fc.tree.tree_map_with_path(spoil, grads)
    return params, grads, bad, how


@by_optimizer
@settings()
@given(case=spoiled_grads())
def test_mismatched_grads_name_the_optimizer_and_show_both(name, case):
    params, grads, bad, how = case
    opt = OPTIMIZERS[name]()
    state = opt.init(params)
    exc = ValueError if how == "shape" else TypeError
    with pytest.raises(exc) as info:
        opt.update(bad, state, params)
    assert_named(info.value, name, "grads")
    msg = str(info.value)
    if how in ("extra", "missing", "record", "leaf for subtree"):
        assert "first difference at" in msg and "grads:" in msg, msg


@by_optimizer
@settings()
@given(params=param_trees(), other=param_trees(), seed=SEEDS)
def test_state_of_another_model_or_optimizer(name, params, other, seed):
    opt = OPTIMIZERS[name]()
    grads = grads_for(params, np.random.default_rng(seed))
    foreign = [optim.sgd(0.1, momentum=0.5).init(params), "state", None]
    mine, theirs = opt.init(params), opt.init(other)
    if tree_structure(mine) != tree_structure(theirs) or any(
            np.shape(a) != np.shape(b) for a, b in zip(tree_leaves(mine), tree_leaves(theirs), strict=True)):
        foreign.append(theirs)  # (a state equal in structure and shapes, e.g. on masked leaves only, fits)
    for state in foreign:
        try:
            opt.update(grads, state, params)
        except (TypeError, ValueError) as err:
            assert_named(err, name)
        else:  # only a stateless part could accept it: it must hold no per-leaf arrays
            assert not any(isinstance(a, np.ndarray) and a.ndim for a in tree_leaves(state)), state


@settings()
@given(params=param_trees(), seed=SEEDS, how=st.sampled_from(["shape", "structure", "dtype"]))
def test_apply_updates_mismatches(params, seed, how):
    updates = grads_for(params, np.random.default_rng(seed))
    path = _first_array_path(updates)
    assume(how == "structure" or path is not None)
    if how == "structure":
        bad, exc = (updates, None, None), TypeError
    elif how == "shape":
        bad, exc = fc.tree.tree_map_with_path(lambda p, a: a[None] if p == path else a, updates), ValueError
    else:
        bad, exc = fc.tree.tree_map_with_path(lambda p, a: a.astype(complex) if p == path else a, updates), TypeError
    with pytest.raises(exc) as info:
        optim.apply_updates(params, bad)
    assert_named(info.value, "apply_updates")


# ----------------------------------------------------------------------------- hyperparameters
JUNK = st.one_of(
    st.integers(-3, 5), st.sampled_from([2**31, 10**30, np.int64(2)]), st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(), st.none(), st.sampled_from(["", "0.1", "*.w"]), st.tuples(st.integers(-1, 3)),
    st.lists(st.floats(-2, 2), max_size=3), st.sampled_from([np.array([1, 2]), object(), 1 + 2j, np.float32(0.5)]),
)
FACTORIES = {
    "sgd": (optim.sgd, dict(learning_rate=0.1, momentum=0.5, nesterov=False, weight_decay=0.1, mask=None)),
    "adam": (optim.adam, dict(learning_rate=0.1, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0)),
    "adamw": (optim.adamw, dict(learning_rate=0.1, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0, weight_decay=1e-4,
                                mask=None)),
    "rmsprop": (optim.rmsprop, dict(learning_rate=0.1, decay=0.9, eps=1e-8, momentum=0.0, nesterov=False)),
    "adagrad": (optim.adagrad, dict(learning_rate=0.1, initial_accumulator=0.1, eps=1e-7)),
    "scale": (optim.scale, dict(step_size=1.0)),
    "scale_by_learning_rate": (optim.scale_by_learning_rate, dict(learning_rate=0.1)),
    "trace": (optim.trace, dict(decay=0.9, nesterov=False)),
    "scale_by_adam": (optim.scale_by_adam, dict(b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0)),
    "scale_by_rms": (optim.scale_by_rms, dict(decay=0.9, eps=1e-8)),
    "scale_by_adagrad": (optim.scale_by_adagrad, dict(initial_accumulator=0.1, eps=1e-7)),
    "add_decayed_weights": (optim.add_decayed_weights, dict(weight_decay=0.1, mask=None)),
    "clip_by_global_norm": (optim.clip_by_global_norm, dict(max_norm=1.0)),
    "clip_by_value": (optim.clip_by_value, dict(low=-1.0, high=1.0)),
    "masked": (optim.masked, dict(inner=optim.scale(1.0), mask="*")),
    "constant_schedule": (S.constant_schedule, dict(value=0.1)),
    "piecewise_constant_schedule": (S.piecewise_constant_schedule, dict(boundaries=[10], values=[1.0, 0.1])),
    "exponential_decay": (S.exponential_decay, dict(init_value=1.0, transition_steps=10, decay_rate=0.5,
                                                    transition_begin=0, staircase=False, end_value=None)),
    "cosine_decay_schedule": (S.cosine_decay_schedule, dict(init_value=1.0, decay_steps=10, alpha=0.0)),
    "linear_schedule": (S.linear_schedule, dict(init_value=1.0, end_value=0.0, transition_steps=10,
                                                transition_begin=0)),
    "join_schedules": (S.join_schedules, dict(schedules=[S.constant_schedule(1.0), S.constant_schedule(0.1)],
                                              boundaries=[10])),
    "warmup_cosine_decay_schedule": (S.warmup_cosine_decay_schedule, dict(init_value=0.0, peak_value=1.0,
                                                                          warmup_steps=2, decay_steps=10,
                                                                          end_value=0.0)),
    "path_mask": (lambda patterns: optim.path_mask(patterns), dict(patterns="*.w")),
}
HYPER = [(name, arg) for name, (_, kw) in FACTORIES.items() for arg in kw]
PARAMS = (DenseParams(np.ones((2, 3), np.float32), np.zeros(3, np.float32)),)


@settings()
@given(which=st.sampled_from(HYPER), value=JUNK, step=st.integers(0, 10**6))
def test_junk_hyperparameters(which, value, step):
    """Any value: a working transformation (or schedule), or an error naming the function and the argument."""
    name, arg = which
    factory, kwargs = FACTORIES[name]
    try:
        made = factory(**{**kwargs, arg: value})
    except (ValueError, TypeError) as err:
        assert_named(err, name, arg)
        return
    if isinstance(made, S.Schedule):
        assert math.isfinite(made(step)) or name == "exponential_decay"  # a growing rate may overflow to inf
        return
    if not isinstance(made, optim.GradientTransformation):  # a mask: a predicate on (path, leaf)
        assert name == "path_mask" and isinstance(made("0.w", PARAMS[0].w), bool), (name, made)
        return
    try:
        state = made.init(PARAMS)
        updates, _ = made.update(grads_for(PARAMS, np.random.default_rng(0)), state, PARAMS)
    except (ValueError, TypeError) as err:  # e.g. a mask pattern matching no parameter
        assert_named(err, name)
        return
    huge = isinstance(value, float) and abs(value) > 1e30  # a finite rate beyond float32's range overflows
    assert all(np.isfinite(u).all() for u in tree_leaves(updates)) or huge or arg in ("low", "high")


SCHEDULES = [S.constant_schedule(0.1), S.piecewise_constant_schedule([3], [1.0, 0.5]),
             S.exponential_decay(1.0, 3, 0.5), S.cosine_decay_schedule(1.0, 5), S.linear_schedule(0.0, 1.0, 4),
             S.join_schedules([S.constant_schedule(1.0), S.linear_schedule(1.0, 0.0, 3)], [2]),
             S.warmup_cosine_decay_schedule(0.0, 1.0, 2, 6)]


@settings()
@given(schedule=st.sampled_from(SCHEDULES),
       step=st.one_of(st.integers(0, 10**9), st.integers(-10, -1), st.floats(), st.booleans(), st.none(),
                      st.just("3"), st.just(np.int64(4)), st.just(np.array(5)), st.just(np.array([5]))))
def test_schedules_at_any_step(schedule, step):
    try:
        value = schedule(step)
    except (ValueError, TypeError) as err:
        assert_named(err, repr(schedule), "step")
        return
    assert isinstance(value, float) and math.isfinite(value)


P0 = PARAMS
G0 = grads_for(P0, np.random.default_rng(0))

ERROR_CASES = [
    Case("optimizers", "sgd(-0.1)", lambda: optim.sgd(-0.1), ValueError,
         "sgd: scale_by_learning_rate: learning_rate must be in [0.0, inf]"),
    Case("optimizers", "sgd(0.1, nesterov=np.array([1, 2]))", lambda: optim.sgd(0.1, 0.5, np.array([1, 2])),
         TypeError, "sgd: nesterov must be a bool"),
    Case("optimizers", "adam(1e-3, b1=1.0)", lambda: optim.adam(1e-3, b1=1.0), ValueError,
         "adam: scale_by_adam: b1 must be in [0.0, 1.0)"),
    Case("optimizers", "adamw(1e-3, mask=(1, 2))", lambda: optim.adamw(1e-3, mask=(1, 2)), TypeError,
         "adamw: add_decayed_weights: mask must be strings such as '*.b'"),
    Case("optimizers", "adamw(1e-3, mask=[])", lambda: optim.adamw(1e-3, mask=[]), ValueError,
         "adamw: add_decayed_weights: needs at least one glob pattern such as '*.b' in mask"),
    Case("optimizers", "adamw(1e-3, mask='*.kernel').init(params)",
         lambda: optim.adamw(1e-3, mask="*.kernel").init(P0), ValueError, "adamw(0.001, b1=0.9"),
    Case("optimizers", "sgd(0.1).update(grads missing a leaf, state, params)",
         lambda: optim.sgd(0.1).update((DenseParams(G0[0].w, None),), optim.sgd(0.1).init(P0), P0), TypeError,
         "sgd(0.1).update: grads and params (trainable) have different structures; first difference at '0.b'"),
    Case("optimizers", "adam(1e-3).update(grads, state) with a grads leaf of another shape",
         lambda: optim.adam(1e-3).update((DenseParams(G0[0].w[:1], G0[0].b),), optim.adam(1e-3).init(P0)),
         ValueError, "adam(0.001, b1=0.9, b2=0.999, eps=1e-08).update -> scale_by_adam.update: grads leaf '0.w'"),
    Case("optimizers", "adam(1e-3).update(int64 grads, state, params)",
         lambda: optim.adam(1e-3).update(tree_map(lambda a: a.astype(np.int64), G0), optim.adam(1e-3).init(P0), P0),
         TypeError, "adam(0.001, b1=0.9, b2=0.999, eps=1e-08).update: grads leaf '0.w' must be a floating numpy array"),
    Case("optimizers", "sgd(0.1).update(grads, adam state, params)",
         lambda: optim.sgd(0.1).update(G0, optim.adam(1e-3).init(P0), P0), TypeError,
         "sgd(0.1).update: state must be the tuple of 1 states made by this optimizer's init, got tuple of 2"),
    Case("optimizers", "scale(2.0).update(grads of another structure, state, params)",
         lambda: optim.scale(2.0).update((G0[0], G0[0]), optim.scale(2.0).init(P0), P0), TypeError,
         "scale.update: grads and params (trainable) have different structures"),
    Case("optimizers", "trace(0.9).init(int params)", lambda: optim.trace(0.9).init((np.arange(3),)), TypeError,
         "trace.init: params leaf '0' must be a floating numpy array, got int64"),
    Case("optimizers", "apply_updates(params, updates with an extra leaf)",
         lambda: optim.apply_updates(P0, (G0[0], G0[0])), TypeError,
         "apply_updates: updates and params have different structures"),
    Case("optimizers", "apply_updates(params, complex updates)",
         lambda: optim.apply_updates(P0, tree_map(lambda a: a.astype(complex), G0)), TypeError,
         "apply_updates: update '0.w' must be a floating numpy array, got complex128"),
    Case("optimizers", "learning_rate('state')", lambda: optim.learning_rate("state"), ValueError,
         "learning_rate: state must contain exactly one ScaleByLearningRateState"),
    Case("optimizers", "piecewise_constant_schedule(0, [1.0])", lambda: S.piecewise_constant_schedule(0, [1.0]),
         TypeError, "piecewise_constant_schedule: boundaries must be a list or tuple"),
    Case("optimizers", "exponential_decay(1.0, 10, 0.5, staircase='yes')",
         lambda: S.exponential_decay(1.0, 10, 0.5, staircase="yes"), TypeError,
         "exponential_decay: staircase must be a bool"),
    Case("optimizers", "cosine_decay_schedule(1.0, 10)(-1)", lambda: S.cosine_decay_schedule(1.0, 10)(-1),
         ValueError, "cosine_decay_schedule(1, 10, alpha=0): step must be an integer >= 0"),
    Case("optimizers", "join_schedules(None, [10])", lambda: S.join_schedules(None, [10]), TypeError,
         "join_schedules: schedules must be a list or tuple"),
]


@pytest.mark.parametrize("case", ERROR_CASES, ids=lambda c: c.what)
def test_documented_bad_inputs(case):
    case.check()
