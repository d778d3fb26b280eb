"""seqio feature converter for P5's encoder-decoder batches, one example per row or packed.

Task features `inputs`, `targets` (+ `inputs_whole_word_ids`, trimmed and padded with the
inputs) become exactly the batch keys of docs/ARCHITECTURE.md:
`encoder_input_tokens`, `encoder_whole_word_ids`, `decoder_input_tokens` (targets shifted right,
start token 0), `decoder_target_tokens`, `decoder_loss_weights` (float32, 1 on real tokens).

With `pack=True` several examples share a row, and four more keys (seqio's packed layout,
as `seqio.EncDecFeatureConverter(pack=True)` makes them) say where each example lies:
`encoder_segment_ids` / `decoder_segment_ids` (1, 2, ... per example in the row, 0 on padding)
and `encoder_positions` / `decoder_positions` (the position inside the example, restarting at 0).
Whole-word ids travel with the inputs and keep their per-example numbering (1 for the first word
of every packed example); decoder inputs are the targets shifted right inside each segment
(`seqio.utils.make_autoregressive_inputs` with the segment ids), so every example's first
decoder input is the start token.

Packing is first fit over windows of `pack_window` examples taken in stream order: an example
goes to the first row of the window where both its inputs and its targets still fit. seqio's
`trim_and_pack_dataset` keeps a single open row and closes it whenever the next example does not
fit, which on P5's mixtures (a quarter of the examples are ~500-token candidate lists, the median
is ~36 tokens) leaves 61% of a 512+64-token row real against 85% here.
"""
from __future__ import annotations

import functools
from collections.abc import Mapping

import seqio
import tensorflow as tf

WHOLE_WORD_FEATURE = "inputs_whole_word_ids"
_Spec = seqio.FeatureConverter.FeatureSpec
PACKING_KEYS = ("encoder_segment_ids", "encoder_positions", "decoder_segment_ids",
                "decoder_positions")
DEFAULT_PACK_WINDOW = 1024  # examples packed together (rows are emitted window by window)


def first_fit(sizes_Nx2, capacity_2):
    """First-fit assignment of N examples to rows, in arrival order.

    `sizes_Nx2`: each example's (input, target) lengths, each within `capacity_2`. An example
    goes to the first row (in order of opening) where both its inputs and its targets still
    fit, else it opens a row. Returns int32 [N] vectors: row, segment id in the row (1, 2, ...,
    in arrival order) and (input, target) offsets [N, 2] where the example starts in the row.
    """
    sizes_Nx2 = tf.convert_to_tensor(sizes_Nx2, tf.int32)
    capacity_2 = tf.convert_to_tensor(capacity_2, tf.int32)
    count = tf.shape(sizes_Nx2)[0]
    row_ids = tf.range(count)

    def body(i, free_Nx2, filled_N, rows, segments, offsets):
        size = sizes_Nx2[i]
        fits = tf.reduce_all(free_Nx2 >= size[None, :], axis=1)
        row = tf.reduce_min(tf.where(fits, row_ids, count))  # a fresh row always fits
        offsets = offsets.write(i, capacity_2 - free_Nx2[row])
        segment = filled_N[row] + 1
        free_Nx2 = tf.tensor_scatter_nd_sub(free_Nx2, [[row]], size[None, :])
        filled_N = tf.tensor_scatter_nd_update(filled_N, [[row]], [segment])
        return i + 1, free_Nx2, filled_N, rows.write(i, row), segments.write(i, segment), offsets

    arrays = [tf.TensorArray(tf.int32, size=count, element_shape=shape)
              for shape in ([], [], [2])]
    _, _, _, rows, segments, offsets = tf.while_loop(
        lambda i, *_: i < count, body,
        (tf.constant(0), tf.tile(capacity_2[None, :], [count, 1]), tf.zeros([count], tf.int32),
         *arrays))
    return rows.stack(), segments.stack(), offsets.stack()


def _place(values_NxM, sizes_N, rows_N, offsets_N, shape):
    """Scatters each example's first `sizes_N` values to (row, offset + i) of a [R, C] grid."""
    steps = tf.range(tf.shape(values_NxM)[1])[None, :]
    keep = steps < sizes_N[:, None]
    cells = tf.stack([tf.broadcast_to(rows_N[:, None], tf.shape(keep)),
                      offsets_N[:, None] + steps], axis=-1)
    return tf.scatter_nd(tf.boolean_mask(cells, keep), tf.boolean_mask(values_NxM, keep), shape)


def pack_window(window, *, input_length: int, target_length: int):
    """Padded examples of one window -> packed rows in seqio's layout.

    `window`: `inputs` [N, input_length], `targets` [N, target_length], `inputs_whole_word_ids`
    [N, input_length] and `sizes` [N, 2] (true input and target lengths). Returns [R, length]
    rows of `inputs`, `targets` and whole-word ids, with `inputs_segment_ids`,
    `inputs_positions`, `targets_segment_ids`, `targets_positions` (seqio's names; 0 on padding).
    """
    sizes = window["sizes"]
    rows, segments, offsets = first_fit(sizes, [input_length, target_length])
    num_rows = tf.reduce_max(rows) + 1
    packed = {}
    for key, side, length in (("inputs", 0, input_length), ("targets", 1, target_length)):
        place = functools.partial(_place, sizes_N=sizes[:, side], rows_N=rows,
                                  offsets_N=offsets[:, side], shape=[num_rows, length])
        values = window[key]
        packed[key] = place(values)
        packed[f"{key}_segment_ids"] = place(tf.broadcast_to(segments[:, None], tf.shape(values)))
        packed[f"{key}_positions"] = place(tf.broadcast_to(tf.range(length)[None, :],
                                                           tf.shape(values)))
        if key == "inputs":
            packed[WHOLE_WORD_FEATURE] = place(window[WHOLE_WORD_FEATURE])
    return packed


PADDED_INPUT_KEYS = ("inputs", "targets", WHOLE_WORD_FEATURE)
PACKED_INPUT_KEYS = PADDED_INPUT_KEYS + ("inputs_segment_ids", "inputs_positions",
                                         "targets_segment_ids", "targets_positions")


def _padded_row(features, *, bos_id: int) -> dict:
    """Model features of one padded example (one example per row)."""
    targets = features["targets"]
    return {
        "encoder_input_tokens": features["inputs"],
        "encoder_whole_word_ids": features[WHOLE_WORD_FEATURE],
        "decoder_input_tokens": seqio.utils.make_autoregressive_inputs(targets, bos_id=bos_id),
        "decoder_target_tokens": targets,
        "decoder_loss_weights": tf.cast(tf.not_equal(targets, 0), tf.float32),
    }


def _packed_row(features, *, bos_id: int) -> dict:
    """Model features of one packed row (seqio's layout, see `pack_window`)."""
    targets = features["targets"]
    segments = features["targets_segment_ids"]
    return {
        "encoder_input_tokens": features["inputs"],
        "encoder_whole_word_ids": features[WHOLE_WORD_FEATURE],
        "encoder_segment_ids": features["inputs_segment_ids"],
        "encoder_positions": features["inputs_positions"],
        "decoder_input_tokens": seqio.utils.make_autoregressive_inputs(
            targets, sequence_id=segments, bos_id=bos_id),
        "decoder_target_tokens": targets,
        "decoder_loss_weights": tf.cast(tf.not_equal(targets, 0), tf.float32),
        "decoder_segment_ids": segments,
        "decoder_positions": features["targets_positions"],
    }


class P5EncDecFeatureConverter(seqio.FeatureConverter):
    """Pads (pack=False, one example per row) or packs (pack=True) examples to the task feature
    lengths; `inputs_whole_word_ids` follows `inputs`."""

    TASK_FEATURES = {"inputs": _Spec(dtype=tf.int32), "targets": _Spec(dtype=tf.int32)}
    MODEL_FEATURES = {
        "encoder_input_tokens": _Spec(dtype=tf.int32),
        "encoder_whole_word_ids": _Spec(dtype=tf.int32),
        "decoder_input_tokens": _Spec(dtype=tf.int32),
        "decoder_target_tokens": _Spec(dtype=tf.int32),
        "decoder_loss_weights": _Spec(dtype=tf.float32),
    }
    PACKING_FEATURE_DTYPES = {key: tf.int32 for key in PACKING_KEYS}

    def __init__(self, *, pack: bool = False, pack_window: int = DEFAULT_PACK_WINDOW, **kwargs):
        if pack_window < 1:
            raise ValueError(f"pack_window must be positive, got {pack_window}.")
        if kwargs.get("use_custom_packing_ops"):
            raise ValueError("P5EncDecFeatureConverter packs with its own first-fit packer; "
                             "use_custom_packing_ops is not supported.")
        super().__init__(pack=pack, **kwargs)
        self._pack_window = pack_window

    @property
    def window_size(self) -> int:
        """Examples packed together (and, unpacked, converted together by `window_rows`)."""
        return self._pack_window

    def window_shapes(self, task_feature_lengths: Mapping[str, int]) -> dict:
        """`padded_batch` shapes of a window of `trim`med examples."""
        inputs, targets = task_feature_lengths["inputs"], task_feature_lengths["targets"]
        return {"inputs": [inputs], "targets": [targets], "sizes": [2],
                WHOLE_WORD_FEATURE: [inputs]}

    def trim(self, features, task_feature_lengths: Mapping[str, int]) -> dict:
        """One example cut to the lengths, with its (input, target) `sizes` (a packed example
        must have both)."""
        inputs = features["inputs"][:task_feature_lengths["inputs"]]
        targets = features["targets"][:task_feature_lengths["targets"]]
        checks = [tf.debugging.assert_positive(
            tf.size(x), message=f"packing needs non-empty {name}")
            for name, x in (("inputs", inputs), ("targets", targets)) if self.pack]
        with tf.control_dependencies(checks):
            sizes = tf.stack([tf.size(inputs), tf.size(targets)])
        return {"inputs": inputs, "targets": targets, "sizes": sizes,
                WHOLE_WORD_FEATURE: tf.cast(
                    features[WHOLE_WORD_FEATURE][:task_feature_lengths["inputs"]], tf.int32)}

    def window_rows(self, window, task_feature_lengths: Mapping[str, int]) -> dict:
        """Model-feature rows [R, length] of a window of `trim`med examples padded to
        `window_shapes`: packed first fit, or one row per example."""
        if self.pack:
            window = pack_window(window, input_length=task_feature_lengths["inputs"],
                                 target_length=task_feature_lengths["targets"])
        row = functools.partial(_packed_row if self.pack else _padded_row, bos_id=self.bos_id)
        keys = PACKED_INPUT_KEYS if self.pack else PADDED_INPUT_KEYS
        rows = {key: window[key] for key in keys}
        dtypes = {**self.PACKING_FEATURE_DTYPES,
                  **{key: spec.dtype for key, spec in self.MODEL_FEATURES.items()}}
        return tf.map_fn(row, rows, fn_output_signature={
            key: tf.TensorSpec([None], dtypes[key])
            for key in self.get_model_feature_lengths(task_feature_lengths)})

    def _convert_features(self, ds: tf.data.Dataset,
                          task_feature_lengths: Mapping[str, int]) -> tf.data.Dataset:
        if WHOLE_WORD_FEATURE not in ds.element_spec:
            raise ValueError(f"dataset lacks '{WHOLE_WORD_FEATURE}'; P5 tasks add it after "
                             "tokenizing (p5_tasks.rendering.add_whole_word_ids)")
        lengths = dict(task_feature_lengths)
        lengths[WHOLE_WORD_FEATURE] = task_feature_lengths["inputs"]
        if self.pack:
            return self._pack_rows(ds, lengths)
        ds = seqio.utils.trim_and_pad_dataset(ds, lengths)
        return ds.map(functools.partial(_padded_row, bos_id=self.bos_id),
                      num_parallel_calls=tf.data.AUTOTUNE)

    def _pack_rows(self, ds: tf.data.Dataset, lengths: Mapping[str, int]) -> tf.data.Dataset:
        """First-fit packing over windows of `pack_window` examples, then the model keys."""
        ds = ds.map(lambda features: self.trim(features, lengths),
                    num_parallel_calls=tf.data.AUTOTUNE)
        ds = ds.padded_batch(self._pack_window, padded_shapes=self.window_shapes(lengths))
        return ds.map(lambda window: self.window_rows(window, lengths),
                      num_parallel_calls=tf.data.AUTOTUNE).unbatch()

    def get_model_feature_lengths(self, task_feature_lengths: Mapping[str, int]) -> dict:
        encoder, decoder = task_feature_lengths["inputs"], task_feature_lengths["targets"]
        lengths = {"encoder_input_tokens": encoder, "encoder_whole_word_ids": encoder,
                   "decoder_input_tokens": decoder, "decoder_target_tokens": decoder,
                   "decoder_loss_weights": decoder}
        if self.pack:
            lengths.update(encoder_segment_ids=encoder, encoder_positions=encoder,
                           decoder_segment_ids=decoder, decoder_positions=decoder)
        return lengths
