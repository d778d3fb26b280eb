"""P5EncDecFeatureConverter: exact batch keys, padding, shifted decoder inputs, float weights."""
import numpy as np
import pytest
import tensorflow as tf

from p5_jax.feature_converter import P5EncDecFeatureConverter


def _ds(**features):
    return tf.data.Dataset.from_tensors({k: tf.constant(v, tf.int32) for k, v in features.items()})


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


def test_refuses_packing_and_missing_whole_word_ids():
    with pytest.raises(ValueError, match="does not pack"):
        P5EncDecFeatureConverter(pack=True)
    with pytest.raises(ValueError, match="inputs_whole_word_ids"):
        P5EncDecFeatureConverter()(_ds(inputs=[5, 1], targets=[8, 1]), {"inputs": 4, "targets": 4})


def test_too_long_inputs_fail_the_length_check():
    ds = _ds(inputs=[5, 6, 7, 1], targets=[8, 1], inputs_whole_word_ids=[1, 1, 2, 0])
    with pytest.raises(tf.errors.InvalidArgumentError):
        list(P5EncDecFeatureConverter()(ds, {"inputs": 3, "targets": 4}).as_numpy_iterator())
