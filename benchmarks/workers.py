"""One measurement per process: the workloads, each written the way its framework's users write it.

``run(spec)`` is what ``bench.py --worker SPEC`` calls in a fresh subprocess, after the
thread-count variables are set, so each measurement's peak RSS and page faults are its own.

Networks (all on ``(1, 28, 28)`` inputs, softmax cross-entropy over 10 classes):

* ``lenet-unpadded``: LeNet-5 as PyTorch's tutorial writes it, first conv unpadded on
  28x28: conv 6@5x5, ReLU, max-pool 2, conv 16@5x5, ReLU, max-pool 2, flatten (256),
  dense 120, ReLU, dense 84, ReLU, dense 10.
* ``lenet-padded``: the same with the first conv padded by 2 (flatten 400): the CLI's
  ``lenet`` model, :func:`functional_cnn.models.lenet5`.
* ``seed000``: seed notebook 000's network, :func:`functional_cnn.models.seed1_net`:
  conv 4@3x3, ReLU, max-pool 2, flatten, dense 10.

How each framework is used (its own default initialization, its own idioms):

* functional_cnn: ``step = fc.make_step(net, fc.softmax_cross_entropy, fc.sgd(LR,
  momentum=0.9))`` and ``params, state, metrics = step(params, state, (x, y))``;
  inference ``net.forward(params, x)``; end to end ``fc.fit(..., test_data=...)``.
* PyTorch: ``nn.Sequential`` with default init, ``nn.CrossEntropyLoss``,
  ``torch.optim.SGD(lr=LR, momentum=0.9)``, tensors made once with ``torch.from_numpy``;
  a step is ``zero_grad``, forward, loss, ``backward``, ``step`` and ``loss.item()``
  (as the tutorial's running loss does); inference under ``torch.no_grad()``.
* notebook (seed 000 only): the notebook's own per-example loop with in-place plain SGD
  (``benchmarks/notebook_baseline.py``), from functional_cnn's initial weights.
"""
from __future__ import annotations

import resource
import time
from typing import Any, Callable, Dict, Tuple

import numpy as np

LR = 0.01
MOMENTUM = 0.9
IN_SHAPE = (1, 28, 28)
NETS = ("lenet-unpadded", "lenet-padded", "seed000")


def rss_mb() -> float:
    """Peak resident set size of this process so far (``ru_maxrss``), in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def minflt() -> int:
    """Minor page faults of this process so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


# ----------------------------------------------------------------------------- functional_cnn
def build_fcnn(net: str) -> Any:
    """The functional_cnn network called ``net`` (one of :data:`NETS`)."""
    import functional_cnn as fc
    from functional_cnn import models

    if net == "lenet-padded":
        return models.lenet5()
    if net == "lenet-unpadded":
        return fc.serial(fc.conv2d(6, 5), fc.relu(), fc.max_pool2d(2), fc.conv2d(16, 5), fc.relu(),
                         fc.max_pool2d(2), fc.flatten(), fc.dense(120), fc.relu(), fc.dense(84), fc.relu(),
                         fc.dense(10))
    if net == "seed000":
        return models.seed1_net()
    raise ValueError(f"build_fcnn: unknown net {net!r}; choose from {', '.join(NETS)}")


def init_params(net: str, seed: int) -> Tuple[Any, Any]:
    """``(layer, params)`` of ``net``, initialized by functional_cnn from ``seed``."""
    layer = build_fcnn(net)
    _, params = layer.init(np.random.default_rng(seed), IN_SHAPE, dtype=np.float32)
    return layer, params


def make_data(batch: int, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """MNIST-shaped float32 inputs in [0, 1) and int64 labels of 10 classes."""
    rng = np.random.default_rng(seed + 1)
    return rng.random((batch,) + IN_SHAPE, dtype=np.float32), rng.integers(0, 10, batch)


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
    """``(call, first_loss)``: one training step (or one inference call) and the initial loss."""
    import functional_cnn as fc

    layer, params = init_params(net, seed)
    x, labels = make_data(batch, seed)
    opt = fc.sgd(LR, momentum=MOMENTUM)
    step = fc.make_step(layer, fc.softmax_cross_entropy, opt)
    state = {"params": params, "opt": opt.init(params)}

    def train_step() -> None:
        state["params"], state["opt"], _ = step(state["params"], state["opt"], (x, labels))

    def infer() -> None:
        layer.forward(state["params"], x)

    def first_loss() -> float:
        return float(fc.softmax_cross_entropy(layer.forward(params, x)[0], labels)[0])

    return (train_step if mode == "train" else infer), first_loss


# ----------------------------------------------------------------------------- PyTorch
def build_torch(net: str, seed: int) -> Any:
    """The same network as an ``nn.Sequential`` with PyTorch's default initialization."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    if net in ("lenet-padded", "lenet-unpadded"):
        pad, flat = (2, 400) if net == "lenet-padded" else (0, 256)
        return nn.Sequential(nn.Conv2d(1, 6, 5, padding=pad), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5),
                             nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(flat, 120), nn.ReLU(),
                             nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
    if net == "seed000":
        return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(676, 10))
    raise ValueError(f"build_torch: unknown net {net!r}; choose from {', '.join(NETS)}")


def torch_runner(net: str, batch: int, mode: str, seed: int, threads: int) -> Tuple[Callable, Callable]:
    """``(call, first_loss)`` for PyTorch, written as its tutorial writes a training step."""
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    model = build_torch(net, seed)
    x_np, labels = make_data(batch, seed)
    x, target = torch.from_numpy(x_np), torch.from_numpy(labels)
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)

    def train_step() -> None:
        opt.zero_grad()
        loss = loss_fn(model(x), target)
        loss.backward()
        opt.step()
        loss.item()

    def infer() -> None:
        with torch.no_grad():
            model(x)

    def first_loss() -> float:
        with torch.no_grad():
            return float(loss_fn(model(x), target))

    if mode == "infer":
        model.eval()
    return (train_step if mode == "train" else infer), first_loss


# ----------------------------------------------------------------------------- notebook 000
def notebook_runner(net: str, batch: int, mode: str, seed: int) -> Tuple[Callable, Callable]:
    """Seed notebook 000's own per-example training loop, from functional_cnn's initial weights."""
    from benchmarks.notebook_baseline import Seed000Net

    if net != "seed000" or mode != "train":
        raise ValueError(f"notebook_runner: the notebooks only train seed000, got {net!r} {mode!r}")
    _, params = init_params(net, seed)
    x, labels = make_data(batch, seed)
    model = Seed000Net(params[0].w, params[0].b, params[4].w, params[4].b)

    def train_step() -> None:
        model.train(x, list(labels), LR)

    def first_loss() -> float:
        fresh = Seed000Net(params[0].w, params[0].b, params[4].w, params[4].b)
        return float(np.mean([-np.log(fresh.predict(xi)[t] + 1e-9) for xi, t in zip(x, labels)]))

    return train_step, first_loss


# ----------------------------------------------------------------------------- Fashion-MNIST end to end
def fashion_data() -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fashion-MNIST train and test arrays (float32 NCHW in [0, 1], int64 labels), via functional_cnn."""
    from functional_cnn.datasets import load_dataset

    data = load_dataset("fashion-mnist")
    return data.x_train, data.y_train, data.x_test, data.y_test


def e2e_fcnn(net: str, epochs: int, batch: int, seed: int) -> Dict[str, Any]:
    """``fc.fit`` for ``epochs`` epochs with a test evaluation after each; timed as a whole."""
    import functional_cnn as fc
    from functional_cnn.train import EpochRecord

    x, y, xt, yt = fashion_data()
    layer, params = init_params(net, seed)
    flt, start = minflt(), time.perf_counter()
    cpu = time.process_time()
    records = [r for r in fc.fit(layer, params, fc.softmax_cross_entropy, fc.sgd(LR, momentum=MOMENTUM), (x, y),
                                 epochs=epochs, batch_size=batch, seed=seed, test_data=(xt, yt))
               if isinstance(r, EpochRecord)]
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    steps = records[-1].step
    return {"time_s": elapsed, "cpu_s": cpu, "steps": steps, "minflt_per_step": (minflt() - flt) / steps,
            "test_accuracy": records[-1].test_accuracy, "train_loss": records[-1].loss,
            "train_examples": epochs * x.shape[0]}


def e2e_torch(net: str, epochs: int, batch: int, seed: int, threads: int) -> Dict[str, Any]:
    """The same run in PyTorch: a ``randperm`` per epoch, slices of tensors made once, test after each epoch."""
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    x_np, y_np, xt_np, yt_np = fashion_data()
    x, y, xt, yt = (torch.from_numpy(a) for a in (x_np, y_np, xt_np, yt_np))
    model = build_torch(net, seed)
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    gen = torch.Generator().manual_seed(seed)
    flt, start = minflt(), time.perf_counter()
    cpu = time.process_time()
    steps, accuracy, train_loss = 0, 0.0, 0.0
    for _ in range(epochs):
        model.train()
        order = torch.randperm(x.shape[0], generator=gen)
        running = 0.0
        for i in range(0, x.shape[0], batch):
            idx = order[i : i + batch]
            opt.zero_grad()
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            running += loss.item() * len(idx)
            steps += 1
        train_loss = running / x.shape[0]
        model.eval()
        correct = 0
        with torch.no_grad():
            for i in range(0, xt.shape[0], 1000):
                correct += int((model(xt[i : i + 1000]).argmax(dim=1) == yt[i : i + 1000]).sum())
        accuracy = correct / xt.shape[0]
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"time_s": elapsed, "cpu_s": cpu, "steps": steps, "minflt_per_step": (minflt() - flt) / steps,
            "test_accuracy": accuracy, "train_loss": train_loss, "train_examples": epochs * x.shape[0]}


# ----------------------------------------------------------------------------- timing
def time_calls(fn: Callable[[], Any], seconds: float, warmup: int) -> Dict[str, float]:
    """Call ``fn`` ``warmup`` times, then until ``seconds`` have passed: calls, wall s, CPU s, minor faults."""
    for _ in range(warmup):
        fn()
    calls, flt, start, cpu = 0, minflt(), time.perf_counter(), time.process_time()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return {"calls": calls, "elapsed_s": elapsed, "cpu_s": time.process_time() - cpu,
                    "minflt": minflt() - flt}


def run(spec: Dict[str, Any]) -> Dict[str, Any]:
    """Measure one (implementation, workload) as ``spec`` describes; the result is JSON-ready."""
    impl, net, batch, mode = spec["impl"], spec["net"], int(spec["batch"]), spec["mode"]
    seed, threads = int(spec.get("seed", 0)), int(spec["threads"])
    out: Dict[str, Any] = {"impl": impl, "workload": spec["workload"], "threads": threads}
    if mode == "e2e":
        epochs = int(spec["epochs"])
        if impl == "fcnn":
            res = e2e_fcnn(net, epochs, batch, seed)
        elif impl == "torch":
            res = e2e_torch(net, epochs, batch, seed, threads)
        else:
            raise ValueError(f"run: no end-to-end run for implementation {impl!r}")
        return {**out, **res, "epochs": epochs, "samples_per_s": res["train_examples"] / res["time_s"],
                "samples_per_cpu_s": res["train_examples"] / res["cpu_s"] if res["cpu_s"] > 0 else None,
                "peak_rss_mb": rss_mb()}
    if impl == "fcnn":
        fn, first_loss = fcnn_runner(net, batch, mode, seed)
    elif impl == "torch":
        fn, first_loss = torch_runner(net, batch, mode, seed, threads)
    elif impl == "notebook":
        fn, first_loss = notebook_runner(net, batch, mode, seed)
    else:
        raise ValueError(f"run: unknown implementation {impl!r}")
    loss0 = first_loss()
    rss_before = rss_mb()
    t = time_calls(fn, float(spec["seconds"]), 1 if impl == "notebook" else 5)
    n = t["calls"] * batch
    return {**out, "calls": t["calls"], "elapsed_s": t["elapsed_s"], "cpu_s": t["cpu_s"],
            "samples_per_s": n / t["elapsed_s"], "samples_per_cpu_s": n / t["cpu_s"] if t["cpu_s"] > 0 else None,
            "minflt_per_step": t["minflt"] / t["calls"], "first_loss": loss0, "rss_before_mb": rss_before,
            "peak_rss_mb": rss_mb()}
