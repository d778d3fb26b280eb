r"""Recommendations, a predicted rating and an explanation for one user, printed as JSON.

  python -m p5_jax.infer --gin_file=gin/runs/infer.gin --gin_file=gin/models/tiny.gin \
    --gin.CHECKPOINT_PATH="'/tmp/run'" --gin.DATASET="'musical_instruments'" \
    --user=17 [--item=42] [--top_k=10]

An unknown user or item is an error (exit status 2) naming the dataset and a few valid ids;
so is an unknown or unprepared DATASET (see p5_jax.cli_errors).
"""
from __future__ import annotations

import json
from collections.abc import Mapping

import gin
from absl import flags, logging

import p5_tasks  # noqa: F401  (registers the seqio tasks)
from p5_jax import eval_lengths, gin_bindings, inference, partitioning, paths, recommend, sequence_options
from p5_tasks import catalog

gin_bindings.define_flags()
flags.DEFINE_string("user", None, "User id of the prepared dataset (required).")
flags.DEFINE_string("item", None, "Item id to rate and explain (default: the top item).")
flags.DEFINE_integer("top_k", 10, "How many items to recommend.")


@gin.configurable("infer")
def infer_settings(*, checkpoint_path: str = gin.REQUIRED, dataset: str = gin.REQUIRED,
                   task_feature_lengths: Mapping[str, int] = gin.REQUIRED,
                   data_parallel: int = -1, model_parallel: int = 1,
                   sentencepiece_model_file: str | None = None,
                   on_truncation: str = "error", max_history: int | None = None,
                   exclude_seen: bool = True) -> dict:
    """The gin-bound settings of `infer` (bound as `infer.*` in gin/runs/infer.gin).

    `max_history`: history items shown (default: the length the checkpoint's run trained with);
    `exclude_seen`: leave the user's own items out of the top-k, as the exact protocol does."""
    return dict(checkpoint_path=checkpoint_path, dataset=dataset,
                task_feature_lengths=task_feature_lengths, data_parallel=data_parallel,
                model_parallel=model_parallel, sentencepiece_model_file=sentencepiece_model_file,
                on_truncation=on_truncation, max_history=max_history, exclude_seen=exclude_seen)


def infer(*, user_id: str, item_id: str | None = None, top_k: int = 10, checkpoint_path: str,
          dataset: str, task_feature_lengths: Mapping[str, int], data_parallel: int = -1,
          model_parallel: int = 1, sentencepiece_model_file: str | None = None,
          on_truncation: str = "error", max_history: int | None = None,
          exclude_seen: bool = True) -> dict:
    """Restores the parameters and answers for one user (see p5_jax.recommend)."""
    p5_tasks.require_dataset(dataset, error=gin_bindings.JobError)
    task_feature_lengths = gin_bindings.require_feature_lengths(task_feature_lengths)
    eval_lengths.check_policy(on_truncation, name="infer.on_truncation",
                              error=gin_bindings.JobError)
    try:
        catalog.manifest(dataset)  # prepared? (the error names the command that prepares it)
        recommend.validate(root=paths.prepared_root(), dataset=dataset, user_id=user_id,
                           item_id=item_id)
    except (FileNotFoundError, recommend.UnknownIdError) as error:
        raise gin_bindings.JobError(str(error)) from error
    vocab = p5_tasks.OUTPUT_FEATURES["targets"].vocabulary
    directory = inference.checkpoint_dir(checkpoint_path)
    sequence_options.use_for_checkpoint(max_history, directory, setting="infer.max_history")
    model = gin_bindings.model_for_checkpoint(directory, lambda: vocab,
                                              sentencepiece_model_file=sentencepiece_model_file)
    mesh = partitioning.make_mesh(data=data_parallel, model=model_parallel)
    params, step = inference.restore_params(
        path=directory, abstract=inference.abstract_params(model=model, mesh=mesh))
    logging.info("Restored step %d from %s.", step, directory)
    predictor = inference.Predictor(model=model, params=params, mesh=mesh)
    try:
        answer = recommend.recommend(
            predictor=predictor, vocabulary=vocab, root=paths.prepared_root(), dataset=dataset,
            user_id=user_id, item_id=item_id, top_k=top_k,
            input_length=task_feature_lengths["inputs"],
            target_length=task_feature_lengths["targets"], on_truncation=on_truncation,
            exclude_seen=exclude_seen)
    except eval_lengths.TruncationError as error:
        raise gin_bindings.JobError(f"user {user_id}: {error} (set TASK_FEATURE_LENGTHS), or "
                                    "answer with --gin.infer.on_truncation=\"'warn'\"") from error
    return {**answer, "checkpoint": str(directory), "step": step}


def main(argv):
    if flags.FLAGS.user is None:
        raise gin_bindings.JobError("--user=ID is required (a user id of the prepared DATASET)")
    gin_bindings.start_job(argv, distributed=False)
    answer = infer(user_id=flags.FLAGS.user, item_id=flags.FLAGS.item, top_k=flags.FLAGS.top_k,
                   **infer_settings())
    print(json.dumps(answer, indent=2))


def run():
    gin_bindings.run_entry_point(main)


if __name__ == "__main__":
    run()
