"""Per-host, deterministic, resumable batches from seqio.

Each process reads its own shard (`seqio.ShardInfo(index=process_index, num_shards=count)`) and
yields `global_batch_size / process_count` rows per step. The stream is a pure function of the
seed, so its position is just the number of batches consumed: a resumed run rebuilds the stream
and skips that many batches, and sees exactly the batches an uninterrupted run would.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import numpy as np
import seqio
import tensorflow as tf

POSITION_KEY = "batches_consumed"


def shard_info(*, process_index: int, process_count: int) -> seqio.ShardInfo | None:
    """This host's shard of the examples; None on a single host (no sharding)."""
    if process_count < 1 or not 0 <= process_index < process_count:
        raise ValueError(f"Bad process index {process_index} of {process_count} processes.")
    if process_count == 1:
        return None
    return seqio.ShardInfo(index=process_index, num_shards=process_count)


def host_batch_size(*, global_batch_size: int, process_count: int) -> int:
    if global_batch_size % process_count:
        raise ValueError(f"Global batch size {global_batch_size} is not divisible by the "
                         f"{process_count} processes.")
    return global_batch_size // process_count


def seqio_dataset_fn(*, mixture_or_task_name: str, task_feature_lengths: Mapping[str, int],
                     split: str, feature_converter: seqio.FeatureConverter, shuffle: bool,
                     seed: int | None, num_epochs: int | None,
                     process_index: int, process_count: int) -> Callable[[], tf.data.Dataset]:
    """A function building this host's unbatched, model-ready examples (deterministic for a seed)."""
    seqio.get_mixture_or_task(mixture_or_task_name)  # a clear KeyError early for a bad name

    def build() -> tf.data.Dataset:
        return seqio.get_dataset(
            mixture_or_task_name, task_feature_lengths=dict(task_feature_lengths),
            dataset_split=split, shuffle=shuffle, num_epochs=num_epochs,
            feature_converter=feature_converter, seed=seed, use_cached=False,
            shard_info=shard_info(process_index=process_index, process_count=process_count))

    return build


class BatchIterator(Iterator[dict[str, np.ndarray]]):
    """Numpy batches from a deterministic dataset, with a saveable position."""

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
