"""The indexed training stream: a restored position continues with exactly the batches of an
uninterrupted stream, without replaying the batches before it."""
import json

import numpy as np
import pytest
import seqio
import tensorflow as tf

from p5_jax import feature_converter, input_pipeline

MIXTURE = "p5_test_resume_mixture"
PLAIN, SEEDED = "p5_test_resume_plain", "p5_test_resume_seeded"
SEQIO_SEEDED = "p5_test_resume_seqio_seeded"
WRAPPED_SEQIO_SEEDED = "p5_test_resume_wrapped_seqio_seeded"
LENGTHS = {"inputs": 10, "targets": 4}
RECORDS = 30


def _records(split):
    del split
    inputs = np.arange(RECORDS * 6, dtype=np.int32).reshape(RECORDS, 6) % 97 + 3
    return {"inputs": inputs, "targets": inputs[:, :3],
            "inputs_whole_word_ids": np.tile(np.arange(1, 7, dtype=np.int32), (RECORDS, 1))}


@input_pipeline.seeded_map
def _random_first_token(ex, seed):
    ex = dict(ex)
    token = tf.random.stateless_uniform([1], seed, minval=3, maxval=99, dtype=tf.int32)
    ex["inputs"] = tf.concat([token, ex["inputs"][1:]], axis=0)
    return ex


def _drop_every_third(dataset):
    return dataset.filter(lambda ex: ex["inputs"][1] % 3 != 0)


def _register():
    if MIXTURE in seqio.MixtureRegistry.names():
        return
    vocab = seqio.PassThroughVocabulary(size=100)
    features = {"inputs": seqio.Feature(vocab, add_eos=False), "targets": seqio.Feature(vocab),
                "inputs_whole_word_ids": seqio.Feature(seqio.PassThroughVocabulary(size=16),
                                                       add_eos=False)}
    seqio_seeded = seqio.map_over_dataset(num_seeds=1)(_random_first_token.random_map)

    def _wrapped_seqio_seeded(dataset):  # not recognisable before it runs
        return seqio_seeded(dataset)

    for name, preprocessors in ((PLAIN, []), (SEEDED, [_random_first_token, _drop_every_third]),
                                (SEQIO_SEEDED, [seqio_seeded]),
                                (WRAPPED_SEQIO_SEEDED, [_wrapped_seqio_seeded])):
        source = seqio.FunctionDataSource(
            lambda split, shuffle_files, seed=None: tf.data.Dataset.from_tensor_slices(
                _records(split)), splits=["train"])
        seqio.TaskRegistry.add(name, source=source, preprocessors=preprocessors,
                               output_features=features)
    seqio.MixtureRegistry.add(MIXTURE, [(PLAIN, 1.0), (SEEDED, 2.0)])


def _batches(name=MIXTURE, *, pack=True, shuffle=True):
    _register()
    stream = input_pipeline.MixtureStream(
        mixture_or_task_name=name, task_feature_lengths=LENGTHS, split="train",
        converter=feature_converter.P5EncDecFeatureConverter(pack=pack, pack_window=8),
        seed=3, shuffle=shuffle, chunk_size=5)
    return input_pipeline.GlobalBatches(stream=stream, batch_size=4)


def _assert_same(got, want):
    assert got.keys() == want.keys()
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)


@pytest.mark.parametrize("pack", [True, False])
def test_a_restored_position_continues_with_the_same_batches(pack):
    straight, positions = _batches(pack=pack), []
    expected = []
    for _ in range(14):
        positions.append(json.loads(json.dumps(straight.position)))  # as a checkpoint keeps it
        expected.append(next(straight))
    for start in (0, 1, 5, 9, 13):
        resumed = _batches(pack=pack)
        resumed.restore(positions[start])
        following = expected[start:start + 2]
        for want in following:
            _assert_same(next(resumed), want)
        assert resumed.position[input_pipeline.POSITION_KEY] == start + len(following)


def test_a_far_position_restores_without_replaying():
    """A position a billion windows in (replaying it would never end) restores at once."""
    _register()
    far = input_pipeline.StreamState(window=10 ** 9, row=1,
                                     tasks={PLAIN: (10 ** 9, 2), SEEDED: (2 * 10 ** 9, 1)})
    batches = _batches()
    batches.restore({input_pipeline.POSITION_KEY: 7,
                     input_pipeline.STREAM_KEY: far.to_json()})
    batch = next(batches)
    assert batch["encoder_input_tokens"].shape == (4, LENGTHS["inputs"])
    assert batches.position[input_pipeline.POSITION_KEY] == 8
    assert batches.position[input_pipeline.STREAM_KEY]["window"] >= 10 ** 9


def test_a_position_without_stream_state_replays_the_batches():
    straight = _batches()
    expected = [next(straight) for _ in range(4)]
    resumed = _batches()
    resumed.restore({input_pipeline.POSITION_KEY: 3})
    _assert_same(next(resumed), expected[3])


def test_every_epoch_reads_each_record_once_in_a_new_order():
    _register()
    stream = input_pipeline.MixtureStream(
        mixture_or_task_name=PLAIN, task_feature_lengths=LENGTHS, split="train",
        converter=feature_converter.P5EncDecFeatureConverter(), seed=3, chunk_size=7)
    examples = stream.examples(input_pipeline.StreamState()).take(2 * RECORDS)
    firsts = [int(ex["inputs"][0]) for ex, _ in examples.as_numpy_iterator()]
    every = sorted(int(x) for x in _records("train")["inputs"][:, 0])
    assert sorted(firsts[:RECORDS]) == every and sorted(firsts[RECORDS:]) == every
    assert firsts[:RECORDS] != firsts[RECORDS:] and firsts[:RECORDS] != sorted(firsts[:RECORDS])


def test_bad_stream_positions_are_refused():
    with pytest.raises(ValueError, match="Bad stream position"):
        input_pipeline.StreamState.from_json({"window": 1})
    with pytest.raises(ValueError, match="negative"):
        input_pipeline.StreamState.from_json({"window": -1, "row": 0, "tasks": {}})


def _first_tokens(name, *, draws, chunk_size):
    _register()
    stream = input_pipeline.MixtureStream(
        mixture_or_task_name=name, task_feature_lengths=LENGTHS, split="train",
        converter=feature_converter.P5EncDecFeatureConverter(), seed=3, shuffle=False,
        chunk_size=chunk_size)
    examples = stream.examples(input_pipeline.StreamState()).take(draws)
    return [int(ex["inputs"][0]) for ex, _ in examples.as_numpy_iterator()]


def test_seeded_preprocessors_draw_new_values_in_every_chunk():
    """The random first token of 30 draws in chunks of 5: with a seed per place in a chunk (what
    seqio's own seeded maps give every chunk) there would be at most 5 values."""
    tokens = _first_tokens(SEEDED, draws=30, chunk_size=5)
    assert len(set(tokens)) > 15
    assert tokens[:5] != tokens[5:10]


@pytest.mark.parametrize("name, preprocessor", [
    (SEQIO_SEEDED, "_random_first_token"),  # refused when the stream is made
    (WRAPPED_SEQIO_SEEDED, "_wrapped_seqio_seeded"),  # refused when its first chunk is built
])
def test_seqio_seeded_maps_are_refused_by_the_training_stream(name, preprocessor):
    with pytest.raises(input_pipeline.SeededPreprocessorError,
                       match=f"{preprocessor} takes seqio map seeds.*seeded_map"):
        _first_tokens(name, draws=1, chunk_size=5)
