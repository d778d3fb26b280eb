"""P5EncDecFeatureConverter: exact batch keys, padding, shifted decoder inputs, float weights;
packing: segment ids, positions, whole-word ids and decoder inputs restarting per example."""
import numpy as np
import pytest
import tensorflow as tf

from p5_jax.feature_converter import P5EncDecFeatureConverter, first_fit

PACKED_KEYS = {"encoder_input_tokens", "encoder_whole_word_ids", "encoder_segment_ids",
               "encoder_positions", "decoder_input_tokens", "decoder_target_tokens",
               "decoder_loss_weights", "decoder_segment_ids", "decoder_positions"}


def _ds(**features):
    return tf.data.Dataset.from_tensors({k: tf.constant(v, tf.int32) for k, v in features.items()})


def _examples_ds(examples):
    """Examples of different lengths (plus an extra feature the converter must drop)."""
    def gen():
        for ex in examples:
            yield {**{k: np.asarray(v, np.int32) for k, v in ex.items()},
                   "user_id": np.int32(7)}
    spec = {k: tf.TensorSpec([None], tf.int32) for k in examples[0]}
    return tf.data.Dataset.from_generator(gen, output_signature={
        **spec, "user_id": tf.TensorSpec([], tf.int32)})


def _packed_rows(examples, lengths, **kwargs):
    out = P5EncDecFeatureConverter(pack=True, **kwargs)(_examples_ds(examples), lengths)
    return list(out.as_numpy_iterator())


def test_converts_one_example_by_hand():
    ds = _ds(inputs=[5, 6, 7, 1], targets=[8, 9, 1], inputs_whole_word_ids=[1, 1, 2, 0])
    out = P5EncDecFeatureConverter()(ds, {"inputs": 6, "targets": 5})
    (ex,) = list(out.as_numpy_iterator())
    assert set(ex) == {"encoder_input_tokens", "encoder_whole_word_ids", "decoder_input_tokens",
                       "decoder_target_tokens", "decoder_loss_weights"}
    np.testing.assert_array_equal(ex["encoder_input_tokens"], [5, 6, 7, 1, 0, 0])
    np.testing.assert_array_equal(ex["encoder_whole_word_ids"], [1, 1, 2, 0, 0, 0])
    np.testing.assert_array_equal(ex["decoder_target_tokens"], [8, 9, 1, 0, 0])
    np.testing.assert_array_equal(ex["decoder_input_tokens"], [0, 8, 9, 1, 0])
    assert ex["decoder_loss_weights"].dtype == np.float32
    np.testing.assert_array_equal(ex["decoder_loss_weights"], [1, 1, 1, 0, 0])
    assert ex["encoder_input_tokens"].dtype == np.int32


def test_batches_keep_the_shapes():
    ds = _ds(inputs=[5, 1], targets=[8, 1], inputs_whole_word_ids=[1, 0]).repeat(4)
    out = P5EncDecFeatureConverter()(ds, {"inputs": 8, "targets": 4}).batch(4)
    batch = next(out.as_numpy_iterator())
    assert batch["encoder_input_tokens"].shape == (4, 8)
    assert batch["encoder_whole_word_ids"].shape == (4, 8)
    assert batch["decoder_input_tokens"].shape == (4, 4)


@pytest.mark.parametrize("pack", [False, True])
def test_refuses_missing_whole_word_ids(pack):
    with pytest.raises(ValueError, match="inputs_whole_word_ids"):
        P5EncDecFeatureConverter(pack=pack)(_ds(inputs=[5, 1], targets=[8, 1]),
                                            {"inputs": 4, "targets": 4})


def test_refuses_bad_packing_options():
    with pytest.raises(ValueError, match="pack_window"):
        P5EncDecFeatureConverter(pack=True, pack_window=0)
    with pytest.raises(ValueError, match="use_custom_packing_ops"):
        P5EncDecFeatureConverter(pack=True, use_custom_packing_ops=True)


def test_too_long_inputs_fail_the_length_check():
    ds = _ds(inputs=[5, 6, 7, 1], targets=[8, 1], inputs_whole_word_ids=[1, 1, 2, 0])
    with pytest.raises(tf.errors.InvalidArgumentError):
        list(P5EncDecFeatureConverter()(ds, {"inputs": 3, "targets": 4}).as_numpy_iterator())


# -- packing ---------------------------------------------------------------------------------
HAND_MADE = [  # word ids count from 1 in every example, EOS gets 0
    dict(inputs=[5, 6, 7, 1], targets=[8, 9, 1], inputs_whole_word_ids=[1, 1, 2, 0]),
    dict(inputs=[11, 12, 13, 14, 15, 1], targets=[16, 1], inputs_whole_word_ids=[1, 2, 2, 3, 4, 0]),
    dict(inputs=[3, 4, 1], targets=[10, 1], inputs_whole_word_ids=[1, 2, 0]),
]


def test_packs_hand_made_examples_first_fit():
    # Example 2 (6 inputs) does not fit after example 1 in 8 positions and opens row 2;
    # example 3 (3 inputs) still fits in row 1 after example 1 (first fit, not just the
    # open row).
    first, second = _packed_rows(HAND_MADE, {"inputs": 8, "targets": 6})
    assert set(first) == set(second) == PACKED_KEYS
    expected_first = {
        "encoder_input_tokens": [5, 6, 7, 1, 3, 4, 1, 0],
        "encoder_whole_word_ids": [1, 1, 2, 0, 1, 2, 0, 0],
        "encoder_segment_ids": [1, 1, 1, 1, 2, 2, 2, 0],
        "encoder_positions": [0, 1, 2, 3, 0, 1, 2, 0],
        "decoder_target_tokens": [8, 9, 1, 10, 1, 0],
        "decoder_input_tokens": [0, 8, 9, 0, 10, 0],
        "decoder_segment_ids": [1, 1, 1, 2, 2, 0],
        "decoder_positions": [0, 1, 2, 0, 1, 0],
        "decoder_loss_weights": [1, 1, 1, 1, 1, 0],
    }
    expected_second = {
        "encoder_input_tokens": [11, 12, 13, 14, 15, 1, 0, 0],
        "encoder_whole_word_ids": [1, 2, 2, 3, 4, 0, 0, 0],
        "encoder_segment_ids": [1, 1, 1, 1, 1, 1, 0, 0],
        "encoder_positions": [0, 1, 2, 3, 4, 5, 0, 0],
        "decoder_target_tokens": [16, 1, 0, 0, 0, 0],
        "decoder_input_tokens": [0, 16, 0, 0, 0, 0],
        "decoder_segment_ids": [1, 1, 0, 0, 0, 0],
        "decoder_positions": [0, 1, 0, 0, 0, 0],
        "decoder_loss_weights": [1, 1, 0, 0, 0, 0],
    }
    for row, expected in ((first, expected_first), (second, expected_second)):
        for key, values in expected.items():
            np.testing.assert_array_equal(row[key], values, err_msg=key)
            want = np.float32 if key == "decoder_loss_weights" else np.int32
            assert row[key].dtype == want, key


def test_targets_limit_packing_too():
    # Inputs would all fit in one row, but the targets (3 + 2 + 2) do not fit in 6.
    rows = _packed_rows(HAND_MADE, {"inputs": 16, "targets": 6})
    assert len(rows) == 2
    np.testing.assert_array_equal(rows[0]["encoder_segment_ids"],
                                  [1] * 4 + [2] * 6 + [0] * 6)
    np.testing.assert_array_equal(rows[0]["decoder_input_tokens"], [0, 8, 9, 0, 16, 0])
    np.testing.assert_array_equal(rows[1]["encoder_input_tokens"], [3, 4, 1] + [0] * 13)


def test_every_example_lands_once_in_order_within_its_row():
    rng = np.random.default_rng(0)
    examples = []
    for i in range(40):
        n_in, n_tg = int(rng.integers(1, 13)), int(rng.integers(1, 5))
        inputs = list(rng.integers(3, 99, n_in - 1)) + [1]
        words = list(np.minimum(np.arange(1, n_in), 511)) + [0]
        targets = [100 + i] + [1] * (n_tg > 1) + [2] * max(n_tg - 2, 0)
        examples.append(dict(inputs=inputs, targets=targets[:n_tg], inputs_whole_word_ids=words))
    rows = _packed_rows(examples, {"inputs": 16, "targets": 5}, pack_window=16)
    found = []
    for row in rows:
        seg, pos = row["encoder_segment_ids"], row["encoder_positions"]
        dseg, dpos = row["decoder_segment_ids"], row["decoder_positions"]
        count = seg.max()
        assert dseg.max() == count and np.all(np.diff(seg[seg > 0]) >= 0)
        for s in range(1, count + 1):
            targets = row["decoder_target_tokens"][dseg == s]
            ex = examples[targets[0] - 100]
            np.testing.assert_array_equal(row["encoder_input_tokens"][seg == s], ex["inputs"])
            np.testing.assert_array_equal(row["encoder_whole_word_ids"][seg == s],
                                          ex["inputs_whole_word_ids"])
            np.testing.assert_array_equal(targets, ex["targets"])
            np.testing.assert_array_equal(pos[seg == s], np.arange(len(ex["inputs"])))
            np.testing.assert_array_equal(dpos[dseg == s], np.arange(len(ex["targets"])))
            np.testing.assert_array_equal(row["decoder_input_tokens"][dseg == s],
                                          [0] + list(ex["targets"][:-1]))
            found.append(targets[0] - 100)
        assert np.all(row["encoder_input_tokens"][seg == 0] == 0)
        assert np.all(row["decoder_loss_weights"][dseg == 0] == 0)
    assert sorted(found) == list(range(40)) and len(rows) < 40


def test_first_fit_assignment():
    rows, segments, offsets = first_fit([[6, 1], [6, 1], [2, 1], [2, 3], [1, 1]], [8, 4])
    # 0 -> row 0; 1 -> row 1; 2 fills row 0; 3 fits row 1 (targets 1 + 3); 4 has no room
    # left in rows 0 and 1 (inputs 8 of 8, targets 4 of 4) and opens row 2.
    np.testing.assert_array_equal(rows, [0, 1, 0, 1, 2])
    np.testing.assert_array_equal(segments, [1, 1, 2, 2, 1])
    np.testing.assert_array_equal(offsets, [[0, 0], [0, 0], [6, 1], [6, 1], [0, 0]])


def test_packing_refuses_empty_targets():
    examples = [dict(inputs=[5, 1], targets=[], inputs_whole_word_ids=[1, 0])]
    with pytest.raises(tf.errors.InvalidArgumentError, match="non-empty targets"):
        _packed_rows(examples, {"inputs": 4, "targets": 4})


def test_packed_batches_keep_the_shapes():
    out = P5EncDecFeatureConverter(pack=True)(_examples_ds(HAND_MADE * 4),
                                              {"inputs": 8, "targets": 6}).batch(3)
    batch = next(out.as_numpy_iterator())
    for key in PACKED_KEYS:
        assert batch[key].shape == ((3, 8) if key.startswith("encoder") else (3, 6)), key
