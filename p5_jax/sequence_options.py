"""The history length a run's sequential prompts were trained with, recorded beside its
checkpoints (MODEL_DIR/sequences.json) so that evaluating them shows histories of that length."""
from __future__ import annotations

import json
import os

from p5_jax import atomic_files, run_records
from p5_jax.cli_errors import JobError
from p5_tasks import registration
from p5_tasks.preprocessors import MAX_HISTORY

FILE = "sequences.json"


def trained_max_history(task_name: str) -> int:
    """The longest history shown by the registered datasets `task_name` reads."""
    datasets = registration.datasets_of(task_name)
    return max((registration.registered_spec(d).max_history for d in datasets),
               default=MAX_HISTORY)


def record(model_dir: str, task_name: str) -> None:
    """Writes MODEL_DIR/sequences.json for the tasks of `task_name` as registered now."""
    atomic_files.write_atomically(os.path.join(model_dir, FILE),
                                  json.dumps({"max_history": trained_max_history(task_name)}))


def recorded_max_history(checkpoint_directory) -> int | None:
    """The history length recorded by the run that wrote `checkpoint_directory`, or None."""
    path = run_records.recorded_run_file(checkpoint_directory, FILE)
    if path is None:
        return None
    return int(json.loads(path.read_text())["max_history"])


def use_for_checkpoint(max_history: int | None, checkpoint_directory, *,
                       setting: str = "max_history") -> int:
    """Registers the tasks with the history length to show: `max_history`, else the one the
    checkpoint's run recorded, else the tasks' default; returns it. A length under 1 is a
    JobError naming `setting`."""
    if max_history is None:
        max_history = recorded_max_history(checkpoint_directory)
    if max_history is not None:
        try:
            registration.set_sequence_options(max_history=max_history)
        except ValueError as error:
            raise JobError(f"{setting}: {error}") from error
    return max_history or MAX_HISTORY
