"""Masks: which parameter leaves a transform applies to.

A *mask* answers, for each trainable leaf, "does this transform touch it?".
``True`` means the transform applies; ``False`` means the leaf's update passes
through unchanged. A mask can be given as:

* ``None``: every leaf (the default);
* a glob pattern, or a list/tuple of them, matched with :func:`fnmatch.fnmatchcase`
  against the leaf's dotted path (``"0.w"``, ``"3.1.b"``): the transform applies to
  leaves matching *any* pattern. ``*`` also matches dots, so ``"*.b"`` is every
  field named ``b`` at any depth;
* a callable ``mask(path, leaf) -> bool``, where ``leaf`` is the parameter array
  (or the gradient when ``update`` is called without params: only its shape and
  dtype should matter to the mask).

>>> m = exclude_paths("*.b")
>>> m("0.w", None), m("0.b", None)
(True, False)
>>> path_mask("0.*", "4.w")("4.w", None)
True
"""
from __future__ import annotations

import fnmatch
from typing import Any, Callable, Sequence, Union

import attrs
import numpy as np

__all__ = ["Mask", "path_mask", "exclude_paths"]

Mask = Union[None, str, Sequence[str], Callable[[str, Any], bool]]


@attrs.frozen
class _PathMask:
    """A mask built from glob patterns; ``exclude=True`` inverts it."""

    patterns: tuple
    exclude: bool = False

    def matches(self, path: str) -> bool:
        return any(fnmatch.fnmatchcase(path, p) for p in self.patterns)

    def __call__(self, path: str, leaf: Any = None) -> bool:
        return self.matches(path) != self.exclude

    def __repr__(self) -> str:
        name = "exclude_paths" if self.exclude else "path_mask"
        return f"{name}({', '.join(repr(p) for p in self.patterns)})"


def _patterns(patterns: Sequence[Any], where: str, arg: str = "patterns") -> tuple:
    if len(patterns) == 1 and isinstance(patterns[0], (list, tuple)):
        patterns = tuple(patterns[0])
    if not patterns:
        raise ValueError(f"{where}: needs at least one glob pattern such as '*.b' in {arg}, got none")
    for p in patterns:
        if not isinstance(p, str):
            raise TypeError(f"{where}: {arg} must be strings such as '*.b', got {p!r} ({type(p).__name__})")
    return tuple(patterns)


def path_mask(*patterns: str) -> Callable[[str, Any], bool]:
    """A mask that is ``True`` on leaves whose dotted path matches any pattern.

    Args:
        *patterns: glob patterns (or one list of them), e.g. ``"*.w"``, ``"0.*"``.

    Returns:
        A callable ``(path, leaf) -> bool``.
    """
    return _PathMask(_patterns(patterns, "path_mask"), exclude=False)


def exclude_paths(*patterns: str) -> Callable[[str, Any], bool]:
    """A mask that is ``True`` everywhere *except* on paths matching a pattern.

    ``adamw(1e-3, mask=exclude_paths("*.b"))`` decays every weight but the biases.
    """
    return _PathMask(_patterns(patterns, "exclude_paths"), exclude=True)


def resolve_mask(mask: Mask, where: str) -> Callable[[str, Any], bool] | None:
    """Normalize a mask argument to a callable, or ``None`` for "all leaves"."""
    if mask is None:
        return None
    if isinstance(mask, str):
        return _PathMask((mask,))
    if isinstance(mask, (list, tuple)):
        return _PathMask(_patterns(tuple(mask), where, "mask"))
    if callable(mask):
        return mask
    raise TypeError(
        f"{where}: mask must be None, a glob pattern, a list of patterns or a callable "
        f"(path, leaf) -> bool, got {type(mask).__name__}"
    )


def evaluate_mask(mask: Callable[[str, Any], bool], path: str, leaf: Any, where: str) -> bool:
    """Call ``mask(path, leaf)`` and insist on a plain boolean answer."""
    answer = mask(path, leaf)
    if not isinstance(answer, (bool, np.bool_)):
        got = f"array of shape {answer.shape}" if isinstance(answer, np.ndarray) else repr(answer)
        raise TypeError(
            f"{where}: mask({path!r}, leaf) must return a bool, got {got} ({type(answer).__name__})"
        )
    return bool(answer)


def check_mask_matches(mask: Callable[[str, Any], bool], paths: Sequence[str], where: str) -> None:
    """A pattern mask that matches no trainable path is almost surely a typo: raise."""
    if isinstance(mask, _PathMask) and paths and not any(mask.matches(p) for p in paths):
        shown = ", ".join(paths[:12]) + (", ..." if len(paths) > 12 else "")
        raise ValueError(
            f"{where}: mask {mask!r} matches no trainable parameter path; the paths are: {shown}"
        )
