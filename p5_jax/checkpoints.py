"""Orbax checkpoints holding the train state together with the input pipeline's position.

Orbax writes each step into a temporary directory and renames it when complete, so a save that was
interrupted never shows up as a step and `latest_step` skips it.
"""
from __future__ import annotations

import os

import orbax.checkpoint as ocp

STATE_ITEM = "state"
DATA_ITEM = "data_position"


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
