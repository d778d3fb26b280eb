"""seqio data sources over prepared datasets, read only when a task's dataset is requested."""
from __future__ import annotations

import functools

import seqio
import tensorflow as tf

from p5_jax import paths

SPLITS = ("train", "validation", "test")


def _load(split, shuffle_files=False, seed=None, *, dataset: str, kind: str) -> tf.data.Dataset:
    """Prepared records of one split (preparing a shipped dataset first if needed), each with
    `is_train`, which decides between sampled and fixed evaluation choices downstream."""
    del shuffle_files, seed  # Records keep their prepared order; tasks shuffle after mapping.
    from p5_jax.data import prepare, tfds_builders  # deferred: heavy

    root = paths.prepared_root()
    prepare.ensure_prepared(name=dataset, out_root=root)
    records = tfds_builders.load(root=root, dataset=dataset, kind=kind, split=split)
    is_train = tf.constant(split == "train")
    return records.map(lambda ex: {**ex, "is_train": is_train})


def make_source(*, dataset: str, kind: str) -> seqio.FunctionDataSource:
    if kind not in ("reviews", "sequences"):
        raise ValueError(f"kind must be 'reviews' or 'sequences', got {kind!r}")
    return seqio.FunctionDataSource(
        dataset_fn=functools.partial(_load, dataset=dataset, kind=kind), splits=SPLITS)
