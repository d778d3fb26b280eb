"""The ways of writing a prepared dataset agree: the Beam build (DirectRunner) and the local build,
one worker or several, write the same records in the same order in every split, with the same
ids, negatives and manifest; the local serialiser writes the examples TFDS's encoders write; and
a shard that fails leaves nothing behind. Tiny shards make even the fixtures span several."""
import hashlib
import pathlib
import random

import pytest
from tensorflow_datasets.core.example_serializer import ExampleSerializer
from tensorflow_datasets.proto import tf_example_pb2

from p5_jax.data import assemble as assemble_module
from p5_jax.data import prepare, record_shards, shard_writer, tfds_builders
from p5_jax.data.records import SPLITS

from test_data_prepare import FIXTURES, _records


def _prepare(root, fmt, *, negatives=2, **options) -> dict:
    return prepare.prepare_dataset(name="tiny", out_root=root, source=FIXTURES / fmt, fmt=fmt,
                                   num_negatives=negatives, progress=False, **options)


def _contents(root) -> dict:
    """The tables, the manifest and every record of every split, in order."""
    folder = root / "tiny"
    contents = {name: (folder / name).read_text() for name in ("manifest.json", "users.jsonl", "items.jsonl")}
    for kind in tfds_builders.KINDS:
        if tfds_builders.builder_dir(root=root, dataset="tiny", kind=kind).exists():
            contents[kind] = {split: _records(root, kind, split) for split in SPLITS}
    return contents


def _files(root) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def tiny_shards(monkeypatch):
    monkeypatch.setattr(record_shards, "SHARD_UNITS", 2)


@pytest.mark.parametrize("fmt, options", [("amazon", {}),  # explanations, every split
                                          ("recbole", {"negatives": 1, "indexing": "collaborative"})])  # empty splits
def test_beam_build_writes_what_the_local_build_writes(tmp_path, tiny_shards, fmt, options):
    pytest.importorskip("apache_beam")  # the `beam` extra, in its own environment

    local = _prepare(tmp_path / "local", fmt, workers=2, **options)
    beam = _prepare(tmp_path / "beam", fmt, beam_options="", **options)
    assert beam == local
    contents = _contents(tmp_path / "beam")
    assert contents == _contents(tmp_path / "local")
    assert len(contents["sequences"]["test"]) == local["splits"]["sequential"]["test"] > 2  # several shards
    assert not list((tmp_path / "beam" / "tiny" / "tfds").glob(".staging*"))


def test_workers_change_no_byte(tmp_path, tiny_shards):
    _prepare(tmp_path / "one", "amazon", workers=1)
    _prepare(tmp_path / "three", "amazon", workers=3)
    assert _files(tmp_path / "one") == _files(tmp_path / "three")


def _tfds_bytes(features, record) -> bytes:
    example = ExampleSerializer(features.get_serialized_info()).serialize_example(features.encode_example(record))
    return tf_example_pb2.Example.FromString(example).SerializeToString(deterministic=True)


def test_local_serialiser_writes_the_examples_tfds_writes():
    rng = random.Random(0)

    def text():
        return "".join(rng.choice("aé€😀 .") for _ in range(rng.choice([0, 1, 5, 200])))

    features = tfds_builders.review_features()
    fields = shard_writer.example_fields(features)
    for _ in range(50):
        record = {name: text() for name in features.keys()}
        record.update(rating=rng.randint(1, 5), timestamp=rng.choice([0, -1, 2 ** 63 - 1, -2 ** 63, 1_400_000_000]))
        assert shard_writer.serialize(fields, record) == _tfds_bytes(features, record)
    features = tfds_builders.sequence_features()
    fields = shard_writer.example_fields(features)
    for _ in range(50):
        record = {"user_id": text(), "user_desc": text(), "target": text(),
                  **{name: [text() for _ in range(rng.choice([0, 1, 99]))] for name in ("history", "negatives",
                                                                                       "interacted")}}
        assert shard_writer.serialize(fields, record) == _tfds_bytes(features, record)


def test_a_failing_shard_leaves_the_earlier_dataset(tmp_path, tiny_shards, monkeypatch):
    _prepare(tmp_path, "amazon")
    before = _files(tmp_path)
    build = assemble_module.sequence_records

    def failing(context, user):
        if user[1] == "3":
            raise RuntimeError("shard failed")
        return build(context, user)

    monkeypatch.setattr(assemble_module, "sequence_records", failing)
    with pytest.raises(RuntimeError, match="shard failed"):
        _prepare(tmp_path, "amazon", workers=2)
    assert _files(tmp_path) == before and [p.name for p in pathlib.Path(tmp_path).iterdir()] == ["tiny"]
