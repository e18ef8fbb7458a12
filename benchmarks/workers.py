"""One measurement per process: the networks built three ways, and how each is timed.

``run(spec)`` is what ``bench.py --worker SPEC`` calls in a fresh subprocess, after the
thread-count variables are set, so each implementation's peak RSS is its own.

Networks (all on ``(1, 28, 28)`` inputs):

* ``lenet``: conv 6@5x5 pad 2, ReLU, max-pool 2, conv 16@5x5, ReLU, max-pool 2, flatten,
  dense 120, ReLU, dense 84, ReLU, dense 10; softmax cross-entropy.
* ``seed1`` (seed 000): conv 4@3x3, ReLU, max-pool 2, flatten, dense 10; softmax CE.
* ``seed2`` (seed 002): conv 5@3x3 + per-position bias, sigmoid, dense 100, sigmoid,
  dense 2, sigmoid; binary cross-entropy on one-hot targets.

A training step is forward (train=True), loss, backward and a plain SGD update
``p - lr * g`` (functional_cnn: new params via ``tree_map``; PyTorch: ``optim.SGD``;
notebooks: their own in-place update, one example at a time). Every implementation
starts from the same functional_cnn-initialized weights and sees the same data.
"""
from __future__ import annotations

import resource
import time
from typing import Any, Callable, Dict, List, Tuple

import numpy as np

LR = 0.01
IN_SHAPE = (1, 28, 28)


def rss_mb() -> float:
    """Peak resident set size of this process so far (``ru_maxrss``), in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ----------------------------------------------------------------------------- functional_cnn
def build_fcnn(net: str) -> Any:
    import functional_cnn as fc
    from functional_cnn.initializers import scaled_normal

    if net == "lenet":
        return fc.serial(fc.conv2d(6, 5, padding=2), fc.relu(), fc.max_pool2d(2), fc.conv2d(16, 5), fc.relu(),
                         fc.max_pool2d(2), fc.flatten(), fc.dense(120), fc.relu(), fc.dense(84), fc.relu(),
                         fc.dense(10))
    if net == "seed1":
        n01 = scaled_normal(0.1)
        return fc.serial(fc.conv2d(4, 3, w_init=n01), fc.relu(), fc.max_pool2d(2), fc.flatten(),
                         fc.dense(10, w_init=n01))
    if net == "seed2":
        from functional_cnn.layers.bias import bias

        n1 = scaled_normal(1.0)
        return fc.serial(fc.conv2d(5, 3, use_bias=False, w_init=n1), bias(b_init=n1), fc.sigmoid(), fc.flatten(),
                         fc.dense(100, w_init=n1, b_init=n1), fc.sigmoid(), fc.dense(2, w_init=n1, b_init=n1),
                         fc.sigmoid())
    raise ValueError(f"unknown net {net!r}")


def init_params(net: str, seed: int) -> Tuple[Any, Any]:
    layer = build_fcnn(net)
    _, params = layer.init(np.random.default_rng(seed), IN_SHAPE, dtype=np.float32)
    return layer, params


def make_data(net: str, batch: int, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """MNIST-shaped inputs in [0, 1) and labels (one-hot columns of 2 classes for seed2)."""
    rng = np.random.default_rng(seed + 1)
    x = rng.random((batch,) + IN_SHAPE, dtype=np.float32)
    classes = 2 if net == "seed2" else 10
    labels = rng.integers(0, classes, batch)
    return x, labels


def step_flops(net: str, batch: int) -> Dict[str, float]:
    """Useful FLOPs (2 per multiply-add) of the convs and denses: forward and train step (3x)."""
    layer, _ = init_params(net, 0)
    shape, fwd = IN_SHAPE, 0.0
    rng = np.random.default_rng(0)
    for child in layer.children:
        out, p = child.init(rng, shape)
        if child.name == "conv2d":
            fwd += 2.0 * np.prod(out) * p.w[0].size
        elif child.name == "dense":
            fwd += 2.0 * p.w.size
        shape = out
    return {"infer": fwd * batch, "train": 3.0 * fwd * batch}


def fcnn_runner(net: str, batch: int, mode: str, seed: int) -> Tuple[Callable[[], Any], Callable[[], float]]:
    import functional_cnn as fc
    from functional_cnn.tree import tree_map

    layer, params = init_params(net, seed)
    x, labels = make_data(net, batch, seed)
    if net == "seed2":
        target = np.eye(2, dtype=np.float32)[labels]
        loss_fn = lambda pred: fc.binary_cross_entropy(pred, target)  # noqa: E731
    else:
        loss_fn = lambda pred: fc.softmax_cross_entropy(pred, labels)  # noqa: E731
    lr = np.float32(LR)
    state = {"params": params}

    def sgd(p: np.ndarray, g: np.ndarray) -> np.ndarray:
        new = np.multiply(g, lr)
        np.subtract(p, new, out=new)  # p - lr * g with one fresh array
        new.flags.writeable = False  # fresh and unshared: the params record takes it without a copy
        return new

    def train_step() -> None:
        p = state["params"]
        out, cache = layer.forward(p, x, train=True)
        _, dpred = loss_fn(out)
        grads, _ = layer.backward(p, cache, dpred)
        state["params"] = tree_map(sgd, p, grads)

    def infer() -> None:
        layer.forward(state["params"], x, train=False)

    def first_loss() -> float:
        return float(loss_fn(layer.forward(params, x, train=True)[0])[0])

    return (train_step if mode == "train" else infer), first_loss


# ----------------------------------------------------------------------------- PyTorch
def torch_runner(net: str, batch: int, mode: str, seed: int, threads: int) -> Tuple[Callable, Callable]:
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    _, params = init_params(net, seed)
    x_np, labels = make_data(net, batch, seed)
    t = lambda a: torch.from_numpy(np.array(a, dtype=np.float32))  # noqa: E731

    def conv(p: Any, c_in: int, padding: int = 0) -> nn.Conv2d:
        m = nn.Conv2d(c_in, p.w.shape[0], p.w.shape[2], padding=padding, bias=p.b is not None)
        m.weight.data = t(p.w)
        if p.b is not None:
            m.bias.data = t(p.b)
        return m

    def linear(p: Any) -> nn.Linear:
        m = nn.Linear(p.w.shape[0], p.w.shape[1])
        m.weight.data, m.bias.data = t(p.w.T), t(p.b)
        return m

    class PositionBias(nn.Module):
        def __init__(self, b: np.ndarray):
            super().__init__()
            self.b = nn.Parameter(t(b))

        def forward(self, h: Any) -> Any:
            return h + self.b

    if net == "lenet":
        model = nn.Sequential(conv(params[0], 1, 2), nn.ReLU(), nn.MaxPool2d(2), conv(params[3], 6), nn.ReLU(),
                              nn.MaxPool2d(2), nn.Flatten(), linear(params[7]), nn.ReLU(), linear(params[9]),
                              nn.ReLU(), linear(params[11]))
        loss_fn, target = nn.CrossEntropyLoss(), torch.from_numpy(labels)
    elif net == "seed1":
        model = nn.Sequential(conv(params[0], 1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), linear(params[4]))
        loss_fn, target = nn.CrossEntropyLoss(), torch.from_numpy(labels)
    else:
        model = nn.Sequential(conv(params[0], 1), PositionBias(params[1].b), nn.Sigmoid(), nn.Flatten(),
                              linear(params[4]), nn.Sigmoid(), linear(params[6]), nn.Sigmoid())
        loss_fn, target = nn.BCELoss(), t(np.eye(2)[labels])
    x = torch.from_numpy(x_np)
    opt = torch.optim.SGD(model.parameters(), lr=LR)

    def train_step() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), target).backward()
        opt.step()

    def infer() -> None:
        with torch.no_grad():
            model(x)

    def first_loss() -> float:
        with torch.no_grad():
            return float(loss_fn(model(x), target))

    return (train_step if mode == "train" else infer), first_loss


# ----------------------------------------------------------------------------- notebooks
def notebook_runner(net: str, batch: int, mode: str, seed: int) -> Tuple[Callable, Callable]:
    from benchmarks.notebook_baseline import Seed000Net, Seed002Net

    _, params = init_params(net, seed)
    x, labels = make_data(net, batch, seed)
    if net == "seed1":
        model: Any = Seed000Net(*_copy_args(net, params))
        targets: List[Any] = list(labels)
    elif net == "seed2":
        model = Seed002Net(*_copy_args(net, params))
        targets = [np.eye(2)[t].reshape(2, 1) for t in labels]
    else:
        raise ValueError(f"the notebooks have no {net!r} network")

    def train_step() -> None:
        model.train(x, targets, LR)

    def infer() -> None:
        for xi in x:
            model.predict(xi)

    def first_loss() -> float:
        fresh = type(model)(*_copy_args(net, params))
        return float(np.mean([_loss_with(fresh, net, xi, ti) for xi, ti in zip(x, targets)]))

    return (train_step if mode == "train" else infer), first_loss


def _copy_args(net: str, params: Any) -> Tuple[Any, ...]:
    if net == "seed1":
        return params[0].w, params[0].b, params[4].w, params[4].b
    return params[0].w, params[1].b, params[4].w, params[4].b, params[6].w, params[6].b


def _loss_with(model: Any, net: str, xi: np.ndarray, ti: Any) -> float:
    out = model.predict(xi)
    if net == "seed1":
        return float(-np.log(out[ti] + 1e-9))
    return float(-np.mean(ti * np.log(out) + (1 - ti) * np.log(1 - out)))


# ----------------------------------------------------------------------------- timing
def time_calls(fn: Callable[[], Any], seconds: float, warmup: int) -> Tuple[int, float, float]:
    """Call ``fn`` ``warmup`` times, then until ``seconds`` have passed; (calls, wall s, CPU s)."""
    for _ in range(warmup):
        fn()
    calls, start, cpu = 0, time.perf_counter(), time.process_time()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return calls, elapsed, time.process_time() - cpu


def matmul_gflops(seconds: float, size: int = 2048) -> float:
    """Best float32 matmul rate of this process, in GFLOP/s (the 'peak' the step is compared to)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    a @ b
    best, start = 0.0, time.perf_counter()
    while time.perf_counter() - start < max(seconds, 0.2):
        t0 = time.perf_counter()
        a @ b
        best = max(best, 2.0 * size**3 / (time.perf_counter() - t0) / 1e9)
    return best


def run(spec: Dict[str, Any]) -> Dict[str, Any]:
    """Measure one (implementation, network, batch, mode); the result is JSON-ready."""
    impl, seconds = spec["impl"], float(spec["seconds"])
    if impl == "matmul":
        return {"impl": "matmul", "gflops": matmul_gflops(seconds), "peak_rss_mb": rss_mb()}
    net, batch, mode, seed = spec["net"], int(spec["batch"]), spec["mode"], int(spec.get("seed", 0))
    if impl == "fcnn":
        fn, first_loss = fcnn_runner(net, batch, mode, seed)
    elif impl == "torch":
        fn, first_loss = torch_runner(net, batch, mode, seed, int(spec["threads"]))
    elif impl == "notebook":
        fn, first_loss = notebook_runner(net, batch, mode, seed)
    else:
        raise ValueError(f"unknown implementation {impl!r}")
    loss0 = first_loss()
    rss_before = rss_mb()
    warmup = 1 if impl == "notebook" else 3
    calls, elapsed, cpu = time_calls(fn, seconds, warmup)
    return {"impl": impl, "net": net, "batch": batch, "mode": mode, "calls": calls, "elapsed_s": elapsed,
            "samples_per_s": calls * batch / elapsed, "cpu_s": cpu,
            "samples_per_cpu_s": calls * batch / cpu if cpu > 0 else None, "first_loss": loss0,
            "rss_before_mb": rss_before, "peak_rss_mb": rss_mb()}
