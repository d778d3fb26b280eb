r"""Train P5 from gin files, t5x style.

  python -m p5_jax.train --gin_file=gin/runs/train.gin --gin_file=gin/models/tiny.gin \
    --gin.MIXTURE_OR_TASK_NAME="'p5_musical_instruments_all'" --gin.MODEL_DIR="'/tmp/x'" \
    --gin.TRAIN_STEPS=100

Writes TensorBoard events to MODEL_DIR/train, checkpoints to MODEL_DIR/checkpoints, the
operative gin config to MODEL_DIR/config.gin and the SentencePiece model the tasks tokenized with
to MODEL_DIR/spiece.model; a rerun with the same MODEL_DIR resumes.

INITIAL_CHECKPOINT (a Hugging Face T5 folder with config.json, model.safetensors and
spiece.model, or a p5-jax MODEL_DIR, its checkpoints/ folder or one step folder) starts a new
run from that checkpoint's weights and SentencePiece model: every parameter but the whole-word
table (which T5 lacks and which starts fresh), new optimizer state, step 0. Its architecture
must be the gin model's. A MODEL_DIR that already has checkpoints resumes and ignores it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import os
import pathlib
from collections.abc import Callable, Mapping

import gin
import jax
import numpy as np
import seqio
from absl import logging
from flax import traverse_util

import p5_tasks  # noqa: F401  (registers the seqio tasks)
from p5_jax import (
    checkpoints,
    gin_bindings,
    hf_weights,
    inference,
    input_pipeline,
    item_embeddings,
    models,
    network,
    partitioning,
    run_records,
    sequence_options,
    summaries,
    trainer,
    vocabulary,
)
from p5_tasks import rates, registration

gin_bindings.define_flags()


def _model_for(task_name: str, start: _Start | None = None):
    task = seqio.get_mixture_or_task(task_name)
    if start is None:
        return gin_bindings.build_model(task.output_features["targets"].vocabulary)
    return _model_of_checkpoint(start, task.output_features["targets"].vocabulary)


@gin.configurable
def train(*, mixture_or_task_name: str = gin.REQUIRED,
          task_feature_lengths: Mapping[str, int] = gin.REQUIRED,
          train_steps: int = gin.REQUIRED, model_dir: str = gin.REQUIRED,
          batch_size: int = gin.REQUIRED, data_parallel: int = -1, model_parallel: int = 1,
          accumulation_steps: int = 1, seed: int = 0, log_every: int = 100,
          eval_every: int = 0, eval_steps: int = 20, checkpoint_every: int = 1000,
          keep_checkpoints: int | None = 3, sentencepiece_model_file: str | None = None,
          sequential_sampling: str = "p5", show_progress: bool = True, pack: bool = True,
          initial_checkpoint: str | None = None, on_bad_checkpoint: str = "fall_back",
          item_tokens: bool = False, user_tokens: bool = False,
          prompt_kind_weights: Mapping[str, float] | None = None,
          max_history: int | None = None, continuation_items: int = 0,
          item_embedding_rank: int = 0, item_embedding_popularity: bool = False):
    """Builds the mesh, model, optimizer, data and checkpoints, then runs `trainer.fit`.

    `initial_checkpoint`: a Hugging Face T5 folder or a p5-jax checkpoint to start from (see the
    module docstring); ignored when `model_dir` already has checkpoints (the run resumes).
    `sentencepiece_model_file`: the tasks' SentencePiece model (default: the project's, trained
    on the prepared data). A checkpoint that carries its own (a HF folder's spiece.model, the one
    a p5-jax run recorded, MODEL_DIR's own when resuming) takes precedence; this may then only
    name that same model.

    `sequential_sampling`: "p5" (targets from the last three training positions, as P5's code)
    or "all_prefixes" (any cut point: more distinct examples for small, data-hungry runs).
    `max_history`: history items a sequential prompt shows (default 20, P5's); the run records
    it in MODEL_DIR/sequences.json, and evaluation of its checkpoints follows.
    `continuation_items`: k > 0 also trains this project's continuation prompt (2-14, outside
    P5's collection; p5_tasks.prompts.CONTINUATION), whose target lists the next k items, at
    the rate of prompt kind "continuation" (see `prompt_kind_weights`); 0 trains P5's prompts only.

    `pack`: several examples per row (first-fit packing, attention kept inside each example)
    for the training and validation batches, so `batch_size` counts rows; False gives one
    example per row.

    `prompt_kind_weights`: mixing rates scaled by prompt kind ("next_item", "candidates",
    "yes_no", "other"; see p5_tasks.rates), e.g. {"next_item": 3.0}.

    `item_tokens`: with the default SentencePiece model, one piece per item (`item_<id>` is one
    token) instead of one piece per digit; the run records the model, so eval and infer follow.
    `user_tokens`: likewise one piece per user (`user_<id>`).
    `item_embedding_rank`: k > 0 starts the item tokens' embedding rows at a rank-k factor of
    the training sequences' item co-occurrence (p5_jax.item_embeddings; needs `item_tokens`,
    not with INITIAL_CHECKPOINT); 0 leaves them random. `item_embedding_popularity` adds the
    items' log training frequency as one more dimension of that start (needs the rank).

    `on_bad_checkpoint`: when resuming, "fall_back" past a damaged step to the newest intact one
    (one warning line each) or "stop" with one error line.
    """
    task_feature_lengths = gin_bindings.require_feature_lengths(task_feature_lengths)
    _set_sequence_options(sampling=sequential_sampling, max_history=max_history,
                          continuation=continuation_items)
    try:
        rates.set_kind_weights(prompt_kind_weights)
    except ValueError as error:
        raise gin_bindings.JobError(f"train.prompt_kind_weights: {error}") from error
    mesh = partitioning.make_mesh(data=data_parallel, model=model_parallel)
    partitioning.check_batch_size(batch_size=batch_size, mesh=mesh,
                                  accumulation_steps=accumulation_steps)
    registration.require_known(mixture_or_task_name, error=gin_bindings.JobError)
    start = _start_point(initial_checkpoint=initial_checkpoint, model_dir=model_dir,
                         sentencepiece_model_file=sentencepiece_model_file)
    model_file = start.sentencepiece_file if start else sentencepiece_model_file
    vocabulary.use_item_tokens(item_tokens)
    vocabulary.use_user_tokens(user_tokens)
    if model_file:  # before the first tokenization
        vocabulary.use_sentencepiece_file(model_file)
    if item_embedding_popularity and not item_embedding_rank:
        raise gin_bindings.JobError(
            "train.item_embedding_popularity is a dimension of the item start: set "
            "train.item_embedding_rank too.")
    trainer_class: Callable[..., trainer.Trainer] = trainer.Trainer
    if start is not None and start.load_params is not None:
        if item_embedding_rank:
            raise gin_bindings.JobError(
                "train.item_embedding_rank starts item rows from scratch; it cannot be used with "
                "INITIAL_CHECKPOINT (set it to 0 or drop INITIAL_CHECKPOINT).")
        trainer_class = functools.partial(_InitialCheckpointTrainer, start=start)
    elif item_embedding_rank:
        if not item_tokens:
            raise gin_bindings.JobError(
                "train.item_embedding_rank needs one piece per item: set train.item_tokens = True.")
        trainer_class = functools.partial(_ItemEmbeddingTrainer, rank=item_embedding_rank,
                                          popularity=item_embedding_popularity,
                                          task_name=mixture_or_task_name)
    schedule = gin_bindings.make_schedule(total_steps=train_steps)
    train_state = trainer_class(
        model=_model_for(mixture_or_task_name, start), optimizer=gin_bindings.make_adamw(
            learning_rate=schedule), mesh=mesh, batch_size=batch_size,
        input_length=task_feature_lengths["inputs"], target_length=task_feature_lengths["targets"],
        learning_rate_fn=schedule, accumulation_steps=accumulation_steps, dropout_seed=seed)
    # Every process reads the whole global batch and keeps its rows (Trainer.put_batch).
    stream = functools.partial(
        input_pipeline.global_batches, mixture_or_task_name=mixture_or_task_name,
        task_feature_lengths=task_feature_lengths, pack=pack, batch_size=batch_size, seed=seed)
    with _refusals_as_job_errors():
        batches = stream(split="train")
    eval_fn = None
    if eval_every:
        eval_fn = _cached_batches(lambda: itertools.islice(
            stream(split="validation", shuffle=False), eval_steps))
    _write_operative_config(model_dir)
    _record_vocabulary(model_dir, mixture_or_task_name)
    sequence_options.record(model_dir, mixture_or_task_name)
    log = summaries.TrainingLog(logdir=os.path.join(model_dir, "train"), total_steps=train_steps,
                                show_progress=show_progress)
    with checkpoints.Checkpointer(directory=os.path.join(model_dir, "checkpoints"),
                                  save_every=checkpoint_every, keep=keep_checkpoints,
                                  on_bad_checkpoint=on_bad_checkpoint) as ckpt:
        with _refusals_as_job_errors():  # a preprocessor seen only when its chunk is built
            state = trainer.fit(trainer=train_state, batches=batches, total_steps=train_steps,
                                seed=seed, checkpointer=ckpt, log=log, log_every=log_every,
                                eval_every=eval_every, eval_batches_fn=eval_fn)
    log.close()
    return state


def _set_sequence_options(*, sampling: str, max_history: int | None, continuation: int) -> None:
    if sampling == "p5" and max_history is None and not continuation:
        return
    try:
        registration.set_sequence_options(sampling=sampling, max_history=max_history,
                                          continuation=continuation)
    except ValueError as error:
        raise gin_bindings.JobError(f"train: {error}") from error


@contextlib.contextmanager
def _refusals_as_job_errors():
    """The training stream's refusal of a seqio-seeded preprocessor, as one error line."""
    try:
        yield
    except input_pipeline.SeededPreprocessorError as error:
        raise gin_bindings.JobError(str(error)) from error


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


def _record_vocabulary(model_dir: str, task_name: str) -> None:
    """Keeps the run's SentencePiece model in MODEL_DIR, for runs that start from this one."""
    vocab = seqio.get_mixture_or_task(task_name).output_features["targets"].vocabulary
    model_file = getattr(vocab, "sentencepiece_model_file", None)
    if jax.process_index() == 0 and model_file:
        run_records.record_sentencepiece_model(model_dir=model_dir, model_file=model_file)


# -- starting from a checkpoint ------------------------------------------------------------------
WHOLE_WORD_PATH = ("whole_word_embedder",)
TOKEN_TABLE = "token_embedder"


@dataclasses.dataclass(frozen=True)
class _Start:
    """The checkpoint a run takes its architecture from, and its parameters unless resuming."""
    subject: str                      # how messages name it
    path: str
    config: network.T5Config          # the architecture the checkpoint holds
    fields: tuple[str, ...]           # the T5Config fields the gin model must match
    sentencepiece_file: str | None    # the tasks' SentencePiece model (None: the gin default)
    load_params: Callable[[], dict] | None  # flat numpy params but the whole-word table; None
                                            # when resuming (the train state is restored)


def _start_point(*, initial_checkpoint: str | None, model_dir: str,
                 sentencepiece_model_file: str | None) -> _Start | None:
    """What the run starts from: MODEL_DIR's own checkpoints when there are any (resuming),
    else INITIAL_CHECKPOINT, else nothing (random initialisation)."""
    own_directory = os.path.join(model_dir, "checkpoints")
    step = checkpoints.latest_step(own_directory)
    if step is not None:
        if initial_checkpoint:
            logging.warning("MODEL_DIR %s has checkpoints (latest step %d): resuming from them; "
                            "INITIAL_CHECKPOINT %s is ignored.", model_dir, step,
                            initial_checkpoint)
        return _p5_jax_start(subject="MODEL_DIR's checkpoint", path=model_dir,
                             directory=own_directory, step=step,
                             sentencepiece_model_file=sentencepiece_model_file, resume=True)
    if not initial_checkpoint:
        return None
    if hf_weights.is_hf_folder(initial_checkpoint):
        return _hf_start(initial_checkpoint, sentencepiece_model_file=sentencepiece_model_file)
    try:
        directory, step = inference.resolve_checkpoint(
            inference.checkpoint_dir(initial_checkpoint))
    except FileNotFoundError as error:
        raise gin_bindings.JobError(
            f"INITIAL_CHECKPOINT {initial_checkpoint} is neither a Hugging Face T5 folder "
            f"(config.json, model.safetensors, spiece.model) nor a p5-jax checkpoint "
            f"({error}).") from None
    return _p5_jax_start(subject="INITIAL_CHECKPOINT", path=initial_checkpoint,
                         directory=directory, step=step,
                         sentencepiece_model_file=sentencepiece_model_file, resume=False)


def _hf_start(folder: str, *, sentencepiece_model_file: str | None) -> _Start:
    try:
        config = hf_weights.read_hf_config(folder=folder)
        hf_weights.weight_files(folder=folder)
    except (ValueError, KeyError) as error:
        raise gin_bindings.JobError(f"INITIAL_CHECKPOINT {folder}: {error}") from None
    own = pathlib.Path(folder) / hf_weights.SENTENCEPIECE_FILE
    model_file = _sentencepiece_for(
        subject="INITIAL_CHECKPOINT", path=folder, own=own if own.is_file() else None,
        explicit=sentencepiece_model_file, required=True)

    def load_params():
        try:
            tensors = hf_weights.read_checkpoint_tensors(folder=folder)
            tensors.pop(hf_weights.WHOLE_WORD_TENSOR, None)  # a P5 export's table: start fresh
            params = hf_weights.params_from_hf_tensors(config=config, tensors=tensors)
        except ValueError as error:
            raise gin_bindings.JobError(f"INITIAL_CHECKPOINT {folder}: {error}") from None
        return traverse_util.flatten_dict(params)

    return _Start(subject="INITIAL_CHECKPOINT", path=folder, config=config,
                  fields=gin_bindings.HF_FIELDS, sentencepiece_file=model_file,
                  load_params=load_params)


def _p5_jax_start(*, subject: str, path: str, directory, step: int,
                  sentencepiece_model_file: str | None, resume: bool) -> _Start:
    config = gin_bindings.checkpoint_config(subject=subject, path=path, directory=directory,
                                            step=step)
    model_file = _sentencepiece_for(
        subject=subject, path=path, own=run_records.recorded_sentencepiece_model(directory),
        explicit=sentencepiece_model_file, required=not resume)
    load_params = None if resume else functools.partial(
        checkpoints.read_params, directory=directory, step=step, skip=(WHOLE_WORD_PATH,))
    # Resuming restores the whole state, whole-word table included: its size must match too.
    fields = gin_bindings.SHAPE_FIELDS + (("whole_word_embeddings",) if resume else ())
    return _Start(subject=subject, path=str(path), config=config, fields=fields,
                  sentencepiece_file=model_file, load_params=load_params)


def _sentencepiece_for(*, subject: str, path: str, own: pathlib.Path | None,
                       explicit: str | None, required: bool) -> str | None:
    """The checkpoint's own SentencePiece model; `train.sentencepiece_model_file` only stands
    in for a checkpoint that has none, and may not contradict one that has."""
    if explicit and not pathlib.Path(explicit).is_file():
        raise gin_bindings.JobError(
            f"train.sentencepiece_model_file {explicit} does not exist.")
    if own is not None:
        if explicit and pathlib.Path(explicit).read_bytes() != own.read_bytes():
            raise gin_bindings.JobError(
                f"train.sentencepiece_model_file {explicit} is not the SentencePiece model of "
                f"{subject} {path} ({own}); leave it unset.")
        return str(own)
    if explicit or not required:
        return explicit or None
    raise gin_bindings.JobError(
        f"{subject} {path} does not record its SentencePiece model "
        f"({hf_weights.SENTENCEPIECE_FILE} missing); bind train.sentencepiece_model_file to the "
        f"model it was trained with.")


def _model_of_checkpoint(start: _Start, vocab) -> models.EncoderDecoderModel:
    """The gin model with the checkpoint's embedding rows, once its architecture matches."""
    return gin_bindings.checkpoint_model(start.config, subject=start.subject, path=start.path,
                                         vocabulary=vocab, fields=start.fields)


class _InitialCheckpointTrainer(trainer.Trainer):
    """A Trainer whose fresh state (what `trainer.fit` starts from when MODEL_DIR has no
    checkpoint) holds INITIAL_CHECKPOINT's parameters, every one but the whole-word table,
    with new optimizer state at step 0."""

    def __init__(self, *, start: _Start, **kwargs):
        super().__init__(**kwargs)
        self.start = start

    def create_state(self, *, seed: int) -> trainer.TrainState:
        fresh = super().create_state(seed=seed)  # the whole-word table as a scratch run has it
        assert self.start.load_params is not None, "only built for a start with parameters to load"
        loaded = self.start.load_params()
        params = traverse_util.flatten_dict(fresh.params)
        shardings = traverse_util.flatten_dict(self.state_shardings.params)
        wanted = set(params) - {WHOLE_WORD_PATH}
        if set(loaded) != wanted:
            missing, extra = sorted(wanted - set(loaded)), sorted(set(loaded) - wanted)
            raise gin_bindings.JobError(
                f"INITIAL_CHECKPOINT {self.start.path} does not fit the model: missing "
                f"{['/'.join(p) for p in missing]}, unexpected {['/'.join(p) for p in extra]}.")
        for path, array in loaded.items():
            if tuple(array.shape) != tuple(params[path].shape):
                raise gin_bindings.JobError(
                    f"INITIAL_CHECKPOINT {self.start.path}: {'/'.join(path)} has shape "
                    f"{array.shape}, the model {params[path].shape}.")
            array = np.asarray(array, params[path].dtype)
            params[path] = partitioning.global_array(array, shardings[path])
        params = traverse_util.unflatten_dict(params)
        init_optimizer = jax.jit(self.optimizer.init,
                                 out_shardings=self.state_shardings.opt_state)
        logging.info("Starting from INITIAL_CHECKPOINT %s: all parameters but the whole-word "
                     "table; new optimizer state, step 0.", self.start.path)
        return dataclasses.replace(fresh, params=params, opt_state=init_optimizer(params))


class _ItemEmbeddingTrainer(trainer.Trainer):
    """A Trainer whose fresh state starts the item tokens' rows at the training sequences'
    co-occurrence factor (`item_embeddings.training_rows`); a resumed run restores its own."""

    def __init__(self, *, rank: int, popularity: bool, task_name: str, **kwargs):
        super().__init__(**kwargs)
        self.rank, self.popularity, self.task_name = rank, popularity, task_name

    def create_state(self, *, seed: int) -> trainer.TrainState:
        fresh = super().create_state(seed=seed)
        table = fresh.params[TOKEN_TABLE]
        vocab = seqio.get_mixture_or_task(self.task_name).output_features["targets"].vocabulary
        unknown = vocab.tokenizer.unk_id()

        def piece_id(piece):
            token = vocab.tokenizer.piece_to_id(piece)
            return None if token == unknown else token

        try:
            ids, rows = item_embeddings.training_rows(
                datasets=registration.datasets_of(self.task_name), piece_id=piece_id,
                dim=table.shape[1], rank=self.rank, popularity=self.popularity)
        except ValueError as error:
            raise gin_bindings.JobError(f"train.item_embedding_rank: {error}") from None
        rows = np.asarray(rows, table.dtype)
        place = jax.jit(lambda t: t.at[ids].set(rows), out_shardings=table.sharding)
        logging.info("Item rows: %d items start at the rank-%d co-occurrence factor of the "
                     "training sequences%s.", len(ids), self.rank,
                     " and their log frequency" if self.popularity else "")
        params = {**fresh.params, TOKEN_TABLE: place(table)}
        return dataclasses.replace(fresh, params=params)


def main(argv):
    gin_bindings.start_job(argv)
    logging.info("Devices: %d over %d processes.", jax.device_count(), jax.process_count())
    try:
        train()
    except checkpoints.DamagedCheckpointError as error:  # one `error:` line, no traceback
        raise gin_bindings.JobError(error.message) from error


def run():
    gin_bindings.run_entry_point(main)


if __name__ == "__main__":
    run()
