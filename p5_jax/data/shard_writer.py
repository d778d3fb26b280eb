"""Writing a record_shards.RecordPlan on one machine: forked worker processes build and serialise
shards of records; this process writes them, in order, to each split's TFDS shard files as they
come back, so no more than a few shards are ever held.

Examples are serialised here, straight to protobuf's wire format, rather than by TFDS's feature
encoders (about 40 times slower per record): the same tf.train.Example, with its features in
name order (protobuf's deterministic order, where TFDS's order varies from process to process).
tests/test_prepare_beam.py compares both.
"""
import collections
import multiprocessing
import os

import numpy as np
import tensorflow_datasets as tfds

from p5_jax.data import records
from p5_jax.data.tfrecord_file import TFRecordFile

FILE_BYTES = 256 << 20  # a split's next shard file starts past this size
_JOB: tuple | None = None  # (plan, fields): set before the pool forks, so its workers inherit them


_ONE_BYTE = [bytes((value,)) for value in range(0x80)]


def _varint(value: int) -> bytes:
    if 0 <= value < 0x80:
        return _ONE_BYTE[value]
    value &= (1 << 64) - 1  # a negative int64 as its two's complement, as protobuf writes it
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited protobuf field: tag, length, payload."""
    length = len(payload)
    return tag + (_ONE_BYTE[length] if length < 0x80 else _varint(length)) + payload


class _ListValues(dict):
    """text -> its encoded BytesList value. List values are item ids, which recur from record to
    record: one entry per item."""

    def __missing__(self, text: str) -> bytes:
        self[text] = value = _field(b"\n", text.encode())
        return value


_LIST_VALUES = _ListValues()


def _bytes_feature(text: str) -> bytes:  # Feature.bytes_list (1) holding BytesList.value (1)
    return _field(b"\n", _field(b"\n", text.encode()))


def _bytes_list_feature(texts) -> bytes:
    return _field(b"\n", b"".join(map(_LIST_VALUES.__getitem__, texts)))


def _int_feature(value: int) -> bytes:  # Feature.int64_list (3) holding packed Int64List.value (1)
    return _field(b"\x1a", _field(b"\n", _varint(value)))


_ENCODERS = {"int": _int_feature, "bytes": _bytes_feature, "bytes_list": _bytes_list_feature}


def example_fields(features) -> tuple:
    """(name, encoded map key, encoder) per feature of `features`, in name order."""
    fields = []
    for name, info in sorted(features.get_serialized_info().items()):
        integer = np.issubdtype(info.np_dtype, np.integer)
        if info.shape not in ((), (None,)) or (info.shape and integer):
            raise ValueError(f"feature {name!r} is not a scalar or a list of strings: {info}")
        kind = "int" if integer else "bytes_list" if info.shape else "bytes"
        fields.append((name, _field(b"\n", name.encode()), _ENCODERS[kind]))
    return tuple(fields)


def serialize(fields: tuple, record: dict, memo: dict | None = None) -> bytes:
    """The tf.train.Example TFDS writes for `record` (fields from `example_fields`): Example.features
    (1) holding Features.feature (1), a map of entries (key 1, Feature 2) in key order.

    `memo`: entries already encoded for the records of one unit, which share values (the same
    objects): (name, id(value)) -> (value, entry). Holding the value keeps its id from reuse."""
    if memo is None:
        return _field(b"\n", b"".join(_entry(key, encode(record[name])) for name, key, encode in fields))
    entries = []
    for name, key, encode in fields:
        value = record[name]
        known = memo.get((name, id(value)))
        if known is None or known[0] is not value:
            known = memo[name, id(value)] = (value, _entry(key, encode(value)))
        entries.append(known[1])
    return _field(b"\n", b"".join(entries))


def _entry(key: bytes, feature: bytes) -> bytes:
    """A Features.feature map entry: its encoded key, then the Feature (2)."""
    return _field(b"\n", key + _field(b"\x12", feature))


def _serialized_shard(index: int) -> tuple:
    """([(split, serialized example)], tally) for shard `index` of the job's plan; the records of
    one unit are serialised with one memo."""
    assert _JOB is not None, "_serialized_shard runs only inside _shards"
    plan, fields = _JOB
    counts: collections.Counter[str] = collections.Counter()
    rows: list[tuple[str, bytes]] = []
    memo: dict[tuple[str, int], tuple] = {}
    unit = None
    for split, key, record in plan.builder.records(plan.shard(index), counts):
        if key != unit:
            memo, unit = {}, key
        rows.append((split, serialize(fields, record, memo)))
    return rows, counts


def _shards(plan, fields, workers: int):
    """Serialised shards of `plan` in order, built by `workers` forked processes (or here, for one)."""
    global _JOB
    _JOB = (plan, fields)
    try:
        if workers <= 1 or plan.num_shards <= 1:
            yield from map(_serialized_shard, range(plan.num_shards))
            return
        with multiprocessing.get_context("fork").Pool(min(workers, plan.num_shards)) as pool:
            yield from pool.imap(_serialized_shard, range(plan.num_shards))
    finally:
        _JOB = None


class _SplitFiles:
    """One split's TFRecord shard files, filled in order; named `-of-N` once N is known."""

    def __init__(self, template):
        self.template, self.paths, self.lengths, self.num_bytes = template, [], [], 0
        self._writer, self._file_bytes = None, 0

    def write(self, example: bytes) -> None:
        if self._writer is None or self._file_bytes >= FILE_BYTES:
            self._next_file()
        self._writer.write(example)
        self.lengths[-1] += 1
        self._file_bytes += len(example)
        self.num_bytes += len(example)

    def _next_file(self) -> None:
        self._close()
        self.paths.append(self.template.data_dir / f".{self.template.split}-{len(self.paths):05d}.partial")
        self.lengths.append(0)
        self._writer, self._file_bytes = TFRecordFile(self.paths[-1]), 0

    def _close(self) -> None:
        if self._writer is not None:
            self._writer.close()

    def finish(self) -> tfds.core.SplitInfo:
        self._close()
        for index, path in enumerate(self.paths):
            path.rename(self.template.sharded_filepath(shard_index=index, num_shards=len(self.paths)))
        return tfds.core.SplitInfo(name=self.template.split, shard_lengths=self.lengths, num_bytes=self.num_bytes,
                                   filename_template=self.template)


def write(plan, *, features, template, workers: int, progress=None) -> tuple:
    """(TFDS split infos, tally) after writing `plan`'s records with `workers` processes.

    `template`: split name -> TFDS ShardedFileTemplate; `progress`: a tqdm bar advanced per record.
    """
    fields = example_fields(features)
    files = {split: _SplitFiles(template(split_name=split)) for split in records.SPLITS}
    tallies: collections.Counter[str] = collections.Counter()
    for rows, counts in _shards(plan, fields, workers):
        for split, example in rows:
            files[split].write(example)
        tallies.update(counts)
        if progress is not None:
            progress.update(len(rows))
    # TFDS cannot write an empty split; `load` serves a missing split as an empty dataset.
    return [split_files.finish() for split_files in files.values() if split_files.lengths], tallies


def cpus() -> int:
    """CPUs this process may run on (its affinity, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
