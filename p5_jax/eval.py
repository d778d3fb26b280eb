r"""Evaluate a checkpoint on the test split (or the validation split) of a seqio mixture or
task, t5x style.

  python -m p5_jax.eval --gin_file=gin/runs/eval.gin --gin_file=gin/models/tiny.gin \
    --gin.CHECKPOINT_PATH="'/tmp/run'" --gin.MIXTURE_OR_TASK_NAME="'p5_musical_instruments_all'" \
    [--gin.EVAL_OUTPUT_DIR="'/tmp/run/eval'"] [--gin.MAX_USERS_PER_TASK=200] \
    [--gin.PROTOCOLS="['exact', 'p5']"] [--gin.evaluate.split="'validation'"]

Writes results.json, results.md, metrics.png and predictions/<task>.jsonl (see p5_jax.eval_results)
per protocol (see p5_jax.protocols).
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence

import gin
import jax
import seqio
from absl import logging

import p5_tasks  # noqa: F401  (registers the seqio tasks)
from p5_jax import (
    batch_decoding,
    eval_baselines,
    eval_lengths,
    eval_results,
    evaluation,
    gin_bindings,
    heap,
    inference,
    partitioning,
    paths,
    sequence_options,
)
from p5_tasks import catalog

gin_bindings.define_flags()
SPLITS = ("test", "validation")


def build_model(task_name: str):
    """The gin-configured model, sized to the task's vocabulary as training sizes it."""
    return gin_bindings.build_model(_vocabulary(task_name))


def _vocabulary(task_name: str):
    return seqio.get_mixture_or_task(task_name).output_features["targets"].vocabulary


def _baselines_fn(seed, split):
    def baselines_for(dataset, outputs):
        loaders = eval_baselines.prepared_training_data(root=paths.prepared_root(),
                                                        dataset=dataset, split=split)
        return eval_baselines.family_baselines(outputs=outputs, seed=seed, **loaders)
    return baselines_for


def data_flags(dataset: str) -> dict:
    """The prepared dataset's split and indexing, with a warning for each known leak."""
    manifest = catalog.manifest(dataset)
    review_split = manifest.get("review_split", "p5 (prepared before aligned splits)")
    flags = {"indexing": manifest.get("indexing"), "review_split": review_split, "warnings": []}
    if manifest.get("leaks_test_items"):
        flags["warnings"].append("item ids follow the source numbering, which leaks test items")
    if manifest.get("leaks_held_out_items", "review_split" not in manifest):
        flags["warnings"].append(
            "reviews were split independently of the leave-one-out split (P5's split): held-out "
            "sequential/direct items appear in rating, explanation or review training prompts")
    return flags


def _use_max_history(max_history: int | None, directory) -> int:
    return sequence_options.use_for_checkpoint(max_history, directory, setting="evaluate.max_history")


def _output_dir(base: str, protocol: str, protocol_names) -> str:
    return base if len(protocol_names) == 1 else os.path.join(base, protocol)


@gin.configurable(denylist=["show_progress"])
def evaluate(*, checkpoint_path: str = gin.REQUIRED, mixture_or_task_name: str = gin.REQUIRED,
             output_dir: str | None = None, task_feature_lengths: Mapping[str, int] = gin.REQUIRED,
             batch_size: int = 32, max_users_per_task: int | None = None,
             protocols: Sequence[str] = ("exact",), fit_candidates: bool = True,
             min_candidate_share: float = 0.9, bootstrap_resamples: int = 1000,
             num_beams: int = 20, beam_alpha: float = 0.6, include_unseen: bool = True,
             zero_shot_domain: bool = False, data_parallel: int = -1, model_parallel: int = 1,
             candidate_chunk_size: int = 0,
             max_attention_cells: int = batch_decoding.ATTENTION_CELLS, seed: int = 0,
             sentencepiece_model_file: str | None = None, title: str | None = None,
             on_truncation: str = "error", max_history: int | None = None,
             pad_to_input_length: bool = False, split: str = "test",
             show_progress: bool = True) -> dict:
    """Restores the parameters, decodes every task under each protocol, writes the reports
    (into `output_dir`, or `output_dir/<protocol>` for several protocols); returns written paths.

    `on_truncation`: "error" stops at a task whose input length drops candidates or history
    items; "warn" evaluates it and records the ids shown (see p5_jax.eval_lengths).
    `max_history`: history items a sequential prompt shows; default the length the checkpoint's
    run trained with (its MODEL_DIR/sequences.json), else 20.
    `pad_to_input_length`: every batch of a task takes the task's full input length instead of
    its longest prompt's rounded up to 64: one compilation per task instead of one per length
    met, but short prompts run at full length (about 2x slower on the demo).
    `split`: "test", or "validation" to choose among checkpoints without reading the test
    split (each user's second-to-last item, after the training items)."""
    p5_tasks.require_known(mixture_or_task_name, several=True, error=gin_bindings.JobError)
    task_feature_lengths = gin_bindings.require_feature_lengths(task_feature_lengths)
    eval_lengths.check_policy(on_truncation, name="evaluate.on_truncation",
                              error=gin_bindings.JobError)
    protocols = tuple(protocols)
    if split not in SPLITS:
        raise gin_bindings.JobError(f"evaluate.split: {split!r} is not one of {list(SPLITS)}")
    names = evaluation.task_names(mixture_or_task_name, include_unseen=include_unseen)
    # Each process decodes its share of the batches on its own devices (p5_jax.multihost).
    mesh = partitioning.make_mesh(data=data_parallel, model=model_parallel,
                                  devices=jax.local_devices())
    directory = inference.checkpoint_dir(checkpoint_path)
    max_history = _use_max_history(max_history, directory)
    model = gin_bindings.model_for_checkpoint(directory, lambda: _vocabulary(names[0]),
                                              sentencepiece_model_file=sentencepiece_model_file)
    params, step = inference.restore_params(
        path=directory, abstract=inference.abstract_params(model=model, mesh=mesh))
    logging.info("Restored step %d from %s; %d tasks.", step, directory, len(names))
    config = evaluation.EvalConfig(
        batch_size=batch_size, max_users=max_users_per_task,
        feature_lengths=dict(task_feature_lengths), fit_candidates=fit_candidates,
        min_candidate_share=min_candidate_share, bootstrap_resamples=bootstrap_resamples,
        num_beams=num_beams, alpha=beam_alpha, candidate_chunk_size=candidate_chunk_size,
        max_attention_cells=max_attention_cells, seed=seed, progress=show_progress,
        on_truncation=on_truncation, pad_to_input_length=pad_to_input_length, split=split)
    predictor = inference.Predictor(model=model, params=params, mesh=mesh)
    heap.return_freed_memory_promptly()
    settings = {"checkpoint": str(directory), "step": step, "mixture": mixture_or_task_name,
                "max_users_per_task": max_users_per_task, "seed": seed, "num_beams": num_beams,
                "task_feature_lengths": dict(task_feature_lengths),
                "fit_candidates": fit_candidates, "on_truncation": on_truncation,
                "zero_shot_domain": zero_shot_domain, "max_history": max_history, "split": split}
    base = output_dir or os.path.join(checkpoint_path, "eval", mixture_or_task_name)
    with tempfile.TemporaryDirectory(prefix="p5_eval_rows_") as spill_dir:
        try:
            by_protocol = evaluation.evaluate_tasks(
                predictor=predictor, task_names=names, config=config, protocol_names=protocols,
                zero_shot_domain=zero_shot_domain, spill_dir=spill_dir)
        except eval_lengths.TruncationError as error:
            raise gin_bindings.JobError(f"{error} (set TASK_FEATURE_LENGTHS), or evaluate with "
                                        "--gin.evaluate.on_truncation=\"'warn'\"") from error
        if jax.process_index() != 0:
            return {}
        return {protocol: _write(_output_dir(base, protocol, protocols), outputs,
                                 settings=settings, seed=seed, protocol=protocol, title=title,
                                 split=split)
                for protocol, outputs in by_protocol.items()}


def _write(out_dir: str, outputs, *, settings, seed: int, protocol: str, title,
           split: str) -> dict:
    """One protocol's reports and predictions (printing each results.md); their paths."""
    files_by_dataset = eval_results.write_results(
        out_dir=out_dir, outputs=outputs, settings=settings, baselines_fn=_baselines_fn(seed, split),
        flags_fn=data_flags, protocol=protocol, title=title)
    for dataset, files in files_by_dataset.items():
        print(files["markdown"].read_text())
        print(f"{dataset} ({protocol}): wrote " + ", ".join(str(p) for p in files.values()))
    return files_by_dataset


def main(argv):
    gin_bindings.start_job(argv)
    evaluate()


def run():
    gin_bindings.run_entry_point(main)


if __name__ == "__main__":
    run()
