"""Checkpoints: params, optimizer state, rng and step in one ``.npz``, written atomically.

A checkpoint is a zip of ``.npy`` members, readable by ``np.load(path)``: one member
per array leaf, keyed by group and tree path (``"params/0.w"``, ``"opt_state/1.mu.0.w"``),
and ``"manifest.json"``, a uint8 array holding UTF-8 JSON: format and version, step,
config, extra, the rng's bit-generator state, every key with its dtype, shape and leaf
kind, and a sha256 over all of it, checked on load. Nothing is pickled, and a member
that would need unpickling is refused unread.

The file appears whole or not at all: it is written to a temporary file in the same
folder, flushed, fsynced, moved over ``path`` with ``os.replace``, and the folder is
fsynced. On any error the temporary file is removed and a previous checkpoint at
``path`` is left as it was.

>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "ckpt.npz")
>>> _ = save_checkpoint(path, params=(np.ones(2, np.float32), None), step=7)
>>> ck = load_checkpoint(path, params_like=(np.zeros(2, np.float32), None))
>>> ck.step, ck.params
(7, (array([1., 1.], dtype=float32), None))
"""
from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path
from typing import Any, BinaryIO, Callable, Dict, List, Optional, Tuple

import attrs
import numpy as np

from ._atomic import atomic_write
from ._checks import positive_int
from ._npz import CheckpointError, open_arrays, some
from .tree import tree_leaves_with_paths, tree_structure, tree_unflatten

__all__ = ["Checkpoint", "CheckpointError", "save_checkpoint", "load_checkpoint"]

FORMAT = "functional_cnn.checkpoint"
VERSION = 1
MANIFEST = "manifest.json"
GROUPS = ("params", "opt_state")
_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")


@attrs.frozen(eq=False)
class Checkpoint:
    """What :func:`load_checkpoint` returns.

    Attributes:
        params, opt_state: rebuilt in the templates' structure, or, without a
            template, dicts ``{path: leaf}`` (``None`` when saved as ``None``).
        rng: a Generator continuing the saved stream, or None.
        step: the step saved. config, extra: the saved JSON values.
        manifest: the parsed manifest.
    """

    params: Any
    opt_state: Any
    rng: Optional[np.random.Generator]
    step: int
    config: Any
    extra: Any
    manifest: Dict[str, Any]


def _leaf_array(leaf: Any, where: str) -> Tuple[np.ndarray, str]:
    """A leaf as (array, kind), so that ``_RESTORE[kind]`` gives back the same value."""
    if isinstance(leaf, np.ndarray):
        arr, kind = leaf, "ndarray"
    elif isinstance(leaf, np.generic):
        arr, kind = np.asarray(leaf), "numpy_scalar"
    elif isinstance(leaf, (bool, int, float)):
        try:
            kind = type(leaf).__name__
            arr = np.asarray(leaf, dtype={"bool": np.bool_, "int": np.int64, "float": np.float64}[kind])
        except OverflowError as err:
            raise ValueError(f"save_checkpoint: {where} = {leaf} does not fit in int64") from err
    else:
        raise TypeError(f"save_checkpoint: leaf {where} must be an array or a number, got {type(leaf).__name__}")
    if arr.dtype.kind not in "biufc":
        raise TypeError(f"save_checkpoint: leaf {where} has dtype {arr.dtype}; only bool, int, float and complex "
                        f"arrays are stored (never pickled objects)")
    return arr, kind


# How a stored array becomes the leaf that was saved, by the leaf's kind.
_RESTORE: Dict[str, Callable[[np.ndarray], Any]] = {
    "ndarray": lambda a: a, "numpy_scalar": lambda a: a[()],
    "int": lambda a: int(a[()]), "float": lambda a: float(a[()]), "bool": lambda a: bool(a[()]),
}


def _json_value(value: Any, where: str) -> Any:
    """``value`` through a JSON round trip (numpy scalars and arrays become numbers and lists)."""
    def default(o: Any) -> Any:
        if isinstance(o, (np.generic, np.ndarray)):
            return o.tolist()
        raise TypeError(f"{type(o).__name__} is not JSON-serialisable")
    try:
        return json.loads(json.dumps(value, default=default))
    except (TypeError, ValueError) as err:
        raise TypeError(f"save_checkpoint: {where} must be JSON-serialisable: {err}") from err


def _rng_state(rng: Any) -> Optional[Dict[str, Any]]:
    if rng is None:
        return None
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"save_checkpoint: rng must be a numpy.random.Generator or None, got {type(rng).__name__}")
    bg = rng.bit_generator
    state = {"state": _json_value(bg.state, "rng state")}
    ss = getattr(bg, "seed_seq", None)
    if isinstance(ss, np.random.SeedSequence):  # lets rng.spawn() continue as before
        state["seed_seq"] = {"entropy": _json_value(ss.entropy, "rng entropy"), "spawn_key": list(ss.spawn_key),
                             "pool_size": ss.pool_size, "n_children_spawned": ss.n_children_spawned}
    return state


def _arrays_like(fresh: Any, saved: Any) -> Any:
    """``saved`` (parsed JSON) with lists turned back into arrays where ``fresh`` has arrays."""
    if isinstance(fresh, dict) and isinstance(saved, dict):
        return {k: _arrays_like(fresh.get(k), v) for k, v in saved.items()}
    if isinstance(fresh, np.ndarray):
        return np.asarray(saved, dtype=fresh.dtype)
    return saved


def _make_rng(saved: Dict[str, Any]) -> np.random.Generator:
    state = dict(saved["state"])
    name = state.get("bit_generator")
    if name not in _BIT_GENERATORS:
        raise ValueError(f"unknown bit generator {name!r}")
    ss = saved.get("seed_seq")
    if ss and not (isinstance(ss["pool_size"], int) and 4 <= ss["pool_size"] <= 1024):  # it sizes an allocation
        raise ValueError(f"implausible SeedSequence pool_size {ss['pool_size']!r}")
    seed = np.random.SeedSequence(ss["entropy"], spawn_key=tuple(ss["spawn_key"]), pool_size=ss["pool_size"],
                                  n_children_spawned=ss["n_children_spawned"]) if ss else 0
    bg = getattr(np.random, name)(seed)
    bg.state = _arrays_like(bg.state, state)
    return np.random.Generator(bg)


def _digest(arrays: List[Tuple[str, np.ndarray]], manifest: Dict[str, Any]) -> str:
    h = hashlib.sha256()
    for key, arr in arrays:
        h.update(f"{key}\0{arr.dtype.str}\0{arr.shape}\0".encode())
        c = np.ascontiguousarray(arr)
        h.update(memoryview(c).cast("B") if c.size else b"")  # the bytes in C order, without a copy
    body = {k: v for k, v in manifest.items() if k != "sha256"}
    h.update(json.dumps(body, sort_keys=True).encode())
    return h.hexdigest()


def _write_member(zf: zipfile.ZipFile, key: str, arr: np.ndarray) -> None:
    info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))  # fixed: equal inputs, equal files
    info.external_attr = 0o644 << 16
    with zf.open(info, "w", force_zip64=True) as member:
        np.lib.format.write_array(member, arr if arr.flags.c_contiguous else arr.copy(order="C"), allow_pickle=False)


def _check_finite(entries: List[Tuple[str, np.ndarray, str]], step: int) -> None:
    """Refuse the first leaf holding NaN or Inf: such a checkpoint could never be resumed usefully."""
    for key, arr, _ in entries:
        if arr.dtype.kind in "fc" and arr.size and not np.isfinite(arr).all():
            bad = ~np.isfinite(arr)
            first = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), arr.shape))
            where = key.replace("/", ".", 1).rstrip(".")
            raise ValueError(
                f"save_checkpoint: {where} holds {int(bad.sum())} NaN/Inf value(s) of {arr.size} "
                f"(first {arr[first].item()} at index {first}) at step {step}; refusing to write a checkpoint that "
                f"cannot be resumed (allow_nonfinite=True writes it anyway)")


def save_checkpoint(path: Any, *, params: Any, opt_state: Any = None, rng: Optional[np.random.Generator] = None,
                    step: int = 0, config: Any = None, extra: Any = None, allow_nonfinite: bool = False) -> Path:
    """Write one ``.npz`` checkpoint atomically.

    Args:
        path: file to create or replace (``.npz`` by convention; used as given).
        params: tree of arrays (attrs records, tuples, dicts, None), state fields included.
        opt_state: optimizer state tree; numpy scalars and Python numbers come back
            as the same type and dtype.
        rng: a Generator whose ``bit_generator.state`` is saved (stream and spawning).
        step: training step, an int >= 0.
        config: a JSON-serialisable value (numpy scalars and arrays are turned into
            numbers and lists).
        extra: another JSON-serialisable value, converted the same way.
        allow_nonfinite: write float leaves holding NaN or Inf (refused by default:
            a diverged run must not overwrite the last good checkpoint).

    Returns:
        The absolute path written.

    Raises:
        TypeError: a leaf that is not a numeric array or number, a non-JSON config
            or extra, or an rng that is not a Generator, or a non-bool allow_nonfinite.
        ValueError: bad step, or a NaN/Inf leaf (naming its path, e.g.
            ``params.0.w``) unless ``allow_nonfinite``; nothing is written then.
        OSError: the file could not be written (nothing is left behind).
    """
    step = positive_int(step, "save_checkpoint", "step", minimum=0)
    entries: List[Tuple[str, np.ndarray, str]] = []
    for group, tree in zip(GROUPS, (params, opt_state)):
        for p, leaf in tree_leaves_with_paths(tree):
            arr, kind = _leaf_array(leaf, f"{group}.{p}" if p else group)
            entries.append((f"{group}/{p}", arr, kind))
    if not isinstance(allow_nonfinite, bool):
        raise TypeError(f"save_checkpoint: allow_nonfinite must be True or False, got {allow_nonfinite!r}")
    if not allow_nonfinite:
        _check_finite(entries, step)
    manifest: Dict[str, Any] = {
        "format": FORMAT, "version": VERSION, "step": step,
        "config": _json_value(config, "config"), "extra": _json_value(extra, "extra"),
        "rng": _rng_state(rng),
        "groups": {"params": params is not None, "opt_state": opt_state is not None},
        "arrays": [{"key": k, "dtype": a.dtype.str, "shape": list(a.shape), "kind": kind} for k, a, kind in entries],
    }
    manifest["sha256"] = _digest([(k, a) for k, a, _ in entries], manifest)
    blob = np.frombuffer(json.dumps(manifest, sort_keys=True, indent=1).encode(), dtype=np.uint8)

    def write(f: BinaryIO) -> None:
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as zf:
            for key, arr, _ in entries:
                _write_member(zf, key, arr)
            _write_member(zf, MANIFEST, blob)

    return atomic_write(path, write)


def _is_count(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _entry_ok(e: Any) -> bool:
    return (isinstance(e, dict) and isinstance(e.get("key"), str) and e["key"].partition("/")[0] in GROUPS
            and isinstance(e.get("dtype"), str) and isinstance(e.get("kind"), str) and e["kind"] in _RESTORE
            and isinstance(e.get("shape"), list) and all(map(_is_count, e["shape"])))


# The dtype kinds and shape each leaf kind must have.
_KIND_SPEC = {"int": ("i", True), "float": ("f", True), "bool": ("b", True), "numpy_scalar": ("biufc", True),
              "ndarray": ("biufc", False)}


def _parse_manifest(path: str, arrays: Dict[str, np.ndarray]) -> Dict[str, Any]:
    """The manifest, checked: its schema, the members against it, and the sha256 over both."""
    if MANIFEST not in arrays:
        raise CheckpointError(path, "format", f"an .npz without {MANIFEST}: not a functional_cnn checkpoint "
                              f"(members: {', '.join(sorted(arrays)[:8])})")
    blob = arrays.pop(MANIFEST)
    try:
        manifest = json.loads(blob.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise CheckpointError(path, "corrupt", f"{MANIFEST} is not valid JSON ({err})") from err
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(path, "format", f"{MANIFEST} does not describe a {FORMAT}")
    if not isinstance(manifest.get("version"), int) or manifest["version"] > VERSION:
        raise CheckpointError(path, "format", f"format version {manifest.get('version')!r}; "
                              f"this code reads <= {VERSION}")
    entries, groups = manifest.get("arrays"), manifest.get("groups", {})
    bad = [name for name, ok in (
        ("arrays", isinstance(entries, list) and all(map(_entry_ok, entries))),
        ("step", _is_count(manifest.get("step"))),
        ("groups", isinstance(groups, dict) and all(isinstance(v, bool) for v in groups.values())),
        ("rng", manifest.get("rng") is None or isinstance(manifest["rng"], dict))) if not ok]
    if bad:
        raise CheckpointError(path, "corrupt", f"{MANIFEST}: malformed field(s) {', '.join(bad)}")
    keys = [e["key"] for e in entries]
    try:
        specs = {e["key"]: (np.dtype(e["dtype"]), tuple(e["shape"])) for e in entries}
    except (TypeError, ValueError) as err:
        raise CheckpointError(path, "corrupt", f"{MANIFEST}: bad dtype ({err})") from err
    missing, unexpected = sorted(set(keys) - set(arrays)), sorted(set(arrays) - set(keys))
    wrong = [k for k in keys if k in arrays and (arrays[k].dtype, arrays[k].shape) != specs[k]]
    if missing or unexpected or wrong or len(specs) != len(keys):
        parts = [f"{label} {some(items)}" for label, items in (("missing", missing), ("unexpected", unexpected),
                 ("wrong dtype/shape", wrong), ("repeated", sorted(set(k for k in keys if keys.count(k) > 1))))
                 if items]
        raise CheckpointError(path, "corrupt", "members disagree with the manifest: " + "; ".join(parts))
    try:
        digest = _digest([(k, arrays[k]) for k in keys], manifest)
    except (ValueError, RecursionError) as err:
        raise CheckpointError(path, "corrupt", f"{MANIFEST} cannot be hashed ({err})") from err
    if digest != manifest.get("sha256"):
        raise CheckpointError(path, "corrupt", "sha256 mismatch: the contents changed after they were written")
    for e in entries:  # only a forged manifest (with a recomputed sha256) gets here wrong
        kinds, scalar = _KIND_SPEC[e["kind"]]
        if specs[e["key"]][0].kind not in kinds or (scalar and e["shape"]):
            raise CheckpointError(path, "corrupt", f"{MANIFEST}: {e['key']} of kind {e['kind']} cannot be "
                                  f"{e['dtype']} {tuple(e['shape'])}")
    return manifest


def _rebuild(path: str, group: str, flat: Dict[str, Any], present: bool, template: Any) -> Any:
    if not present and flat:
        raise CheckpointError(path, "corrupt", f"{group} is saved as None but has members {some(sorted(flat))}")
    if template is None:
        return dict(flat) if present else None
    want = tree_leaves_with_paths(template)
    missing = [p for p, _ in want if p not in flat]
    unexpected = sorted(set(flat) - {p for p, _ in want})
    differ = [f"{p} saved {np.shape(flat[p])} {np.asarray(flat[p]).dtype} vs template {np.shape(t)} "
              f"{np.asarray(t).dtype}" for p, t in want if p in flat
              and (np.shape(flat[p]) != np.shape(t) or np.asarray(flat[p]).dtype != np.asarray(t).dtype)]
    if missing or unexpected or differ:
        parts = [f"{label} {some(items)}" for label, items in
                 (("missing", missing), ("unexpected", unexpected), ("shape/dtype differ", differ)) if items]
        raise CheckpointError(path, "mismatch", f"{group} does not fit the template (another architecture?): "
                              + "; ".join(parts))
    return tree_unflatten(tree_structure(template), [flat[p] for p, _ in want])


def load_checkpoint(path: Any, *, params_like: Any = None, opt_state_like: Any = None) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`, verifying it first.

    Memory stays within about twice the file size: members claiming more bytes than the
    file could hold are refused before anything is read. Loading never writes or
    deletes anything (leftover ``.tmp`` files of killed writers are ignored).

    Args:
        path: the ``.npz`` file.
        params_like: an optional template (e.g. a fresh ``init`` result): the saved leaves
            are put back into its structure, and paths, shapes and dtypes must all agree.
            Without one, the params come back as ``{path: leaf}``.
        opt_state_like: the same, for the optimizer state.

    Returns:
        A :class:`Checkpoint`; its arrays are read-only.

    Raises:
        CheckpointError: with ``reason`` telling what is wrong (see its docstring); the
            message is one line naming the path; ``mismatch`` counts and names the first
            few missing, unexpected and differing leaves.
        OSError: the file exists but cannot be read (permissions, I/O error).
    """
    path = os.fspath(path)
    arrays = open_arrays(path)
    manifest = _parse_manifest(path, arrays)
    flat: Dict[str, Dict[str, Any]] = {g: {} for g in GROUPS}
    for entry in manifest["arrays"]:
        group, _, leaf_path = entry["key"].partition("/")
        flat[group][leaf_path] = _RESTORE[entry["kind"]](arrays[entry["key"]])
    groups = manifest.get("groups", {})
    params = _rebuild(path, "params", flat["params"], groups.get("params", True), params_like)
    opt_state = _rebuild(path, "opt_state", flat["opt_state"], groups.get("opt_state", True), opt_state_like)
    try:
        rng = _make_rng(manifest["rng"]) if manifest.get("rng") else None
    except Exception as err:  # noqa: BLE001 (a forged state can make a bit generator raise anything)
        raise CheckpointError(path, "corrupt", f"saved rng state cannot be restored ({err!r})") from err
    return Checkpoint(params, opt_state, rng, manifest["step"], manifest.get("config"), manifest.get("extra"),
                      manifest)
