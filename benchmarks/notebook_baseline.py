"""The seed notebooks' training loops, re-implemented for timing (the baseline to beat).

Written fresh from the notebooks in ``shared/seeds`` and kept faithful to what they
compute and how: one example at a time, float64 parameters, ``scipy.signal`` loops over
filter/channel pairs, Python loops over pooling windows, layers that keep their input
and update themselves inside ``backward``. Only two things differ, neither affecting
the work done per example: weights come from an explicit ``numpy.random.Generator`` or
are copied in (never the global ``np.random``), and nothing is printed.

Seed 000 (``Seed000Net``): conv 4@3x3 (``scipy.signal.convolve``), ReLU, max-pool 2,
dense 10, softmax cross-entropy. Its forward pass *convolves*, so weights copied in
from a cross-correlating framework are flipped on the way in (same outputs). Its filter
gradient is the notebook's ``correlate(x, dY)``, flipped as in the notebook: the
baseline times that code, it does not fix it.

Seed 002 (``Seed002Net``): conv 5@3x3 (``correlate2d``) with one bias per output
position, sigmoid, dense 100, sigmoid, dense 2, sigmoid, binary cross-entropy, column
vectors throughout.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np
from scipy import signal

__all__ = ["Seed000Net", "Seed002Net"]


# ----------------------------------------------------------------------------- seed 000
def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(0, x)


def _relu_deriv(x: np.ndarray) -> np.ndarray:
    return x >= 0


def _softmax(x: np.ndarray) -> np.ndarray:
    return np.exp(x) / np.sum(np.exp(x))


class _ConvLayer000:
    def __init__(self, filters: np.ndarray, biases: np.ndarray):
        self.filters = np.array(filters, dtype=np.float64)  # (F, D, k, k)
        self.biases = np.array(biases, dtype=np.float64)
        self.num_filters, self.input_depth, self.filter_size = self.filters.shape[:3]

    def forward_prop(self, x: np.ndarray) -> np.ndarray:
        # scipy.signal computes in float64 anyway; given a float32 image and float64 filters it
        # also casts its uninitialized output buffer, which now and then holds a signalling NaN
        # pattern and warns "invalid value encountered in cast". The values are the same.
        x = np.asarray(x, dtype=np.float64)
        self.last_input = x
        _, height, width = x.shape
        k = self.filter_size
        self.output = np.zeros((self.num_filters, height - k + 1, width - k + 1))
        for f in range(self.num_filters):
            for i in range(self.input_depth):
                self.output[f] += signal.convolve(x[i], self.filters[f, i], mode="valid")
            self.output[f] += self.biases[f]
        return self.output

    def backward_prop(self, d_out: np.ndarray, lr: float) -> np.ndarray:
        d_filters = np.zeros_like(self.filters)
        d_input = np.zeros_like(self.last_input)
        for f in range(self.num_filters):
            for d in range(self.input_depth):
                d_filters[f, d] = signal.correlate(self.last_input[d], d_out[f], mode="valid")
                d_input[d] += signal.convolve(d_out[f], self.filters[f, d][::-1, ::-1], mode="full")
            self.biases[f] -= lr * np.sum(d_out[f])
        self.filters -= lr * d_filters
        return d_input


class _MaxPoolLayer000:
    def __init__(self, size: int):
        self.size = size

    def forward_prop(self, x: np.ndarray) -> np.ndarray:
        self.last_input = x
        depth, height, width = x.shape
        s = self.size
        out = np.zeros((depth, height // s, width // s))
        self.mask = np.zeros_like(x)
        for d in range(depth):
            for h in range(height // s):
                for w in range(width // s):
                    patch = x[d, h * s : (h + 1) * s, w * s : (w + 1) * s]
                    max_val = np.max(patch)
                    out[d, h, w] = max_val
                    pos = np.where(patch == max_val)
                    self.mask[d, h * s + pos[0][0], w * s + pos[1][0]] = 1
        return out

    def backward_prop(self, d_out: np.ndarray) -> np.ndarray:
        d_input = np.zeros_like(self.last_input)
        depth, height_out, width_out = d_out.shape
        s = self.size
        for d in range(depth):
            for h in range(height_out):
                for w in range(width_out):
                    d_input[d, h * s : (h + 1) * s, w * s : (w + 1) * s] += (
                        self.mask[d, h * s : (h + 1) * s, w * s : (w + 1) * s] * d_out[d, h, w]
                    )
        return d_input


class _DenseLayer000:
    def __init__(self, weights: np.ndarray, biases: np.ndarray):
        self.weights = np.array(weights, dtype=np.float64)  # (out, in)
        self.biases = np.array(biases, dtype=np.float64)

    def forward_prop(self, x: np.ndarray) -> np.ndarray:
        self.last_input = x
        return np.dot(self.weights, x) + self.biases

    def backward_prop(self, d_out: np.ndarray, lr: float) -> np.ndarray:
        d_weights = np.outer(d_out, self.last_input)
        d_input = np.dot(self.weights.T, d_out)
        self.weights -= lr * d_weights
        self.biases -= lr * d_out
        return d_input


class Seed000Net:
    """Seed 000's network and per-example SGD loop.

    Args:
        conv_w: ``(4, 1, 3, 3)`` cross-correlation filters (flipped here for ``convolve``).
        conv_b: ``(4,)``.
        dense_w: ``(676, 10)`` as in ``functional_cnn.dense`` (transposed here).
        dense_b: ``(10,)``.
    """

    def __init__(self, conv_w: np.ndarray, conv_b: np.ndarray, dense_w: np.ndarray, dense_b: np.ndarray):
        self.conv = _ConvLayer000(np.asarray(conv_w)[:, :, ::-1, ::-1], conv_b)
        self.pool = _MaxPoolLayer000(2)
        self.dense = _DenseLayer000(np.asarray(dense_w).T, dense_b)
        self.pooled_shape = (self.conv.num_filters, 13, 13)
        self.correct = 0

    @classmethod
    def random(cls, rng: np.random.Generator) -> Seed000Net:
        """Weights N(0, 0.1^2), zero biases, as in the notebook (from ``rng``)."""
        return cls(rng.standard_normal((4, 1, 3, 3)) * 0.1, np.zeros(4), rng.standard_normal((676, 10)) * 0.1,
                   np.zeros(10))

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities of one ``(1, 28, 28)`` example."""
        out = _relu(self.conv.forward_prop(x))
        out = self.pool.forward_prop(out).flatten()
        return _softmax(self.dense.forward_prop(out))

    def train_example(self, x: np.ndarray, label: int, lr: float) -> float:
        """One step of the notebook's loop; returns the example's loss."""
        probs = self.predict(x)
        loss = -np.log(probs[label] + 1e-9)
        self.correct += int(np.argmax(probs) == label)  # the notebook's running accuracy
        grad = probs.copy()
        grad[label] -= 1
        grad = self.dense.backward_prop(grad, lr)
        grad = grad.reshape(self.pooled_shape)
        grad = self.pool.backward_prop(grad)
        grad = _relu_deriv(self.conv.output) * grad
        self.conv.backward_prop(grad, lr)
        return float(loss)

    def train(self, xs: Sequence[np.ndarray], labels: Sequence[int], lr: float) -> float:
        """The notebook's inner loop over examples; returns the summed loss."""
        return sum(self.train_example(x, int(t), lr) for x, t in zip(xs, labels))


# ----------------------------------------------------------------------------- seed 002
def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


class _Dense002:
    def __init__(self, weights: np.ndarray, bias: np.ndarray):
        self.weights = np.array(weights, dtype=np.float64)  # (out, in)
        self.bias = np.array(bias, dtype=np.float64).reshape(-1, 1)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.input = x
        return np.dot(self.weights, self.input) + self.bias

    def backward(self, output_gradient: np.ndarray, learning_rate: float) -> np.ndarray:
        weights_gradient = np.dot(output_gradient, self.input.T)
        input_gradient = np.dot(self.weights.T, output_gradient)
        self.weights -= learning_rate * weights_gradient
        self.bias -= learning_rate * output_gradient
        return input_gradient


class _Sigmoid002:
    def forward(self, x: np.ndarray) -> np.ndarray:
        self.input = x
        return _sigmoid(self.input)

    def backward(self, output_gradient: np.ndarray, learning_rate: float) -> np.ndarray:
        s = _sigmoid(self.input)  # the notebook's sigmoid_prime evaluates sigmoid twice
        return np.multiply(output_gradient, _sigmoid(self.input) * (1 - s))


class _Convolutional002:
    def __init__(self, kernels: np.ndarray, biases: np.ndarray):
        self.kernels = np.array(kernels, dtype=np.float64)  # (depth, input_depth, k, k)
        self.biases = np.array(biases, dtype=np.float64)  # (depth, OH, OW)
        self.depth, self.input_depth = self.kernels.shape[:2]

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.input = x
        self.output = np.copy(self.biases)
        for i in range(self.depth):
            for j in range(self.input_depth):
                self.output[i] += signal.correlate2d(self.input[j], self.kernels[i, j], "valid")
        return self.output

    def backward(self, output_gradient: np.ndarray, learning_rate: float) -> np.ndarray:
        kernels_gradient = np.zeros(self.kernels.shape)
        input_gradient = np.zeros(self.input.shape)
        for i in range(self.depth):
            for j in range(self.input_depth):
                kernels_gradient[i, j] = signal.correlate2d(self.input[j], output_gradient[i], "valid")
                input_gradient[j] += signal.convolve2d(output_gradient[i], self.kernels[i, j], "full")
        self.kernels -= learning_rate * kernels_gradient
        self.biases -= learning_rate * output_gradient
        return input_gradient


class _Reshape002:
    def __init__(self, input_shape: Tuple[int, ...], output_shape: Tuple[int, ...]):
        self.input_shape, self.output_shape = input_shape, output_shape

    def forward(self, x: np.ndarray) -> np.ndarray:
        return np.reshape(x, self.output_shape)

    def backward(self, output_gradient: np.ndarray, learning_rate: float) -> np.ndarray:
        return np.reshape(output_gradient, self.input_shape)


class Seed002Net:
    """Seed 002's network (2 classes) and per-example SGD loop.

    Args:
        conv_w: ``(5, 1, 3, 3)``; conv_b: ``(5, 26, 26)`` (one bias per output position);
        w1: ``(3380, 100)``, b1: ``(100,)``; w2: ``(100, 2)``, b2: ``(2,)`` in
        ``functional_cnn.dense`` layout (transposed here).
    """

    def __init__(self, conv_w: np.ndarray, conv_b: np.ndarray, w1: np.ndarray, b1: np.ndarray, w2: np.ndarray,
                 b2: np.ndarray):
        self.network = [
            _Convolutional002(conv_w, conv_b), _Sigmoid002(), _Reshape002((5, 26, 26), (5 * 26 * 26, 1)),
            _Dense002(np.asarray(w1).T, b1), _Sigmoid002(), _Dense002(np.asarray(w2).T, b2), _Sigmoid002(),
        ]

    @classmethod
    def random(cls, rng: np.random.Generator) -> Seed002Net:
        """Every weight and bias N(0, 1), as in the notebook (from ``rng``)."""
        n = rng.standard_normal
        return cls(n((5, 1, 3, 3)), n((5, 26, 26)), n((3380, 100)), n(100), n((100, 2)), n(2))

    def predict(self, x: np.ndarray) -> np.ndarray:
        """``(2, 1)`` sigmoid outputs for one ``(1, 28, 28)`` example."""
        out = x
        for layer in self.network:
            out = layer.forward(out)
        return out

    def train_example(self, x: np.ndarray, y: np.ndarray, lr: float) -> float:
        """One step of the notebook's loop (``y`` is the ``(2, 1)`` one-hot column)."""
        out = self.predict(x)
        error = -np.mean(y * np.log(out) + (1 - y) * np.log(1 - out))
        grad = ((1 - y) / (1 - out) - y / out) / np.size(y)
        for layer in reversed(self.network):
            grad = layer.backward(grad, lr)
        return float(error)

    def train(self, xs: Sequence[np.ndarray], ys: Sequence[np.ndarray], lr: float) -> float:
        """The notebook's inner loop over examples; returns the summed error."""
        return sum(self.train_example(x, y, lr) for x, y in zip(xs, ys))
