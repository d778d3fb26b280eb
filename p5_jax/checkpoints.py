"""Orbax checkpoints holding the train state together with the input pipeline's position.

Orbax writes each step into a temporary directory and renames it when complete, so a save that was
interrupted never shows up as a step and `latest_step` skips it.

A training run also keeps a copy of the SentencePiece model its tasks tokenized with in
`MODEL_DIR/spiece.model` (beside `MODEL_DIR/checkpoints/`), so a later run can start from its
checkpoints with the same vocabulary.
"""
from __future__ import annotations

import os
import pathlib
import shutil
import tempfile

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import traverse_util

STATE_ITEM = "state"
DATA_ITEM = "data_position"
SENTENCEPIECE_FILE = "spiece.model"


class Checkpointer:
    """Saves every `save_every` steps (and whenever `force=True`), keeping the last `keep`."""

    def __init__(self, *, directory: str | os.PathLike, save_every: int, keep: int | None = 3,
                 async_save: bool = True):
        if save_every <= 0:
            raise ValueError(f"save_every must be positive, got {save_every}.")
        if keep is not None and keep <= 0:
            raise ValueError(f"keep must be positive or None, got {keep}.")
        options = ocp.CheckpointManagerOptions(
            save_interval_steps=1, max_to_keep=keep, create=True,
            enable_async_checkpointing=async_save)
        self.directory, self.save_every = os.fspath(directory), save_every
        self._manager = ocp.CheckpointManager(
            os.path.abspath(self.directory), options=options, item_names=(STATE_ITEM, DATA_ITEM))

    def latest_step(self) -> int | None:
        """The newest complete checkpoint, or None."""
        self._manager.reload()
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        self._manager.reload()
        return sorted(self._manager.all_steps())

    def save(self, *, step: int, state, data_position: dict, force: bool = False) -> bool:
        """Saves when the step is due (or forced); returns whether a save started."""
        if not isinstance(data_position, dict):
            raise TypeError(f"data_position must be a JSON-able dict, got {type(data_position)}.")
        if not (force or step % self.save_every == 0) or step in self._manager.all_steps():
            return False
        args = ocp.args.Composite(**{STATE_ITEM: ocp.args.StandardSave(state),
                                     DATA_ITEM: ocp.args.JsonSave(data_position)})
        return self._manager.save(step, args=args, force=True)

    def restore(self, *, abstract_state, step: int | None = None):
        """Returns (state, data_position) of `step` (default: latest), sharded like `abstract_state`.

        `abstract_state` is a tree of `jax.ShapeDtypeStruct` with shardings
        (see `Trainer.abstract_state`).
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"No complete checkpoint in {self.directory}.")
        args = ocp.args.Composite(**{STATE_ITEM: ocp.args.StandardRestore(abstract_state),
                                     DATA_ITEM: ocp.args.JsonRestore()})
        restored = self._manager.restore(step, args=args)
        return restored[STATE_ITEM], dict(restored[DATA_ITEM])

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


# -- reading a run's checkpoints without a train state ------------------------------------------
def _reader(directory) -> ocp.CheckpointManager:
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
        return manager.latest_step()
    finally:
        manager.close()


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


# -- the run's SentencePiece model -----------------------------------------------------------------
def record_sentencepiece_model(*, model_dir, model_file) -> pathlib.Path:
    """Copies the SentencePiece model a run tokenizes with to MODEL_DIR/spiece.model
    (atomically; nothing is written when an identical copy is already there)."""
    target = pathlib.Path(model_dir) / SENTENCEPIECE_FILE
    source = pathlib.Path(model_file)
    if target.is_file() and target.read_bytes() == source.read_bytes():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, prefix=".spiece.", delete=False) as tmp:
        with source.open("rb") as original:
            shutil.copyfileobj(original, tmp)
    os.replace(tmp.name, target)
    return target


def recorded_sentencepiece_model(checkpoint_directory) -> pathlib.Path | None:
    """The SentencePiece model recorded by the run that wrote `checkpoint_directory` (its
    MODEL_DIR/checkpoints folder), or None when that run recorded none."""
    directory = pathlib.Path(checkpoint_directory)
    model_dir = directory.parent if directory.name == "checkpoints" else directory
    candidate = model_dir / SENTENCEPIECE_FILE
    return candidate if candidate.is_file() else None
