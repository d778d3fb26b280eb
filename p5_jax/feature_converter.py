"""seqio feature converter for P5's encoder-decoder batches (no packing).

Task features `inputs`, `targets` (+ `inputs_whole_word_ids`, trimmed and padded with the
inputs) become exactly the batch keys of docs/ARCHITECTURE.md:
`encoder_input_tokens`, `encoder_whole_word_ids`, `decoder_input_tokens` (targets shifted right,
start token 0), `decoder_target_tokens`, `decoder_loss_weights` (float32, 1 on real tokens).
"""
from __future__ import annotations

from collections.abc import Mapping

import seqio
import tensorflow as tf

WHOLE_WORD_FEATURE = "inputs_whole_word_ids"
_Spec = seqio.FeatureConverter.FeatureSpec


class P5EncDecFeatureConverter(seqio.FeatureConverter):
    """Pads each example to the task feature lengths; `inputs_whole_word_ids` follows `inputs`."""

    TASK_FEATURES = {"inputs": _Spec(dtype=tf.int32), "targets": _Spec(dtype=tf.int32)}
    MODEL_FEATURES = {
        "encoder_input_tokens": _Spec(dtype=tf.int32),
        "encoder_whole_word_ids": _Spec(dtype=tf.int32),
        "decoder_input_tokens": _Spec(dtype=tf.int32),
        "decoder_target_tokens": _Spec(dtype=tf.int32),
        "decoder_loss_weights": _Spec(dtype=tf.float32),
    }
    PACKING_FEATURE_DTYPES = None

    def __init__(self, *, pack: bool = False, **kwargs):
        if pack:
            raise ValueError("P5EncDecFeatureConverter does not pack: whole-word ids and P5's "
                             "one-example-per-row batches need pack=False")
        super().__init__(pack=False, **kwargs)

    def _convert_features(self, ds: tf.data.Dataset,
                          task_feature_lengths: Mapping[str, int]) -> tf.data.Dataset:
        if WHOLE_WORD_FEATURE not in ds.element_spec:
            raise ValueError(f"dataset lacks '{WHOLE_WORD_FEATURE}'; P5 tasks add it after "
                             "tokenizing (p5_tasks.rendering.add_whole_word_ids)")
        lengths = dict(task_feature_lengths)
        lengths[WHOLE_WORD_FEATURE] = task_feature_lengths["inputs"]
        ds = seqio.utils.trim_and_pad_dataset(ds, lengths)

        def convert(features):
            targets = features["targets"]
            return {
                "encoder_input_tokens": features["inputs"],
                "encoder_whole_word_ids": features[WHOLE_WORD_FEATURE],
                "decoder_input_tokens": seqio.utils.make_autoregressive_inputs(
                    targets, bos_id=self.bos_id),
                "decoder_target_tokens": targets,
                "decoder_loss_weights": tf.cast(tf.not_equal(targets, 0), tf.float32),
            }

        return ds.map(convert, num_parallel_calls=tf.data.AUTOTUNE)

    def get_model_feature_lengths(self, task_feature_lengths: Mapping[str, int]) -> dict:
        encoder, decoder = task_feature_lengths["inputs"], task_feature_lengths["targets"]
        return {"encoder_input_tokens": encoder, "encoder_whole_word_ids": encoder,
                "decoder_input_tokens": decoder, "decoder_target_tokens": decoder,
                "decoder_loss_weights": decoder}
