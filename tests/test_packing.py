"""Packed batches train the same model as unpacked ones.

The same examples, one per row (P5EncDecFeatureConverter(pack=False)) and several per row
(pack=True), give the same per-example summed token losses and the same gradient of the total
loss with respect to every parameter. Tolerances (float32, matmuls at full float32 precision):
per-example losses and the total agree to rtol 1e-5; every gradient leaf agrees to
max |packed - unpacked| <= 1e-5 * max(|unpacked leaf|) + 1e-7 (the sums run in another order,
nothing else differs; the largest deviation seen is 3e-6 of the leaf's scale).
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

from p5_jax import layers, models, network, partitioning, trainer
from p5_jax.feature_converter import P5EncDecFeatureConverter

from test_models import random_params

VOCAB = 64
UNPACKED = {"inputs": 12, "targets": 6}
PACKED = {"inputs": 24, "targets": 10}
LOSS_RTOL = 1e-5
GRAD_RTOL, GRAD_ATOL = 1e-5, 1e-7


def make_examples():
    """Seven examples of different lengths; the first target token names the example."""
    rng = np.random.default_rng(0)
    shapes = [(3, 2), (7, 4), (12, 6), (5, 1), (9, 3), (2, 5), (11, 2)]
    examples = []
    for i, (n_in, n_tg) in enumerate(shapes):
        inputs = list(rng.integers(3, VOCAB, n_in - 1)) + [1]
        steps = rng.integers(0, 2, n_in)
        steps[0] = 0
        words = np.cumsum(steps) + 1  # word ids count from 1 in every example
        words[-1] = 0  # EOS
        targets = [40 + i] + list(rng.integers(3, VOCAB, n_tg - 1))
        if n_tg > 1:
            targets[-1] = 1
        examples.append({"inputs": inputs, "targets": targets,
                         "inputs_whole_word_ids": list(np.minimum(words, 7))})
    return examples


def convert(examples, lengths, *, pack):
    def gen():
        for ex in examples:
            yield {k: np.asarray(v, np.int32) for k, v in ex.items()}
    ds = tf.data.Dataset.from_generator(
        gen, output_signature={k: tf.TensorSpec([None], tf.int32) for k in examples[0]})
    rows = list(P5EncDecFeatureConverter(pack=pack)(ds, lengths).as_numpy_iterator())
    return {key: np.stack([row[key] for row in rows]) for key in rows[0]}


@pytest.fixture(scope="module")
def batches():
    examples = make_examples()
    unpacked = convert(examples, UNPACKED, pack=False)
    packed = convert(examples, PACKED, pack=True)
    assert unpacked["encoder_input_tokens"].shape[0] == len(examples)
    assert packed["encoder_input_tokens"].shape[0] == 3  # 7 examples, 49 input tokens
    assert packed["decoder_segment_ids"].max() >= 3
    return unpacked, packed


def per_example_losses(model, params, batch):
    """{example index: summed token loss} (the first target token names the example)."""
    logits = jax.jit(model._logits)(params, batch)
    token_loss, token_z = models.cross_entropy_with_logits(
        logits_BxTxV=logits, targets_BxT=jnp.asarray(batch["decoder_target_tokens"]),
        label_smoothing=model.label_smoothing, z_loss=model.z_loss)
    token_loss = np.asarray((token_loss + token_z) * batch["decoder_loss_weights"])
    targets = batch["decoder_target_tokens"]
    segments = batch.get("decoder_segment_ids", (targets > 0).astype(np.int32))
    losses = {}
    for row in range(targets.shape[0]):
        for segment in range(1, segments[row].max() + 1):
            where = segments[row] == segment
            losses[int(targets[row][where][0]) - 40] = float(token_loss[row][where].sum())
    return losses


CONFIGS = {
    "t5_v1_0": (dict(), dict()),
    "t5_v1_1_smoothed_z_loss": (dict(feed_forward="gated-gelu", tie_embeddings=False),
                                dict(label_smoothing=0.1, z_loss=1e-3)),
}


@pytest.mark.parametrize("name", list(CONFIGS))
@jax.default_matmul_precision("float32")
def test_packed_losses_and_gradients_match_unpacked(batches, name):
    overrides, loss_options = CONFIGS[name]
    config = network.T5Config(vocab_size=VOCAB, d_model=16, num_heads=2, d_kv=8, d_ff=32,
                              num_encoder_layers=2, num_decoder_layers=2, dropout_rate=0.1,
                              whole_word_embeddings=8, relative_buckets=8,
                              relative_max_distance=16, **overrides)
    model = models.EncoderDecoderModel(module=network.Transformer(config), **loss_options)
    params = random_params(config)
    unpacked, packed = batches

    expected = per_example_losses(model, params, unpacked)
    got = per_example_losses(model, params, packed)
    assert sorted(got) == sorted(expected) == list(range(7))
    np.testing.assert_allclose([got[i] for i in range(7)], [expected[i] for i in range(7)],
                               rtol=LOSS_RTOL)

    grad_fn = jax.jit(jax.value_and_grad(model.loss_fn, has_aux=True))
    (loss_u, aux_u), grads_u = grad_fn(params, unpacked)
    (loss_p, aux_p), grads_p = grad_fn(params, packed)
    assert float(aux_p["num_tokens"]) == float(aux_u["num_tokens"]) == 23.0
    np.testing.assert_allclose(float(loss_p), float(loss_u), rtol=LOSS_RTOL)
    np.testing.assert_allclose(float(aux_p["loss_sum"]), float(aux_u["loss_sum"]),
                               rtol=LOSS_RTOL)
    assert float(aux_p["num_correct"]) == float(aux_u["num_correct"])
    flat_u = jax.tree_util.tree_flatten_with_path(grads_u)[0]
    flat_p = dict(jax.tree_util.tree_flatten_with_path(grads_p)[0])
    assert len(flat_u) == len(flat_p)
    for path, grad_u in flat_u:
        grad_u, grad_p = np.asarray(grad_u), np.asarray(flat_p[path])
        scale = float(np.abs(grad_u).max())
        assert scale > 0, jax.tree_util.keystr(path)  # every parameter gets a gradient
        np.testing.assert_allclose(grad_p, grad_u, rtol=0,
                                   atol=GRAD_RTOL * scale + GRAD_ATOL,
                                   err_msg=jax.tree_util.keystr(path))


@jax.default_matmul_precision("float32")
def test_examples_in_a_row_do_not_see_each_other(batches):
    _, packed = batches
    config = network.T5Config(vocab_size=VOCAB, d_model=16, num_heads=2, d_kv=8, d_ff=32,
                              num_encoder_layers=1, num_decoder_layers=1, dropout_rate=0.0,
                              whole_word_embeddings=8)
    model = models.EncoderDecoderModel(module=network.Transformer(config))
    params = random_params(config)
    row = int(np.argmax(packed["decoder_segment_ids"].max(axis=1)))
    enc_seg, dec_seg = packed["encoder_segment_ids"][row], packed["decoder_segment_ids"][row]
    changed = {k: v.copy() for k, v in packed.items()}
    # New inputs, whole-word ids and decoder inputs for segment 2 only.
    changed["encoder_input_tokens"][row][enc_seg == 2] = 5
    changed["encoder_whole_word_ids"][row][enc_seg == 2] = 3
    changed["decoder_input_tokens"][row][(dec_seg == 2)] = 6
    logits_fn = jax.jit(model._logits)
    before = np.asarray(logits_fn(params, packed))[row]
    after = np.asarray(logits_fn(params, changed))[row]
    others = (dec_seg > 0) & (dec_seg != 2)
    np.testing.assert_allclose(after[others], before[others], atol=1e-6)
    assert not np.allclose(after[dec_seg == 2], before[dec_seg == 2])


def _buckets(relative, *, bidirectional):
    return np.asarray(layers.relative_position_bucket(
        relative, bidirectional=bidirectional, num_buckets=32, max_distance=128))


def test_relative_buckets_from_segment_positions_are_the_shared_ones(batches):
    """Inside a segment, buckets of per-segment positions equal the buckets of row indices the
    network's shared bias uses; they differ across segments, which the masks hide."""
    _, packed = batches
    for bidirectional, key, length in ((True, "encoder", PACKED["inputs"]),
                                       (False, "decoder", PACKED["targets"])):
        positions = packed[f"{key}_positions"]
        segments = packed[f"{key}_segment_ids"]
        bucket = functools.partial(_buckets, bidirectional=bidirectional)
        from_positions = bucket(positions[:, None, :] - positions[:, :, None])
        index = np.arange(length)
        shared = bucket(index[None, :] - index[:, None])[None]
        same = (segments[:, :, None] == segments[:, None, :]) & (segments[:, None, :] > 0)
        np.testing.assert_array_equal(from_positions[same],
                                      np.broadcast_to(shared, from_positions.shape)[same])
        assert not np.array_equal(from_positions, np.broadcast_to(shared, from_positions.shape))


def test_segment_ids_come_in_pairs_and_not_with_cached_decoding(batches):
    _, packed = batches
    config = network.T5Config(vocab_size=VOCAB, d_model=16, num_heads=2, d_kv=8, d_ff=32,
                              num_encoder_layers=1, num_decoder_layers=1)
    module = network.Transformer(config)
    params = {"params": random_params(config)}
    with pytest.raises(ValueError, match="both encoder_segment_ids and decoder_segment_ids"):
        module.apply(params, packed["encoder_input_tokens"], packed["decoder_input_tokens"],
                     encoder_segment_ids=packed["encoder_segment_ids"])
    encoded = module.apply(params, packed["encoder_input_tokens"], method=module.encode)
    with pytest.raises(ValueError, match="one example per row"):
        module.apply(params, encoded, packed["encoder_input_tokens"],
                     packed["decoder_input_tokens"][:, :1],
                     encoder_segment_ids=packed["encoder_segment_ids"],
                     decoder_segment_ids=packed["decoder_segment_ids"], decode=True,
                     max_decode_length=4, mutable=["cache"], method=module.decode)
    model = models.EncoderDecoderModel(module=module)
    with pytest.raises(ValueError, match="unpacked"):
        model.score_batch(params["params"], packed)
    with pytest.raises(ValueError, match="unpacked"):
        model.predict_batch(params["params"], packed, max_decode_length=4)


def _pad_rows(batch, rows):
    return {k: np.pad(v, [(0, rows - v.shape[0])] + [(0, 0)] * (v.ndim - 1))
            for k, v in batch.items()}


@jax.default_matmul_precision("float32")
def test_sharded_train_step_same_loss_and_gradient_norm(batches):
    """The jitted train step on 8 devices: the same loss and gradient norm from both layouts
    (all-padding rows fill the packed batch to the batch size)."""
    unpacked, packed = batches
    config = network.T5Config(vocab_size=VOCAB, d_model=16, num_heads=2, d_kv=8, d_ff=32,
                              num_encoder_layers=1, num_decoder_layers=1, dropout_rate=0.0,
                              whole_word_embeddings=8)
    metrics = {}
    for name, batch, lengths in (("unpacked", unpacked, UNPACKED), ("packed", packed, PACKED)):
        train = trainer.Trainer(
            model=models.EncoderDecoderModel(module=network.Transformer(config)),
            optimizer=trainer.make_adamw(learning_rate=1e-3),
            mesh=partitioning.make_mesh(data=-1, model=1), batch_size=8,
            input_length=lengths["inputs"], target_length=lengths["targets"])
        state = train.create_state(seed=0)
        _, metrics[name] = train.train_step(state, train.put_batch(_pad_rows(batch, 8)))
    for key in ("loss", "grad_norm", "num_tokens", "accuracy"):
        np.testing.assert_allclose(float(metrics["packed"][key]), float(metrics["unpacked"][key]),
                                   rtol=1e-5, err_msg=key)


def test_train_gin_packs_and_the_entry_point_builds_packed_batches():
    import gin

    from p5_jax import gin_bindings, input_pipeline

    from test_train_entry import TOY_TASK, _register_toy_task

    gin.clear_config()
    try:
        gin_bindings.parse_config(gin_files=["gin/runs/train.gin", "gin/models/tiny.gin"],
                                  gin_bindings=[f"MIXTURE_OR_TASK_NAME = '{TOY_TASK}'",
                                                "TRAIN_STEPS = 1", "MODEL_DIR = '/tmp/x'"])
        assert gin.query_parameter("train.pack") is True
    finally:
        gin.clear_config()
    _register_toy_task()
    rows = {}
    for pack in (False, True):
        batch = next(input_pipeline.global_batches(
            mixture_or_task_name=TOY_TASK, task_feature_lengths={"inputs": 24, "targets": 12},
            split="train", pack=pack, batch_size=8 if pack else 24, seed=0, shuffle=False))
        rows[pack] = [dict(zip(batch, values)) for values in zip(*batch.values())]
    assert len(rows[False]) == 24 and "encoder_segment_ids" not in rows[False][0]
    assert len(rows[True]) == 8  # three 8-token examples per 24-token row
    for row in rows[True]:
        np.testing.assert_array_equal(row["encoder_segment_ids"], np.repeat([1, 2, 3], 8))
        np.testing.assert_array_equal(row["encoder_whole_word_ids"], np.tile(np.arange(1, 9), 3))
        np.testing.assert_array_equal(row["decoder_input_tokens"][[0, 4, 8]], [0, 0, 0])
