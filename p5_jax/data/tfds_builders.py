"""TFDS builders for prepared records, and `load` for reading them back without their code.

Each prepared dataset holds `tfds/p5_reviews/<name>/1.0.0/` and `tfds/p5_sequences/<name>/1.0.0/`;
the dataset name is the builder config. Reading goes through `tfds.builder_from_directory`, so a
dataset added with --source needs no registered config. Examples keep their generation order.

Writing takes a record_shards.RecordPlan. Locally (`shard_writer.py`) worker processes build and
serialise shards of records, written in order as they come back. With `beam_options`, the same
builders run as an Apache Beam pipeline (`beam_build.py`): any runner, identical records.
"""
import contextlib
import io
import pathlib

import shutil

import numpy as np

import tensorflow_datasets as tfds
from absl import logging
from tensorflow_datasets.core.utils import tqdm_utils

from p5_jax.data import beam_build, records, shard_writer
from p5_jax.tf_setup import quiet_tensorflow

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


# tfds' registry metaclass takes `skip_registration`; its stubs do not declare it.
class _PreparedRecords(tfds.core.GeneratorBasedBuilder, skip_registration=True):  # type: ignore[call-arg]
    """Writes the records of a RecordPlan passed to the constructor, locally or with Beam."""
    VERSION = tfds.core.Version(VERSION)
    DESCRIPTION = ""
    # No checksums or code files to locate; also skips tfds' lookup of the package path, which
    # needs the optional `importlib_resources` module for editable installs.
    code_path = None

    def __init__(self, *, plan=None, workers: int = 1, progress=None, **kwargs):
        self._plan, self._workers, self._progress = plan, workers, progress
        self.tallies = None  # record_shards.tally of what was written
        super().__init__(**kwargs)

    def _features(self) -> tfds.features.FeaturesDict:
        raise NotImplementedError

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(description=self.DESCRIPTION, features=self._features(),
                                              disable_shuffling=True)

    def _generate_splits(self, dl_manager, download_config):
        if self._plan is None:
            raise ValueError("this builder only writes records handed to it; read with tfds_builders.load")
        if download_config.beam_options is not None:  # TFDS runs the pipeline of `_split_generators`
            return super()._generate_splits(dl_manager, download_config)
        split_infos, self.tallies = shard_writer.write(
            self._plan, features=self.info.features, template=self._get_filename_template,
            workers=self._workers, progress=self._progress)
        return split_infos

    def _split_generators(self, dl_manager, pipeline):
        # TFDS cannot write an empty split; `load` serves a missing split as an empty dataset.
        return beam_build.split_collections(pipeline, self._plan, staging=self.staging)

    def _process_pipeline_result(self, pipeline_result):
        self.tallies = beam_build.staged_tallies(self.staging)
        if self._progress is not None:
            self._progress.update(sum(self._plan.split_sizes.values()))

    @property
    def staging(self) -> pathlib.Path:
        """Where the Beam pipeline's shard inputs and tallies wait (removed after the build)."""
        return pathlib.Path(self._data_dir_root) / f".staging-{self.name}"

    def _generate_examples(self, **_):
        raise NotImplementedError("records come from _generate_splits (local) or _split_generators (Beam)")


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


def build(*, data_dir, dataset: str, plan, workers: int = 1, progress=None, beam_options=None):
    """Writes the records of `plan` (a record_shards.RecordPlan) for `dataset` under `data_dir` (the
    prepared `tfds/` folder) and returns their tally (record_shards.tally).

    `workers`: processes that build records (locally); `progress`: a tqdm bar advanced per record;
    `beam_options`: apache_beam PipelineOptions to build with Beam instead.
    """
    if not any(plan.split_sizes.values()):
        raise ValueError(f"no {plan.kind} records to write for {dataset}")
    builder_class = _BUILDERS[_check_kind(plan.kind)]
    with _quiet_tfds():
        builder = builder_class(data_dir=str(data_dir), plan=plan, workers=workers, progress=progress,
                                config=tfds.core.BuilderConfig(name=dataset, version=VERSION))
        try:
            builder.download_and_prepare(download_config=tfds.download.DownloadConfig(beam_options=beam_options))
        finally:
            shutil.rmtree(builder.staging, ignore_errors=True)
    shutil.rmtree(pathlib.Path(data_dir) / "downloads", ignore_errors=True)  # empty: nothing is downloaded
    return builder.tallies


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
    quiet_tensorflow()  # reading needs TensorFlow; writing (prepare) does not import it
    builder = tfds.builder_from_directory(str(path))
    if split not in builder.info.splits:  # written splits only; this one had no records
        return builder.as_dataset(split=next(iter(builder.info.splits)), shuffle_files=False).take(0)
    return builder.as_dataset(split=split, shuffle_files=False)
