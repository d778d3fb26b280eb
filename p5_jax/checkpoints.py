"""Orbax checkpoints holding the train state together with the input pipeline's position.

Orbax writes each step into a temporary directory and renames it when complete, so a save that was
interrupted never shows up as a step and `latest_step` skips it.

Each step also records a 64-bit fingerprint of every array and a digest of the data position
(item `checksums`, part of the same atomic commit). `Checkpointer.restore` checks the step folder's
files, reads the step, recomputes the fingerprints and checks the data position; a step that fails
is reported on one line and the previous one is used (or `DamagedCheckpointError` is raised).

What a run records beside its checkpoints (its SentencePiece model, its history length) is in
`p5_jax.run_records`.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from flax import traverse_util

STATE_ITEM = "state"
DATA_ITEM = "data_position"
CHECKSUM_ITEM = "checksums"
ON_BAD_CHECKPOINT = ("fall_back", "stop")
# What a finished save leaves in a step folder (orbax 0.12 writes commit_success.txt last).
_STEP_FILES = ("commit_success.txt", "_CHECKPOINT_METADATA")
_ITEM_FILES = {STATE_ITEM: ("_METADATA", "manifest.ocdbt"), DATA_ITEM: ("metadata",),
               CHECKSUM_ITEM: ("metadata",)}
_JSON_FILES = ("_METADATA", "metadata")


class DamagedCheckpointError(Exception):
    """No usable checkpoint: the step asked for is damaged, or every step is. `message` is one
    line for an entry point to print."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class _Damage(Exception):
    """Why one step cannot be used (internal)."""


class Checkpointer:
    """Saves every `save_every` steps (and whenever `force=True`), keeping the last `keep`.

    `on_bad_checkpoint`: "fall_back" (restore the newest intact step, with a one-line warning
    per damaged newer one) or "stop" (raise `DamagedCheckpointError` at the first damaged step).
    """

    def __init__(self, *, directory: str | os.PathLike, save_every: int, keep: int | None = 3,
                 async_save: bool = True, on_bad_checkpoint: str = "fall_back"):
        if save_every <= 0:
            raise ValueError(f"save_every must be positive, got {save_every}.")
        if keep is not None and keep <= 0:
            raise ValueError(f"keep must be positive or None, got {keep}.")
        if on_bad_checkpoint not in ON_BAD_CHECKPOINT:
            raise ValueError(f"on_bad_checkpoint must be one of {ON_BAD_CHECKPOINT}, got "
                             f"{on_bad_checkpoint!r}.")
        options = ocp.CheckpointManagerOptions(
            save_interval_steps=1, max_to_keep=keep, create=True,
            enable_async_checkpointing=async_save)
        self.directory, self.save_every = os.fspath(directory), save_every
        self.on_bad_checkpoint = on_bad_checkpoint
        self._damaged: set[int] = set()  # found damaged by `restore`; a save of one replaces it
        _quiet_orbax_noise()
        self._manager = ocp.CheckpointManager(
            os.path.abspath(self.directory), options=options,
            item_names=(STATE_ITEM, DATA_ITEM, CHECKSUM_ITEM))

    def step_folders(self) -> list[int]:
        """Every step folder, finished or not (interrupted saves' temporary folders aside)."""
        self._manager.reload()
        return sorted(self._manager.all_steps())

    def all_steps(self) -> list[int]:
        """Steps whose folders hold every file a finished save writes (contents not read)."""
        return [step for step in self.step_folders()
                if step_folder_problem(self._step_dir(step)) is None]

    def latest_step(self) -> int | None:
        """The newest complete checkpoint, or None."""
        steps = self.all_steps()
        return steps[-1] if steps else None

    def save(self, *, step: int, state, data_position: dict, force: bool = False) -> bool:
        """Saves when the step is due (or forced); returns whether a save started.

        `data_position`: JSON, {name: count} with counts from 0 to `step` (the batches
        consumed), plus mappings the input stream restores itself from.
        """
        if not isinstance(data_position, dict):
            raise TypeError(f"data_position must be a JSON-able dict, got {type(data_position)}.")
        problem = _position_problem(data_position, step)
        if problem:
            raise ValueError(problem)
        if step in self._damaged:
            self._manager.delete(step)
            self._damaged.discard(step)
        if not (force or step % self.save_every == 0) or step in self._manager.all_steps():
            return False
        checksums = {STATE_ITEM: fingerprints(state), DATA_ITEM: _position_digest(data_position)}
        args = ocp.args.Composite(**{STATE_ITEM: ocp.args.StandardSave(state),
                                     DATA_ITEM: ocp.args.JsonSave(data_position),
                                     CHECKSUM_ITEM: ocp.args.JsonSave(checksums)})
        return self._manager.save(step, args=args, force=True)

    def restore(self, *, abstract_state, step: int | None = None):
        """Returns (state, data_position) of `step` (default: the newest intact step), sharded
        like `abstract_state` (a tree of `jax.ShapeDtypeStruct` with shardings, see
        `Trainer.abstract_state`).

        Raises `DamagedCheckpointError` when `step` is damaged, when the newest step is and
        `on_bad_checkpoint` is "stop", or when every step is: never a silent fresh start.
        """
        folders = self.step_folders()
        if not folders:
            raise FileNotFoundError(f"No complete checkpoint in {self.directory}.")
        if step is not None and step not in folders:
            raise FileNotFoundError(f"No checkpoint step {step} in {self.directory}.")
        damaged = []
        for candidate in [step] if step is not None else folders[::-1]:
            try:
                state, position = self._read(candidate, abstract_state)
            except _Damage as damage:
                self._damaged.add(candidate)
                damaged.append((candidate, str(damage)))
                if step is not None or self.on_bad_checkpoint == "stop":
                    raise DamagedCheckpointError(self._stop_message(candidate, damage)) from None
                continue
            for bad, reason in damaged:
                _warn(f"checkpoint step {bad} under {self.directory} is damaged ({reason}); "
                      f"using step {candidate}")
            return state, position
        listed = "; ".join(f"step {bad} ({reason})" for bad, reason in damaged)
        raise DamagedCheckpointError(
            f"every checkpoint under {self.directory} is damaged: {listed}; nothing was restored "
            f"(move the step folders aside to start over)")

    def _stop_message(self, step: int, damage: _Damage) -> str:
        message = f"checkpoint step {step} under {self.directory} is damaged ({damage})"
        if self.on_bad_checkpoint == "stop":
            message += "; not falling back to an earlier step (on_bad_checkpoint='stop')"
        return message

    def _step_dir(self, step: int) -> epath.Path:
        return self._manager.directory / str(step)

    def _read(self, step: int, abstract_state):
        """The verified (state, data position) of one step; raises `_Damage` saying why not."""
        folder = self._step_dir(step)
        problem = step_folder_problem(folder)
        if problem:
            raise _Damage(problem)
        verified = CHECKSUM_ITEM in _saved_items(folder)
        items = {STATE_ITEM: ocp.args.StandardRestore(abstract_state),
                 DATA_ITEM: ocp.args.JsonRestore()}
        if verified:
            items[CHECKSUM_ITEM] = ocp.args.JsonRestore()
        try:
            restored = self._manager.restore(step, args=ocp.args.Composite(**items))
        except Exception as error:  # orbax and TensorStore raise many kinds for bad files
            raise _Damage(f"unreadable: {_one_line(error)}") from None
        state, position = restored[STATE_ITEM], restored[DATA_ITEM]
        problem = _position_problem(position, step)
        if problem is None and verified:
            problem = _checksum_problem(restored[CHECKSUM_ITEM], state, position)
        if problem:
            raise _Damage(problem)
        if not verified:
            _warn(f"checkpoint step {step} under {self.directory} records no checksums (saved "
                  f"by an earlier version): restored unverified")
        return state, dict(position)

    def wait(self) -> None:
        """Blocks until a background save has been committed."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


# -- integrity checks ----------------------------------------------------------------------------
def step_folder_problem(folder) -> str | None:
    """Why a step folder is not a finished save (None when every file one writes is there)."""
    folder = epath.Path(folder)
    if not folder.is_dir():
        return "no such folder"
    if not any(folder.iterdir()):
        return "empty folder"
    for name in _STEP_FILES:
        if not (folder / name).exists():
            return f"missing {name}"
    try:
        items = _saved_items(folder)
    except ValueError as error:
        return f"unreadable _CHECKPOINT_METADATA: {_one_line(error)}"
    for item in (STATE_ITEM, DATA_ITEM) + ((CHECKSUM_ITEM,) if CHECKSUM_ITEM in items else ()):
        for name in _ITEM_FILES[item]:
            problem = _file_problem(folder / item / name, f"{item}/{name}")
            if problem:
                return problem
    return None


def saved_state_digest(folder) -> str | None:
    """A digest of the fingerprints a finished save of one step folder recorded (so two saves
    of different states differ), or None for a save that recorded none."""
    folder = epath.Path(folder)
    record = folder / CHECKSUM_ITEM / _ITEM_FILES[CHECKSUM_ITEM][0]
    if CHECKSUM_ITEM not in _saved_items(folder) or not record.exists():
        return None
    return hashlib.sha256(record.read_bytes()).hexdigest()


def _file_problem(path: epath.Path, name: str) -> str | None:
    """Missing, or (for the JSON metadata, which readers of the step's shapes need) unparsable."""
    if not path.exists():
        return f"missing {name}"
    if path.name in _JSON_FILES:
        try:
            json.loads(path.read_text())
        except ValueError as error:
            return f"unreadable {name}: {_one_line(error)}"
    return None


def _saved_items(folder: epath.Path) -> set[str]:
    """The items orbax's step metadata says were saved."""
    metadata = json.loads((folder / "_CHECKPOINT_METADATA").read_text())
    handlers = metadata.get("item_handlers") if isinstance(metadata, dict) else None
    if not isinstance(handlers, dict):
        raise ValueError("no item_handlers")
    return set(handlers)


def _position_problem(position, step: int) -> str | None:
    """Counts (batches consumed) run from 0 to the step; a mapping value is the input stream's
    own state, checked when the stream restores it."""
    if not isinstance(position, dict) or not position:
        return f"bad data position {_clip(position)}: not a non-empty mapping"
    for key, value in position.items():
        if isinstance(value, dict):
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= step:
            return (f"bad data position {key}={_clip(value)}: not a count from 0 to the "
                    f"step {step}")
    return None


def _position_digest(position: dict) -> str:
    return hashlib.sha256(json.dumps(position, sort_keys=True).encode()).hexdigest()


def _checksum_problem(record, state, position) -> str | None:
    if not isinstance(record, dict) or not isinstance(record.get(STATE_ITEM), dict):
        return "unreadable checksums"
    if record.get(DATA_ITEM) != _position_digest(position):
        return "checksum mismatch in the data position"
    actual, saved = fingerprints(state), record[STATE_ITEM]
    if set(actual) != set(saved):
        return "the checksums name other arrays than the state holds"
    bad = [path for path in actual if actual[path] != saved[path]]
    if not bad:
        return None
    more = f" and {len(bad) - 1} more arrays" if len(bad) > 1 else ""
    return f"checksum mismatch in {bad[0]}{more}"


def fingerprints(tree) -> dict[str, str]:
    """{leaf path: 64-bit fingerprint of its bits} (16 hex digits).

    Computed where the arrays live, in one jitted pass: no copy of the state to the host, works
    for arrays sharded over several hosts, and the same on any mesh (sums modulo 2**32 of a hash
    of each element with its flat index do not depend on the reduction order).
    """
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    leaves = [leaf for _, leaf in flat]
    digests = jax.device_get(_fingerprint_fn(_replicated(leaves))(leaves))
    return {"/".join(_key_name(key) for key in path): "".join(f"{int(w):08x}" for w in digest)
            for (path, _), digest in zip(flat, digests)}


def _key_name(key) -> str:
    for attribute in ("key", "name", "idx"):
        if hasattr(key, attribute):
            return str(getattr(key, attribute))
    return str(key)


def _replicated(leaves):
    """A replicated sharding on the leaves' mesh (so every host can read the result), or None."""
    for leaf in leaves:
        sharding = getattr(leaf, "sharding", None)
        if isinstance(sharding, jax.sharding.NamedSharding):
            return jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec())
    return None


@functools.lru_cache(maxsize=None)
def _fingerprint_fn(out_sharding):
    kwargs = {} if out_sharding is None else {"out_shardings": out_sharding}
    return jax.jit(lambda leaves: [_leaf_fingerprint(leaf) for leaf in leaves], **kwargs)


def _mix(h):
    """murmur3's 32-bit finaliser."""
    h = (h ^ (h >> 16)) * jnp.uint32(0x85EBCA6B)
    h = (h ^ (h >> 13)) * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def _words(x):
    """The bits of `x` as uint32 words (narrower types zero-extended)."""
    x = jnp.asarray(x)
    if x.dtype == jnp.bool_:
        return x.astype(jnp.uint32)
    if x.dtype.itemsize >= 4:
        return jax.lax.bitcast_convert_type(x, jnp.uint32)
    narrow = {2: jnp.uint16, 1: jnp.uint8}[x.dtype.itemsize]
    return jax.lax.bitcast_convert_type(x, narrow).astype(jnp.uint32)


def _leaf_fingerprint(x):
    words = _words(x)
    index, stride = jnp.zeros(words.shape, jnp.uint32), 1
    for axis in reversed(range(words.ndim)):
        iota = jax.lax.broadcasted_iota(jnp.uint32, words.shape, axis)
        index, stride = index + iota * jnp.uint32(stride % 2**32), stride * words.shape[axis]
    return jnp.stack([jnp.sum(_mix(words ^ _mix(index ^ jnp.uint32(seed))), dtype=jnp.uint32)
                      for seed in (0x9E3779B9, 0x7F4A7C15)])


# -- reporting -----------------------------------------------------------------------------------
def _warn(message: str) -> None:
    if jax.process_index() == 0:
        print(f"warning: {message}", file=sys.stderr, flush=True)


def _one_line(error: BaseException) -> str:
    """The root cause of an exception as a short line, TensorStore's spec left out."""
    while error.__cause__ is not None:
        error = error.__cause__
    text = str(error)
    for marker in (" [tensorstore_spec=", " [source locations="):
        text = text.split(marker)[0]
    text = " ".join(text.split())
    return f"{type(error).__name__}: {text[:240]}"


def _clip(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@functools.cache
def _quiet_orbax_noise() -> None:
    """Silences what orbax and TensorStore print about a damaged step, which `restore` reports
    on one line instead (installed once, process-wide, matching only these messages):

    - orbax closes its event loop at the first failed array read while TensorStore completes
      the others, each of which then reports `RuntimeError: Event loop is closed` or its own
      read error (unraisable exceptions), or asyncio's "exception was never retrieved";
    - every listing of the steps warns "Metadata file does not exist" for an unfinished folder.
    """
    previous = sys.unraisablehook

    def hook(unraisable):
        if not _from_abandoned_read(unraisable.exc_value):
            previous(unraisable)

    sys.unraisablehook = hook
    logging.getLogger("asyncio").addFilter(_keep_asyncio_record)
    logging.getLogger("absl").addFilter(_keep_absl_record)


# TensorStore's read errors come with or without its spec; a truncated OCDBT file can give a
# bare "OUT_OF_RANGE: Error reading ... in OCDBT database at ...".
_ABANDONED_READ_MARKERS = ("tensorstore_spec=", "source locations=", "TensorStore({",
                           "Encountered error while reading array index", " in OCDBT database at ")


def _from_abandoned_read(error: BaseException | None) -> bool:
    """Whether an error comes from an array read orbax gave up on after the first failure."""
    if isinstance(error, RuntimeError) and str(error) == "Event loop is closed":
        return True
    return error is not None and any(marker in str(error) for marker in _ABANDONED_READ_MARKERS)


def _keep_asyncio_record(record: logging.LogRecord) -> bool:
    error = record.exc_info[1] if record.exc_info else None
    abandoned = record.getMessage().split("\n")[0].endswith("exception was never retrieved")
    return not (abandoned and _from_abandoned_read(error))


def _keep_absl_record(record: logging.LogRecord) -> bool:
    return not (record.msg == "Metadata file does not exist: %s" and isinstance(record.args, tuple)
                and str(record.args[0]).endswith("/_CHECKPOINT_METADATA"))


# -- reading a run's checkpoints without a train state ------------------------------------------
def _reader(directory) -> ocp.CheckpointManager:
    _quiet_orbax_noise()
    options = ocp.CheckpointManagerOptions(create=False)
    return ocp.CheckpointManager(
        os.path.abspath(os.fspath(directory)), options=options,
        item_handlers={STATE_ITEM: ocp.PyTreeCheckpointHandler(),
                       DATA_ITEM: ocp.JsonCheckpointHandler()})


def latest_step(directory) -> int | None:
    """The newest complete step under `directory`, or None; creates nothing."""
    if not os.path.isdir(directory):
        return None
    manager = _reader(directory)
    try:
        steps = [step for step in manager.all_steps()
                 if step_folder_problem(manager.directory / str(step)) is None]
    finally:
        manager.close()
    return max(steps, default=None)


def param_shapes(*, directory, step: int) -> dict[tuple[str, ...], tuple[int, ...]]:
    """{parameter path: shape} of one saved train state, from its metadata (no array read)."""
    manager = _reader(directory)
    try:
        tree = manager.item_metadata(step)[STATE_ITEM]
    finally:
        manager.close()
    if tree is None or "params" not in tree:
        raise FileNotFoundError(f"{directory}/{step} holds no saved train state parameters.")
    flat = traverse_util.flatten_dict(dict(tree["params"]))
    return {path: tuple(meta.shape) for path, meta in flat.items()}


def read_params(*, directory, step: int, skip: tuple[tuple[str, ...], ...] = ()
                ) -> dict[tuple[str, ...], np.ndarray]:
    """The saved parameters as host numpy arrays, flat by path, leaving out the paths in `skip`.

    Only the parameters are read (not the optimizer state), into no particular device layout.
    """
    manager = _reader(directory)
    try:
        tree = manager.item_metadata(step)[STATE_ITEM]
        flat = {path: jax.ShapeDtypeStruct(meta.shape, meta.dtype)
                for path, meta in traverse_util.flatten_dict(dict(tree["params"])).items()
                if path not in skip}
        target = {"params": traverse_util.unflatten_dict(flat)}
        restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), target)
        restored = manager.restore(step, args=ocp.args.Composite(**{
            STATE_ITEM: ocp.args.PyTreeRestore(item=target, restore_args=restore_args,
                                               partial_restore=True)}))
    finally:
        manager.close()
    return traverse_util.flatten_dict(restored[STATE_ITEM]["params"])
