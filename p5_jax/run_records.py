"""Files a training run records in its MODEL_DIR, beside `MODEL_DIR/checkpoints/`, and how
a checkpoint path (MODEL_DIR, its checkpoints folder or one step's folder) finds them.

A run keeps a copy of the SentencePiece model its tasks tokenized with in `MODEL_DIR/spiece.model`,
so that a later run or an evaluation reads its checkpoints with the same vocabulary
(`p5_jax.sequence_options` records the history length the same way).
"""
from __future__ import annotations

import pathlib

from p5_jax import atomic_files

SENTENCEPIECE_FILE = "spiece.model"


def record_sentencepiece_model(*, model_dir, model_file) -> pathlib.Path:
    """Copies the SentencePiece model a run tokenizes with to MODEL_DIR/spiece.model
    (atomically; nothing is written when an identical copy is already there)."""
    target = pathlib.Path(model_dir) / SENTENCEPIECE_FILE
    source = pathlib.Path(model_file)
    if target.is_file() and target.read_bytes() == source.read_bytes():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    return atomic_files.write_atomically(target, source.read_bytes())


def recorded_run_file(checkpoint_directory, name: str) -> pathlib.Path | None:
    """The file `name` the run that wrote `checkpoint_directory` (its MODEL_DIR/checkpoints
    folder, or one step's folder in it) recorded in its MODEL_DIR, or None when it recorded
    none."""
    directory = pathlib.Path(checkpoint_directory)
    if directory.name.isdigit() and directory.parent.name == "checkpoints":
        directory = directory.parent
    model_dir = directory.parent if directory.name == "checkpoints" else directory
    candidate = model_dir / name
    return candidate if candidate.is_file() else None


def recorded_sentencepiece_model(checkpoint_directory) -> pathlib.Path | None:
    """The SentencePiece model recorded by the run that wrote `checkpoint_directory`, if any."""
    return recorded_run_file(checkpoint_directory, SENTENCEPIECE_FILE)
