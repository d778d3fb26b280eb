"""Train step on the tiny T5: golden loss, overfitting, mesh parity, accumulation, schedules."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from p5_jax import network, partitioning, trainer
from p5_jax.partitioning import PartitioningError

INPUT_LENGTH, TARGET_LENGTH, VOCAB = 12, 6, 128

# Loss of the first step (before any update) and of the second (after one AdamW update) for the
# fixed seed and batch below. Update these only after a deliberate change to parameter
# initialisation, the network, the loss or the optimizer, and say so in the commit message.
GOLDEN_FIRST_LOSS = 5.3693013
GOLDEN_SECOND_LOSS = 4.3117800


def tiny_config(**overrides):
    base = dict(vocab_size=VOCAB, d_model=32, num_heads=4, d_kv=8, d_ff=64,
                num_encoder_layers=1, num_decoder_layers=1, relative_buckets=8,
                relative_max_distance=16, whole_word_embeddings=16, dropout_rate=0.0)
    return network.T5Config(**{**base, **overrides})


def tiny_model(**overrides):
    from p5_jax import models
    return models.EncoderDecoderModel(module=network.Transformer(tiny_config(**overrides)))


def make_batch(*, batch_size=8, seed=0):
    rng = np.random.default_rng(seed)
    inputs = rng.integers(3, VOCAB, (batch_size, INPUT_LENGTH)).astype(np.int32)
    inputs[:, -2:] = 0
    inputs[:, -3] = 1
    targets = rng.integers(3, VOCAB, (batch_size, TARGET_LENGTH)).astype(np.int32)
    targets[:, -1] = 1
    words = np.cumsum(rng.integers(0, 2, (batch_size, INPUT_LENGTH)), axis=1) + 1
    return {
        "encoder_input_tokens": inputs,
        "encoder_whole_word_ids": np.where(inputs > 0, np.minimum(words, 15), 0).astype(np.int32),
        "decoder_input_tokens": np.pad(targets[:, :-1], ((0, 0), (1, 0))),
        "decoder_target_tokens": targets,
        "decoder_loss_weights": np.ones((batch_size, TARGET_LENGTH), np.float32),
    }


@functools.cache
def make_trainer(*, data=-1, model=1, num_devices=8, learning_rate=1e-2, accumulation_steps=1,
                 batch_size=8, **config):
    """Cached, so tests sharing a configuration share its compiled steps."""
    mesh = partitioning.make_mesh(data=data, model=model, devices=jax.devices()[:num_devices])
    schedule = trainer.make_schedule(name="constant", peak_value=learning_rate)
    return trainer.Trainer(
        model=tiny_model(**config), optimizer=trainer.make_adamw(learning_rate=schedule),
        mesh=mesh, batch_size=batch_size, input_length=INPUT_LENGTH,
        target_length=TARGET_LENGTH, learning_rate_fn=schedule,
        accumulation_steps=accumulation_steps)


def run_steps(train, *, steps, batch=None, seed=0):
    state = train.create_state(seed=seed)
    batch = make_batch() if batch is None else batch
    losses = []
    for _ in range(steps):
        state, metrics = train.train_step(state, train.put_batch(batch))
        losses.append(float(metrics["loss"]))
    return state, losses


def test_golden_one_step_loss():
    _, losses = run_steps(make_trainer(), steps=2)
    message = ("Golden loss changed: if init, network, loss or optimizer changed on purpose, set "
               f"GOLDEN_FIRST_LOSS = {losses[0]!r} and GOLDEN_SECOND_LOSS = {losses[1]!r}.")
    assert losses[0] == pytest.approx(GOLDEN_FIRST_LOSS, abs=1e-4), message
    assert losses[1] == pytest.approx(GOLDEN_SECOND_LOSS, abs=1e-4), message
    assert losses[1] < losses[0]


def test_overfits_a_tiny_batch():
    batch = make_batch(batch_size=8, seed=3)
    _, losses = run_steps(make_trainer(learning_rate=1e-2), steps=80, batch=batch)
    assert losses[0] > 3.0
    assert losses[-1] < 0.05, losses[-10:]


@pytest.mark.parametrize("data,model,num_devices", [(8, 1, 8), (4, 2, 8), (2, 4, 8), (1, 1, 1)])
def test_same_loss_on_every_mesh(data, model, num_devices):
    reference_state, reference = run_steps(make_trainer(data=1, model=1, num_devices=1), steps=3)
    state, losses = run_steps(make_trainer(data=data, model=model, num_devices=num_devices),
                              steps=3)
    np.testing.assert_allclose(losses, reference, rtol=1e-5, atol=1e-5)
    for got, want in zip(jax.tree.leaves(state.params), jax.tree.leaves(reference_state.params)):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-5)


def test_state_is_created_sharded_by_logical_names():
    state = make_trainer(data=4, model=2).create_state(seed=0)
    embedding = state.params["token_embedder"]
    assert embedding.sharding.spec == jax.sharding.PartitionSpec("model", None)
    assert len(embedding.addressable_shards) == 8
    assert embedding.addressable_shards[0].data.shape == (VOCAB // 2, 32)
    mu = jax.tree.leaves(state.opt_state, is_leaf=lambda x: hasattr(x, "mu"))
    adam = [s for s in mu if hasattr(s, "mu")][0]
    assert adam.mu["token_embedder"].sharding.spec == jax.sharding.PartitionSpec("model", None)


@pytest.mark.slow
def test_gradient_accumulation_matches_the_full_batch():
    full, _ = run_steps(make_trainer(data=2, model=1, num_devices=2), steps=2)
    accumulated, _ = run_steps(make_trainer(data=2, model=1, num_devices=2,
                                            accumulation_steps=2), steps=2)
    for got, want in zip(jax.tree.leaves(accumulated.params), jax.tree.leaves(full.params)):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_bfloat16_compute_keeps_float32_params():
    state, losses = run_steps(make_trainer(dtype="bfloat16"), steps=2)
    assert {leaf.dtype for leaf in jax.tree.leaves(state.params)} == {jnp.dtype("float32")}
    assert np.isfinite(losses).all()
    _, float32_losses = run_steps(make_trainer(), steps=1)
    assert losses[0] == pytest.approx(float32_losses[0], rel=0.05)


def test_train_step_donates_the_state():
    train = make_trainer()
    state = train.create_state(seed=0)
    old_embedding = state.params["token_embedder"]
    train.train_step(state, train.put_batch(make_batch()))
    assert old_embedding.is_deleted()


def test_batch_not_divisible_by_data_axis_fails_before_compute():
    with pytest.raises(PartitioningError, match="data axis of size 8"):
        make_trainer(batch_size=12)


def test_linear_schedule_hand_computed():
    schedule = trainer.make_schedule(name="linear", peak_value=1e-3, warmup_steps=2,
                                     total_steps=10)
    got = [float(schedule(step)) for step in (0, 1, 2, 6, 10)]
    np.testing.assert_allclose(got, [0.0, 5e-4, 1e-3, 5e-4, 0.0], atol=1e-9)


def test_rsqrt_and_cosine_schedules():
    rsqrt = trainer.make_schedule(name="rsqrt", peak_value=1e-2, warmup_steps=4, total_steps=100)
    assert float(rsqrt(4)) == pytest.approx(1e-2)
    assert float(rsqrt(16)) == pytest.approx(1e-2 / 2)  # sqrt(4 / 16)
    cosine = trainer.make_schedule(name="cosine", peak_value=1.0, total_steps=10)
    assert float(cosine(5)) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="Unknown schedule"):
        trainer.make_schedule(name="triangle")


def test_eval_step_counts_tokens_and_matches_train_loss():
    train = make_trainer()
    state = train.create_state(seed=0)
    batch = make_batch()
    evaluated = trainer.evaluate(trainer=train, params=state.params, batches=[batch, batch])
    _, metrics = train.train_step(state, train.put_batch(batch))
    assert evaluated["loss"] == pytest.approx(float(metrics["token_loss"]), rel=1e-5)


def test_train_step_flops_cover_the_hand_counted_matmuls():
    train = make_trainer(data=1, num_devices=1)
    state = train.create_state(seed=0)
    flops = train.train_step_flops(state, train.put_batch(make_batch()))
    # Multiply-adds of one forward pass per example (tiny_config: d=32, 4 heads x 8, d_ff=64,
    # one layer each side, V=128; L=12 input and T=6 target positions):
    encoder = 4 * 12 * 32 * 32 + 2 * 12 * 32 * 64 + 2 * 4 * 12 * 12 * 8
    decoder = (4 * 6 * 32 * 32 + 2 * 6 * 32 * 32 + 2 * 12 * 32 * 32 + 2 * 6 * 32 * 64
               + 2 * 4 * 6 * 6 * 8 + 2 * 4 * 6 * 12 * 8)
    logits = 6 * 32 * 128
    forward_flops = 2 * 8 * (encoder + decoder + logits)  # 2 flops per multiply-add, batch 8
    matmul_flops = 3 * forward_flops  # backward: the input and the weight gradient of each
    assert matmul_flops == 10_801_152
    assert matmul_flops <= flops <= 1.25 * matmul_flops  # the rest: softmax, norms, AdamW
