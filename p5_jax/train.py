r"""Train P5 from gin files, t5x style.

  python -m p5_jax.train --gin_file=gin/runs/train.gin --gin_file=gin/models/tiny.gin \
    --gin.MIXTURE_OR_TASK_NAME="'p5_musical_instruments_all'" --gin.MODEL_DIR="'/tmp/x'" \
    --gin.TRAIN_STEPS=100

Writes TensorBoard events to MODEL_DIR/train, checkpoints to MODEL_DIR/checkpoints and the
operative gin config to MODEL_DIR/config.gin; a rerun with the same MODEL_DIR resumes.
"""
from __future__ import annotations

import itertools
import os
from collections.abc import Mapping

import gin
import jax
import seqio
from absl import logging

import p5_tasks  # noqa: F401  (registers the seqio tasks)
from p5_tasks import registration

from p5_jax import (checkpoints, feature_converter, gin_bindings, input_pipeline, partitioning, summaries, trainer, vocabulary)

gin_bindings.define_flags()


def _model_for(task_name: str):
    task = seqio.get_mixture_or_task(task_name)
    return gin_bindings.build_model(task.output_features["targets"].vocabulary)


def _dataset_fn(*, name, lengths, split, shuffle, seed, num_epochs):
    return input_pipeline.seqio_dataset_fn(
        mixture_or_task_name=name, task_feature_lengths=lengths, split=split,
        feature_converter=feature_converter.P5EncDecFeatureConverter(pack=False),
        shuffle=shuffle, seed=seed, num_epochs=num_epochs,
        process_index=jax.process_index(), process_count=jax.process_count())


@gin.configurable
def train(*, mixture_or_task_name: str = gin.REQUIRED,
          task_feature_lengths: Mapping[str, int] = gin.REQUIRED,
          train_steps: int = gin.REQUIRED, model_dir: str = gin.REQUIRED,
          batch_size: int = gin.REQUIRED, data_parallel: int = -1, model_parallel: int = 1,
          accumulation_steps: int = 1, seed: int = 0, log_every: int = 100,
          eval_every: int = 0, eval_steps: int = 20, checkpoint_every: int = 1000,
          keep_checkpoints: int = 3, sentencepiece_model_file: str | None = None,
          sequential_sampling: str = "p5", show_progress: bool = True):
    """Builds the mesh, model, optimizer, data and checkpoints, then runs `trainer.fit`.

    `sequential_sampling`: "p5" (targets from the last three training positions, as P5's code)
    or "all_prefixes" (any cut point: more distinct examples for small, data-hungry runs).
    """
    if sequential_sampling != "p5":
        registration.set_sequential_sampling(sequential_sampling)
    mesh = partitioning.make_mesh(data=data_parallel, model=model_parallel)
    partitioning.check_batch_size(batch_size=batch_size, mesh=mesh,
                                  accumulation_steps=accumulation_steps)
    if sentencepiece_model_file:
        vocabulary.use_sentencepiece_file(sentencepiece_model_file)
    schedule = gin_bindings.make_schedule(total_steps=train_steps)
    train_state = trainer.Trainer(
        model=_model_for(mixture_or_task_name), optimizer=gin_bindings.make_adamw(
            learning_rate=schedule), mesh=mesh, batch_size=batch_size,
        input_length=task_feature_lengths["inputs"], target_length=task_feature_lengths["targets"],
        learning_rate_fn=schedule, accumulation_steps=accumulation_steps, dropout_seed=seed)
    host_batch = input_pipeline.host_batch_size(global_batch_size=batch_size,
                                                process_count=jax.process_count())
    common = dict(name=mixture_or_task_name, lengths=task_feature_lengths, seed=seed)
    batches = input_pipeline.BatchIterator(
        dataset_fn=_dataset_fn(split="train", shuffle=True, num_epochs=None, **common),
        batch_size=host_batch)
    eval_fn = None
    if eval_every:
        eval_dataset = _dataset_fn(split="validation", shuffle=False, num_epochs=None, **common)
        eval_fn = _cached_batches(lambda: itertools.islice(input_pipeline.BatchIterator(
            dataset_fn=eval_dataset, batch_size=host_batch), eval_steps))
    _write_operative_config(model_dir)
    log = summaries.TrainingLog(logdir=os.path.join(model_dir, "train"), total_steps=train_steps,
                                show_progress=show_progress)
    with checkpoints.Checkpointer(directory=os.path.join(model_dir, "checkpoints"),
                                  save_every=checkpoint_every, keep=keep_checkpoints) as ckpt:
        state = trainer.fit(trainer=train_state, batches=batches, total_steps=train_steps,
                            seed=seed, checkpointer=ckpt, log=log, log_every=log_every,
                            eval_every=eval_every, eval_batches_fn=eval_fn)
    log.close()
    return state


def _cached_batches(make_batches):
    """The same fixed validation batches every time, read once (a mixture is slow to start)."""
    cache = []

    def batches():
        if not cache:
            cache.extend(make_batches())
        return cache

    return batches


def _write_operative_config(model_dir: str) -> None:
    if jax.process_index() == 0:
        os.makedirs(model_dir, exist_ok=True)
        with open(os.path.join(model_dir, "config.gin"), "w") as f:
            f.write(gin.config_str())


def main(argv):
    gin_bindings.start_job(argv)
    logging.info("Devices: %d over %d processes.", jax.device_count(), jax.process_count())
    train()


def run():
    gin_bindings.run_entry_point(main)


if __name__ == "__main__":
    run()
