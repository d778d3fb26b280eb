"""Global, deterministic batches from seqio whose position restores in constant time.

Every process builds the same global stream and the trainer keeps each process's rows
(`partitioning.global_batch_arrays`), so the batch of a step is the same examples on one process
or many, and a checkpoint written by N processes resumes on M.

The stream is indexed, so its position is a handful of numbers and resuming replays nothing:
- A task's records are held by index. Its draw k reads record perm_e(k mod n) of epoch
  e = k div n (`tf.random.experimental.index_shuffle`: a fresh permutation of the n records per
  epoch, from the seed; no shuffle buffer). Draws are preprocessed in chunks of `CHUNK` by the
  task's own seqio preprocessors; a seeded one (`seeded_map`) gets a seed folded from (seed,
  task, chunk, its place in the chunk). seqio's own seeded maps are refused: their seeds come
  from a tf.data random stream that restarts in every chunk, so the draw at one place of a chunk
  would get the same seed in every chunk and epoch (the same sampled negative, coin, cut point).
- Example g of a mixture comes from the task picked by a stateless draw from (seed, g) at
  seqio's mixing rates.
- Windows of `converter.window_size` examples become rows (packed first fit, or one per row),
  and batches take rows in order.
The position after a batch is the window the next row comes from, the rows of it already used,
and each task's (chunk, examples taken from it) at that window's start; restoring rebuilds that
one window.
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import logging
import zlib
from collections.abc import Callable, Iterator, Mapping

import numpy as np
import seqio
import tensorflow as tf

from p5_jax import feature_converter as p5_feature_converter

POSITION_KEY = "batches_consumed"
STREAM_KEY = "stream"
CHUNK = 64              # draws of a task preprocessed together (resuming redoes at most one)
_FOREVER = 2 ** 62
_LOAD_BATCH = 65536
_META_SHAPES: dict[str, list[int]] = {"task": [], "chunk": [], "taken": []}
_MIXTURE_SALT, _PERMUTATION_SALT = 1, 2


class SeededPreprocessorError(ValueError):
    """A task preprocessor takes seqio's map seeds, which repeat in every chunk of the stream."""


def _refusal(task_name: str, preprocessor) -> SeededPreprocessorError:
    name = getattr(preprocessor, "__name__", repr(preprocessor))
    return SeededPreprocessorError(
        f"{task_name}: preprocessor {name} takes seqio map seeds, which repeat in every chunk of "
        "the training stream; decorate it with p5_jax.input_pipeline.seeded_map instead of "
        "seqio.map_over_dataset(num_seeds=1)")


def _takes_seqio_seeds(preprocessor) -> bool:
    """Whether `preprocessor` is seqio's seeded wrapper (it closes over `num_seeds`) without
    a `random_map` of its own."""
    function = preprocessor.func if isinstance(preprocessor, functools.partial) else preprocessor
    code = getattr(function, "__code__", None)
    return (code is not None and "num_seeds" in code.co_freevars
            and not hasattr(preprocessor, "random_map"))


def seeded_map(fn: Callable) -> Callable:
    """`seqio.map_over_dataset(num_seeds=1)` of `fn(ex, seed)` that also keeps `fn` as
    `random_map`, which the training stream calls with a seed of its own for every draw."""
    mapped = seqio.map_over_dataset(num_seeds=1)(fn)
    mapped.random_map = fn
    return mapped


# -- the position ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class StreamState:
    """Where the next row comes from: row `row` of window `window`; `tasks[name]` is that
    task's (chunk, examples taken from the chunk) when the window started (absent: (0, 0))."""
    window: int = 0
    row: int = 0
    tasks: Mapping[str, tuple[int, int]] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict:
        return {"window": self.window, "row": self.row,
                "tasks": {name: list(pair) for name, pair in sorted(self.tasks.items())}}

    @classmethod
    def from_json(cls, value) -> StreamState:
        try:
            state = cls(window=int(value["window"]), row=int(value["row"]),
                        tasks={str(name): (int(c), int(j)) for name, (c, j)
                               in dict(value["tasks"]).items()})
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"Bad stream position {value!r}: {error}") from None
        numbers = [state.window, state.row, *itertools.chain(*state.tasks.values())]
        if min(numbers, default=0) < 0:
            raise ValueError(f"Bad stream position {value!r}: negative counts.")
        return state


def _advance(tasks: Mapping[str, tuple[int, int]], names: list[str], meta) -> dict:
    """Task positions after a window whose examples carry `meta` (task, chunk, taken)."""
    after = dict(tasks)
    for task, chunk, taken in zip(meta["task"], meta["chunk"], meta["taken"]):
        after[names[task]] = (int(chunk), int(taken) + 1)
    return after


# -- one task's draws -----------------------------------------------------------------------------
def _materialize(dataset: tf.data.Dataset) -> dict:
    """Every record of a finite dataset of scalars and vectors: [n] tensors, [n, None] ragged."""
    parts = list(dataset.ragged_batch(_LOAD_BATCH))
    if not parts:
        return {}
    return {key: tf.concat([part[key] for part in parts], axis=0) for key in parts[0]}


def _source_key(source: seqio.DataSource, split: str):
    """One key for tasks that read the same records (each P5 prompt of a dataset reads its
    dataset's reviews or sequences through its own `seqio.FunctionDataSource`)."""
    function = getattr(source, "_dataset_fn", None)
    if isinstance(function, functools.partial):
        return (function.func, function.args, tuple(sorted(function.keywords.items())), split)
    return (id(source), split)


def _count(records: dict) -> int:
    first = next(iter(records.values()), None)
    if first is None:
        return 0
    return int(first.nrows()) if isinstance(first, tf.RaggedTensor) else int(first.shape[0])


def _fold(seed, *data):
    for value in data:
        seed = tf.random.experimental.stateless_fold_in(seed, tf.cast(value, tf.int64))
    return seed


@dataclasses.dataclass(frozen=True)
class _TaskDraws:
    """Preprocessed examples of one task, draw by draw, from any (chunk, taken) position."""
    task: seqio.Task
    index: int
    records: dict
    seed: int
    shuffle: bool
    lengths: Mapping[str, int]
    chunk_size: int = CHUNK

    @functools.cached_property
    def count(self) -> int:
        return _count(self.records)

    def _record(self, draw):
        """The record of draw k: perm_e(k mod n) of epoch e = k div n (identity unshuffled)."""
        n = tf.constant(self.count, tf.int64)
        place = draw % n
        if self.shuffle:
            key = _fold(self._key(), _PERMUTATION_SALT, draw // n)
            place = tf.random.experimental.index_shuffle(place, key, n - 1)
        return {name: values[place] for name, values in self.records.items()}

    def _key(self):
        return tf.constant([self.seed, zlib.crc32(self.task.name.encode())], tf.int64)

    def _chunk(self, chunk):
        """Chunk `chunk`'s examples, each with (task, chunk, taken before it in the chunk)."""
        first = chunk * self.chunk_size
        dataset = tf.data.Dataset.range(first, first + self.chunk_size).map(self._record)
        chunk_key = _fold(self._key(), chunk)
        for step, preprocessor in enumerate(self.task.preprocessors):
            random_map = getattr(preprocessor, "random_map", None)
            if random_map is not None:  # seeded_map
                step_key = _fold(chunk_key, step)
                dataset = tf.data.Dataset.zip(dataset, tf.data.Dataset.range(_FOREVER)).map(
                    lambda ex, place, fn=random_map, key=step_key:
                    fn(ex, _fold(key, place)), num_parallel_calls=tf.data.AUTOTUNE)
            else:
                dataset = self._apply_unseeded(preprocessor, dataset)
        keys = p5_feature_converter.PADDED_INPUT_KEYS
        return dataset.enumerate().map(lambda taken, ex: (
            {key: ex[key] for key in keys},
            {"task": tf.constant(self.index, tf.int64), "chunk": chunk, "taken": taken}))

    def _apply_unseeded(self, preprocessor, dataset: tf.data.Dataset) -> tf.data.Dataset:
        """`preprocessor` on `dataset`, or a SeededPreprocessorError if it draws seqio map seeds
        (a wrapper that `_takes_seqio_seeds` did not recognise)."""
        transform = seqio.utils.add_kwargs_to_transform(
            preprocessor, sequence_length=dict(self.lengths),
            output_features=self.task.output_features)
        with seqio.utils.map_seed_manager(0):
            dataset = transform(dataset)
            drew_seeds = seqio.utils._NEXT_MAP_SEED != 0
        if drew_seeds:
            raise _refusal(self.task.name, preprocessor)
        return dataset

    def examples(self, start: tuple[int, int]) -> tf.data.Dataset:
        chunk, taken = start
        # Built once outside tf.data's tracing, so that a refusal is a plain error.
        self._chunk(tf.constant(chunk, tf.int64))
        return (tf.data.Dataset.range(chunk, _FOREVER).flat_map(self._chunk).skip(taken)
                .prefetch(tf.data.AUTOTUNE))


# -- the mixture ----------------------------------------------------------------------------------
class MixtureStream:
    """The indexed example stream of a seqio task or mixture, as windows of model rows.

    `split`'s records of every task are read once and held in memory (tasks over the same
    source share them). `shuffle=False` reads each task's records in their stored order.
    """

    def __init__(self, *, mixture_or_task_name: str, task_feature_lengths: Mapping[str, int],
                 split: str, converter: p5_feature_converter.P5EncDecFeatureConverter,
                 seed: int, shuffle: bool = True, chunk_size: int = CHUNK):
        provider = seqio.get_mixture_or_task(mixture_or_task_name)
        tasks = [provider] if isinstance(provider, seqio.Task) else provider.tasks
        rates = [1.0] if isinstance(provider, seqio.Task) else [provider.get_rate(t)
                                                               for t in tasks]
        chosen = [(task, rate) for task, rate in zip(tasks, rates)
                  if rate > 0 and split in task.splits]
        if not chosen:
            raise ValueError(f"{mixture_or_task_name} has no task with a {split!r} split.")
        for task, _ in chosen:
            seqio_seeded = next((p for p in task.preprocessors if _takes_seqio_seeds(p)), None)
            if seqio_seeded is not None:
                raise _refusal(task.name, seqio_seeded)
        self.split, self.seed = split, seed
        self.lengths, self.converter, self.shuffle = dict(task_feature_lengths), converter, shuffle
        self.chunk_size = chunk_size
        self.task_names = [task.name for task, _ in chosen]
        self._tasks, self._rates = [task for task, _ in chosen], [r for _, r in chosen]
        self._records: dict = {}

    @property
    def window_size(self) -> int:
        return self.converter.window_size

    def _draws(self, index: int) -> _TaskDraws:
        task = self._tasks[index]
        key = _source_key(task.source, self.split)
        if key not in self._records:
            self._records[key] = _materialize(
                task.source.get_dataset(split=self.split, shuffle=False))
        draws = _TaskDraws(task=task, index=index, records=self._records[key], seed=self.seed,
                           shuffle=self.shuffle, lengths=self.lengths,
                           chunk_size=self.chunk_size)
        if not draws.count:
            raise ValueError(f"Task {task.name} has no {self.split!r} records.")
        return draws

    def _choices(self, first_example: int) -> tf.data.Dataset:
        """The task of example g: a stateless draw from (seed, g) at the mixing rates."""
        bounds = tf.constant(np.cumsum(self._rates) / np.sum(self._rates), tf.float32)
        key = tf.constant([self.seed, _MIXTURE_SALT], tf.int64)
        last = len(self._rates) - 1

        def choose(example):
            u = tf.random.stateless_uniform([1], _fold(key, example))
            return tf.minimum(tf.searchsorted(bounds, u, side="right")[0], last)

        return tf.data.Dataset.range(first_example, _FOREVER).map(
            lambda g: tf.cast(choose(g), tf.int64))

    def examples(self, state: StreamState) -> tf.data.Dataset:
        """(features, meta) of every example from window `state.window`'s first one."""
        streams = [self._draws(i).examples(state.tasks.get(name, (0, 0)))
                   for i, name in enumerate(self.task_names)]
        return tf.data.Dataset.choose_from_datasets(
            streams, self._choices(state.window * self.window_size))

    def windows(self, state: StreamState) -> tf.data.Dataset:
        """(rows, meta) of every window from `state.window` on, computed in a fixed order."""
        lengths, converter = self.lengths, self.converter
        dataset = self.examples(state).map(
            lambda ex, meta: (converter.trim(ex, lengths), meta),
            num_parallel_calls=tf.data.AUTOTUNE)
        dataset = dataset.padded_batch(
            self.window_size, padded_shapes=(converter.window_shapes(lengths), _META_SHAPES))
        dataset = dataset.map(lambda window, meta: (converter.window_rows(window, lengths), meta),
                              num_parallel_calls=tf.data.AUTOTUNE)
        options = tf.data.Options()
        options.deterministic = True
        return dataset.with_options(options).prefetch(2)


class GlobalBatches(Iterator[dict[str, np.ndarray]]):
    """Global batches of `batch_size` rows from a `MixtureStream`, with a saveable position.

    The stream starts on the first `next` (so a `restore` first costs nothing extra).
    """

    def __init__(self, *, stream: MixtureStream, batch_size: int):
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}.")
        self._stream, self._batch_size = stream, batch_size
        self._batches, self._replay = 0, 0
        self._pending: StreamState | None = StreamState()
        self._windows: Iterator | None = None  # (rows, meta) per window, opened by _start
        self._rows: dict[str, np.ndarray] = {}
        self._state = StreamState()        # window, row and task positions at its start
        self._after: dict = {}             # task positions after the current window

    @property
    def position(self) -> dict:
        """JSON-able state to checkpoint with the model."""
        return {POSITION_KEY: self._batches, STREAM_KEY: self._next_state().to_json()}

    def restore(self, position: Mapping) -> None:
        """Continues after the batches counted in a saved `position` (one window rebuilt); a
        position without a stream state (an older checkpoint) replays that many batches."""
        batches = int(position[POSITION_KEY])
        stream = position.get(STREAM_KEY)
        if stream is None:
            logging.warning("The data position has no stream state: replaying %d batches.",
                            batches)
            self._pending, self._replay = StreamState(), batches
        else:
            self._pending, self._replay = StreamState.from_json(stream), 0
        self._batches, self._windows = batches - self._replay, None

    def _next_state(self) -> StreamState:
        if self._pending is not None:
            return self._pending
        if self._state.row == self._num_rows():
            return StreamState(window=self._state.window + 1, row=0, tasks=self._after)
        return self._state

    def _num_rows(self) -> int:
        return len(next(iter(self._rows.values())))

    def _load(self, state: StreamState) -> None:
        assert self._windows is not None, "_start opens the windows"
        self._rows, meta = next(self._windows)
        self._state = state
        self._after = _advance(state.tasks, self._stream.task_names, meta)

    def _start(self, state: StreamState) -> None:
        self._pending = None
        self._windows = self._stream.windows(state).as_numpy_iterator()
        self._load(state)
        for _ in range(self._replay):
            next(self)
        self._replay = 0

    def __next__(self) -> dict[str, np.ndarray]:
        if self._pending is not None:
            self._start(self._pending)
        parts, need = [], self._batch_size
        while need:
            if self._state.row == self._num_rows():
                self._load(self._next_state())
            row = self._state.row
            take = min(need, self._num_rows() - row)
            parts.append({key: value[row:row + take] for key, value in self._rows.items()})
            self._state = dataclasses.replace(self._state, row=row + take)
            need -= take
        self._batches += 1
        return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


def global_batches(*, mixture_or_task_name: str, task_feature_lengths: Mapping[str, int],
                   split: str, pack: bool, batch_size: int, seed: int,
                   shuffle: bool = True) -> GlobalBatches:
    """The global batches of a seqio task or mixture with P5's feature converter."""
    stream = MixtureStream(
        mixture_or_task_name=mixture_or_task_name, task_feature_lengths=task_feature_lengths,
        split=split, converter=p5_feature_converter.P5EncDecFeatureConverter(pack=pack),
        seed=seed, shuffle=shuffle)
    return GlobalBatches(stream=stream, batch_size=batch_size)


class BatchIterator(Iterator[dict[str, np.ndarray]]):
    """Batches of any deterministic tf.data stream (every process builds the same one), with a
    saveable position. Restoring replays the consumed batches (`skip`), so its cost grows with
    the position: training streams use `GlobalBatches`."""

    def __init__(self, *, dataset_fn: Callable[[], tf.data.Dataset], batch_size: int,
                 position: int = 0, prefetch: int = 2):
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}.")
        self._dataset_fn, self._batch_size, self._prefetch = dataset_fn, batch_size, prefetch
        self._restart(position)

    def _restart(self, position: int) -> None:
        if position < 0:
            raise ValueError(f"position must be >= 0, got {position}.")
        dataset = self._dataset_fn().batch(self._batch_size, drop_remainder=True)
        options = tf.data.Options()
        options.deterministic = True
        dataset = dataset.with_options(options).skip(position).prefetch(self._prefetch)
        self._iterator = dataset.as_numpy_iterator()
        self._position = position

    @property
    def position(self) -> dict[str, int]:
        """JSON-able state to checkpoint with the model."""
        return {POSITION_KEY: self._position}

    def restore(self, position: Mapping[str, int]) -> None:
        """Continues the stream after the batches counted in a saved `position`."""
        self._restart(int(position[POSITION_KEY]))

    def __next__(self) -> dict[str, np.ndarray]:
        batch = next(self._iterator)
        self._position += 1
        return batch
