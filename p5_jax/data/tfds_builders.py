"""TFDS builders for prepared records, and `load` for reading them back without their code.

Each prepared dataset holds `tfds/p5_reviews/<name>/1.0.0/` and `tfds/p5_sequences/<name>/1.0.0/`;
the dataset name is the builder config. Reading goes through `tfds.builder_from_directory`, so a
dataset added with --source needs no registered config. Examples keep their generation order.
"""
import contextlib
import io
import pathlib

import shutil

import numpy as np

from p5_jax.tf_setup import quiet_tensorflow

quiet_tensorflow()

import tensorflow_datasets as tfds  # noqa: E402
from absl import logging
from tensorflow_datasets.core.utils import tqdm_utils

from p5_jax.data import records

KINDS = ("reviews", "sequences")
VERSION = "1.0.0"


def review_features() -> tfds.features.FeaturesDict:
    spec = {name: tfds.features.Tensor(shape=(), dtype=np.str_) for name in records.REVIEW_STRING_FIELDS}
    spec["rating"] = tfds.features.Tensor(shape=(), dtype=np.int32)
    spec["timestamp"] = tfds.features.Tensor(shape=(), dtype=np.int64)
    return tfds.features.FeaturesDict(spec)


def sequence_features() -> tfds.features.FeaturesDict:
    spec = {name: tfds.features.Tensor(shape=(), dtype=np.str_) for name in records.SEQUENCE_STRING_FIELDS}
    spec.update({name: tfds.features.Sequence(tfds.features.Tensor(shape=(), dtype=np.str_))
                 for name in records.SEQUENCE_LIST_FIELDS})
    return tfds.features.FeaturesDict(spec)


class _PreparedRecords(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Writes in-memory records (split -> list of dicts) passed to the constructor."""
    VERSION = tfds.core.Version(VERSION)
    DESCRIPTION = ""
    # No checksums or code files to locate; also skips tfds' lookup of the package path, which
    # needs the optional `importlib_resources` module for editable installs.
    code_path = None

    def __init__(self, *, records_by_split=None, **kwargs):
        self._records_by_split = records_by_split
        super().__init__(**kwargs)

    def _features(self) -> tfds.features.FeaturesDict:
        raise NotImplementedError

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(description=self.DESCRIPTION, features=self._features(),
                                              disable_shuffling=True)

    def _split_generators(self, dl_manager):
        if self._records_by_split is None:
            raise ValueError("this builder only writes records handed to it; read with tfds_builders.load")
        # TFDS cannot write an empty split; `load` serves a missing split as an empty dataset.
        return {split: self._generate_examples(rows) for split, rows in self._records_by_split.items() if rows}

    def _generate_examples(self, rows):
        for key, row in enumerate(rows):
            yield key, row


class P5Reviews(_PreparedRecords):
    DESCRIPTION = "P5 review records (8:1:1 random split) for rating, explanation and review tasks."

    def _features(self):
        return review_features()


class P5Sequences(_PreparedRecords):
    DESCRIPTION = "P5 per-user sequences (leave-one-out in time order) for sequential and direct tasks."

    def _features(self):
        return sequence_features()


_BUILDERS = {"reviews": P5Reviews, "sequences": P5Sequences}


@contextlib.contextmanager
def _quiet_tfds():
    """Hides TFDS's own progress bars and messages (the prepare step reports for itself)."""
    was_active, verbosity = tqdm_utils._active, logging.get_verbosity()  # pylint: disable=protected-access
    tfds.display_progress_bar(False)
    logging.set_verbosity(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        tfds.display_progress_bar(was_active)
        logging.set_verbosity(verbosity)


def build(*, data_dir, dataset: str, kind: str, records_by_split: dict) -> None:
    """Writes one kind of records for `dataset` under `data_dir` (the prepared `tfds/` folder)."""
    if not any(records_by_split.values()):
        raise ValueError(f"no {kind} records to write for {dataset}")
    builder_class = _BUILDERS[_check_kind(kind)]
    with _quiet_tfds():
        builder = builder_class(data_dir=str(data_dir), records_by_split=records_by_split,
                                config=tfds.core.BuilderConfig(name=dataset, version=VERSION))
        builder.download_and_prepare()
    shutil.rmtree(pathlib.Path(data_dir) / "downloads", ignore_errors=True)  # empty: nothing is downloaded


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return kind


def builder_dir(*, root, dataset: str, kind: str) -> pathlib.Path:
    return pathlib.Path(root) / dataset / "tfds" / f"p5_{_check_kind(kind)}" / dataset / VERSION


def load(*, root, dataset: str, kind: str, split: str):
    """tf.data.Dataset of dicts for one split of a prepared dataset, in a fixed order."""
    if split not in records.SPLITS:
        raise ValueError(f"split must be one of {records.SPLITS}, got {split!r}")
    path = builder_dir(root=root, dataset=dataset, kind=kind)
    if not path.exists():
        if (pathlib.Path(root) / dataset / "manifest.json").exists():
            raise FileNotFoundError(f"{dataset} has no {kind} records (no ratings in its source): {path}")
        raise FileNotFoundError(f"{dataset} is not prepared under {root}; run "
                                f"python -m p5_jax.data.prepare --dataset {dataset} --out_dir {root}")
    builder = tfds.builder_from_directory(str(path))
    if split not in builder.info.splits:  # written splits only; this one had no records
        return builder.as_dataset(split=next(iter(builder.info.splits)), shuffle_files=False).take(0)
    return builder.as_dataset(split=split, shuffle_files=False)
